"""Names and file conventions of the export formats (imports neither torch nor NIR, so the
command line can offer them as choices)."""

from __future__ import annotations

from pathlib import Path

CONVENTIONS = ("euler", "exact")  # how NIR's tau maps to our per-step decay (spikebridge.deploy.nir)
TARGETS = ("generic", "snntorch", "norse")  # NIR graph layouts
SIDECAR_FORMAT = "spikebridge-nir"
SIDECAR_VERSION = 1
INT8_FORMAT = "spikebridge-int8"  # the int8 model's record: safetensors metadata and JSON sidecar (fixed_point)
INT8_VERSION = 1
AKIDA_FORMAT = "spikebridge-akida"  # the JSON sidecar of an Akida .fbz (spikebridge.deploy.akida)
AKIDA_VERSION = 1
AKIDA_BITS = (1, 2, 4)  # input and weight bit widths of Akida's FullyConnected layer
FORMATS = ("nir", "int8", "akida")  # spikebridge export --format
EXPORT_FORMATS = (*FORMATS, "integer", "spikebridge")  # spikebridge.export(..., format=): also the integer learner, native
SNNTORCH_DT = 1e-4  # snnTorch's NIR import hard-codes this time step


def sidecar_path(path) -> Path:
    """The JSON sidecar written beside an exported file: ``<path>.json``."""
    return Path(f"{path}.json")


def check_akida_bits(value, what: str) -> int:
    """``value`` as an Akida bit width (`AKIDA_BITS`), else a one-line error naming ``what``."""
    from numbers import Integral

    from ..errors import SpikebridgeError

    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) not in AKIDA_BITS:
        raise SpikebridgeError(f"{what} {value!r} is not an Akida bit width; choose one of "
                               f"{', '.join(map(str, AKIDA_BITS))}")
    return int(value)
