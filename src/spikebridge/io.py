"""Atomic file output: JSON documents and safetensors files with JSON metadata.

Every file is written to a temporary name in the destination folder and renamed over the
target (``os.replace``), so a reader never sees a half-written file. The only on-disk
format for models is safetensors with the metadata as JSON under the key ``"meta"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import SpikebridgeError


def _atomic(path: str | Path, write) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then rename it over ``path``. A
    failure (disk full, read-only folder, a file where a folder should be) removes the
    temporary file, leaves ``path`` as it was (an earlier checkpoint survives) and is one
    `SpikebridgeError` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # one writer per name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the folder itself is unusable: nothing was left in it
            pass
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpikebridgeError(f"cannot write {path}: {reason}".splitlines()[0]) from exc


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 4 MiB chunks), as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: str | Path, obj, indent: int = 1) -> None:
    """Write ``obj`` as JSON to ``path`` via a temporary file and a rename."""
    def write(tmp: Path) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)

    _atomic(path, write)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``tensors`` plus ``meta`` (JSON) to ``path`` via a temporary file and a rename."""
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    _atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)}))


def save_arrays(path: str | Path, arrays: dict) -> None:
    """Write numpy ``arrays`` as a safetensors file via a temporary file and a rename."""
    from safetensors.numpy import save_file as save_numpy

    _atomic(path, lambda tmp: save_numpy(arrays, str(tmp)))


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


def load_tensors(path: str | Path, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a file written by `save_tensors()` (``tensors=False``: the
    metadata only, without reading the tensors)."""
    path = Path(path)
    if not path.is_file():
        raise SpikebridgeError(f"model file not found: {path}")
    if not is_safetensors(path):
        raise SpikebridgeError(f"{path} is not a spikebridge model (expected a .safetensors file written by spikebridge)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
            values = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as exc:
        raise SpikebridgeError(f"cannot read model file {path}: {exc}".splitlines()[0]) from exc
    if not isinstance(meta, dict):
        raise SpikebridgeError(f"{path} is not a spikebridge model (its metadata is not a JSON object)")
    return values, meta
