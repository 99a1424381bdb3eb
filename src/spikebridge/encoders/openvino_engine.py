"""OpenVINO and NNCF: importing them (telemetry declined), converting a network, the shared
``Core`` and its configuration, and the int8 model cache entries."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import SpikebridgeError
from ..io import file_sha256
from .options import nncf_installed


def import_nncf():
    if not nncf_installed():
        raise SpikebridgeError("precision='int8' needs nncf (post-training quantisation): pip install spikebridge[int8]")
    if "nncf" not in sys.modules:
        import_openvino()
        with openvino_telemetry_declined():  # NNCF reports usage through openvino-telemetry too
            import nncf  # noqa: F401
    return sys.modules["nncf"]


@contextlib.contextmanager
def nncf_quiet(progress: bool):
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


def int8_entry_complete(entry: Path) -> bool:
    """A cached int8 model: IR files present and matching the checksums its calibration.json records."""
    try:
        info = json.loads((entry / "calibration.json").read_text())
        return (info.get("bin_sha256") == file_sha256(entry / "model.bin")
                and info.get("xml_sha256") == file_sha256(entry / "model.xml"))
    except (OSError, ValueError, AttributeError):
        return False


def openvino_config() -> dict:
    return {"INFERENCE_PRECISION_HINT": "f32",  # never bf16 behind the user's back (int8 layers stay int8)
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY"}  # one stream: the batch is the parallel work


def convert_to_openvino(module: nn.Module, x: torch.Tensor):
    """``module`` as an OpenVINO model for inputs shaped like ``x``, batch dimension dynamic."""
    ov = import_openvino()
    with warnings.catch_warnings():
        # OpenVINO's converter traces with torch.jit.trace (deprecated in torch 2.14: its call, not the
        # user's), and the trace records the input check and mean/std as constants, as intended
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)
        with openvino_telemetry_declined():
            return ov.convert_model(module, example_input=x[:1].contiguous(), input=[(-1, *x.shape[1:])])


@contextlib.contextmanager
def openvino_telemetry_declined():
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


def import_openvino():
    if "openvino" not in sys.modules:
        with openvino_telemetry_declined():
            import openvino  # noqa: F401
    return sys.modules["openvino"]


@functools.lru_cache(maxsize=1)
def openvino_core():
    """One ``openvino.Core`` for the process: it must outlive every model it compiled (a Core
    destroyed first unloads the CPU plugin under them, and their later destruction crashes)."""
    return import_openvino().Core()
