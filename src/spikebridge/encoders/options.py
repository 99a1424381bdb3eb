"""Encoder run options -- precision, backend, ``compile``, int8 calibration -- their defaults,
checks, and whether the engines they need are installed."""

from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import torch

from ..cpu import cpu_has_native_bf16
from ..errors import SpikebridgeError


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


def valid_compile(value) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value == "auto")


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's inductor backend would call ($CXX, else g++), if found."""
    return shutil.which(os.environ.get("CXX", "g++"))


def check_backend(backend: str, device: torch.device, precision: str, compile: bool | str) -> None:
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
            raise SpikebridgeError("precision='int8' needs the openvino package: pip install spikebridge[openvino]")
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
        raise SpikebridgeError("backend='openvino' needs the openvino package: pip install spikebridge[openvino]")


def check_calibration(images, seed) -> None:
    if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1:
        raise SpikebridgeError(f"calibration images must be an integer >= 1, not {images!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpikebridgeError(f"calibration seed must be an integer >= 0, not {seed!r}")
