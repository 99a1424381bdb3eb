"""Atomic file output: JSON documents and safetensors files with JSON metadata.

Every file is written to a temporary name in the destination folder and renamed over the
target (``os.replace``), so a reader never sees a half-written file. The only on-disk
format for models is safetensors with the metadata as JSON under the key ``"meta"``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import SpikebridgeError


def write_json_atomic(path: str | Path, obj, indent: int = 1) -> None:
    """Write ``obj`` as JSON to ``path`` via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=indent)
    os.replace(tmp, path)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``tensors`` plus ``meta`` (JSON) to ``path`` via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"meta": json.dumps(meta)})
    os.replace(tmp, path)


def save_arrays(path: str | Path, arrays: dict) -> None:
    """Write numpy ``arrays`` as a safetensors file via a temporary file and a rename."""
    from safetensors.numpy import save_file as save_numpy

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_numpy(arrays, str(tmp))
    os.replace(tmp, path)


def is_safetensors(path: str | Path) -> bool:
    """Whether ``path`` starts like a safetensors file: an 8-byte little-endian header length
    that fits in the file, then a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
        size = os.fstat(f.fileno()).st_size
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a file written by :func:`save_tensors`."""
    path = Path(path)
    if not path.is_file():
        raise SpikebridgeError(f"model file not found: {path}")
    if not is_safetensors(path):
        raise SpikebridgeError(f"{path} is not a spikebridge model (expected a .safetensors file written by spikebridge)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise SpikebridgeError(f"cannot read model file {path}: {exc}".splitlines()[0]) from exc
    return tensors, meta
