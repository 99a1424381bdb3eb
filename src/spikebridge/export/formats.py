"""Names and file conventions of the export formats (imports neither torch nor NIR, so the
command line can offer them as choices)."""

from __future__ import annotations

from pathlib import Path

CONVENTIONS = ("euler", "exact")  # how NIR's tau maps to our per-step decay (spikebridge.export.nir)
TARGETS = ("generic", "snntorch", "norse")  # NIR graph layouts
SIDECAR_FORMAT = "spikebridge-nir"
SIDECAR_VERSION = 1
INT8_FORMAT = "spikebridge-int8"
SNNTORCH_DT = 1e-4  # snnTorch's NIR import hard-codes this time step


def sidecar_path(path) -> Path:
    """The JSON sidecar written beside an exported file: ``<path>.json``."""
    return Path(f"{path}.json")
