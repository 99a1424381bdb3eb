"""BatchNorm folding: every eval-mode BatchNorm that follows a convolution folded into it."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SpikebridgeError


def fold_batchnorm(net: nn.Module, example: torch.Tensor) -> int:
    """Fold every eval-mode BatchNorm that directly follows a convolution into that conv.

    Pairs are found from one forward pass on ``example`` (hooks: a BatchNorm whose input is
    the very tensor a Conv2d returned; modules called more than once are left alone). The
    conv gets ``W * s`` and ``(b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``
    (torch's ``fuse_conv_bn_weights``, computed in float64); the BatchNorm is replaced by
    what it does after normalising: nothing (``nn.BatchNorm2d``), or timm's ``drop`` + ``act``
    (``BatchNormAct2d``). Other BatchNorm subclasses stay. The folded network is checked
    against the original output on ``example``; a mismatch raises (a conv output used by
    anything besides its BatchNorm would show up here). Returns the number folded.
    """
    from timm.layers import BatchNormAct2d

    calls: dict[nn.Module, int] = {}
    made: dict[int, nn.Module] = {}  # id of a conv's output tensor -> that conv
    pairs: list[tuple[nn.Module, nn.Module]] = []

    def on_conv(module, inputs, output):
        calls[module] = calls.get(module, 0) + 1
        made[id(output)] = (module, output)  # keep the tensor alive so its id stays unique

    def on_bn(module, inputs, output):
        calls[module] = calls.get(module, 0) + 1
        source = made.get(id(inputs[0]))
        if source is not None and source[1] is inputs[0]:
            pairs.append((source[0], module))

    foldable = lambda m: type(m) in (nn.BatchNorm2d, BatchNormAct2d) and m.track_running_stats  # noqa: E731
    hooks = [m.register_forward_hook(on_conv) for m in net.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(on_bn) for m in net.modules() if foldable(m)]
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            reference = net(example).float()
    finally:
        for h in hooks:
            h.remove()
    made.clear()
    pairs = [(c, b) for c, b in pairs if calls[c] == 1 and calls[b] == 1]
    parent_of = {id(child): (parent, name) for parent in net.modules() for name, child in parent.named_children()}
    for conv, bn in pairs:
        dtype = conv.weight.dtype
        w, b = torch.nn.utils.fuse_conv_bn_weights(
            conv.weight.detach().double(), None if conv.bias is None else conv.bias.detach().double(),
            bn.running_mean.double(), bn.running_var.double(), bn.eps,
            None if bn.weight is None else bn.weight.detach().double(), None if bn.bias is None else bn.bias.detach().double())
        conv.weight = nn.Parameter(w.to(dtype).contiguous(memory_format=torch.channels_last)
                                   if conv.weight.is_contiguous(memory_format=torch.channels_last) else w.to(dtype),
                                   requires_grad=False)
        conv.bias = nn.Parameter(b.to(dtype), requires_grad=False)
        parent, name = parent_of[id(bn)]
        setattr(parent, name, nn.Sequential(bn.drop, bn.act) if isinstance(bn, BatchNormAct2d) else nn.Identity())
    with torch.inference_mode():
        folded = net(example).float()
    net.train(was_training)
    scale = float(reference.abs().max()) or 1.0
    err = float((folded - reference).abs().max())
    if not err <= 1e-3 * scale:
        raise SpikebridgeError(f"BatchNorm folding changed the encoder output (max |diff| {err:.3g} of {scale:.3g}): "
                               "a folded conv output is used elsewhere; create the encoder with fold_bn=False")
    return len(pairs)
