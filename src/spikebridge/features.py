"""Batched feature extraction into a content-addressed, resumable on-disk cache.

Layout of one cache entry (``<cache_dir>/<key[:20]>/``)::

    shard-00000.safetensors   features [m, D] float32, index [m] int64 (data set rows kept)
    shard-00000.json          {"sha256": <of the .safetensors file>, "rows": m, "skipped": [...], "rank": r}
    ...
    manifest.json             written last: key, encoder identity, data set manifest, shards

The key is the SHA-256 of (encoder name, weight checksum, feature point, preprocessing,
data set manifest of paths + sizes + mtimes), so a changed input never reuses a stale
entry. Every file is written to a temporary name and renamed into place. A shard counts
as done only when its JSON sidecar exists and the shard's checksum matches it, so an
interrupted run resumes from the last complete shard and a corrupted shard is recomputed.
Shards are assigned round-robin to ranks (``rank``/``world_size``) so several processes
can fill one entry; the manifest is written once all shards are present.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from .data import ImageDataset, UnreadableImage
from .encoders import Encoder
from .errors import SpikebridgeError

SHARD_SIZE = 1024
DEFAULT_CACHE = Path(os.environ.get("SPIKEBRIDGE_CACHE", Path.home() / ".cache" / "spikebridge"))

_allocator_tuned = False


def tune_allocator() -> None:
    """Keep glibc from returning large buffers to the OS between batches.

    With glibc's defaults, every CNN batch on the CPU maps and unmaps its ~50 MB activation
    buffers, page-faulting them in again: measured 18 img/s for Lite0 at batch 32 on 2 cores
    vs 74 img/s after ``M_MMAP_MAX=0`` + a 1 GiB trim threshold (90 with channels_last, on a
    par with jemalloc). No-op off glibc or with ``SPIKEBRIDGE_NO_MALLOPT=1``.
    """
    global _allocator_tuned
    if _allocator_tuned or os.environ.get("SPIKEBRIDGE_NO_MALLOPT") or platform.system() != "Linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: serve large blocks from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of freed heap
    except (OSError, AttributeError):
        pass
    _allocator_tuned = True


@dataclass
class FeatureSet:
    """Features of one data set split: ``features[i]`` belongs to data set row ``index[i]``."""

    features: np.ndarray  # [n, D] float32
    labels: np.ndarray  # [n] int64
    index: np.ndarray  # [n] int64
    classes: list[str]
    key: str
    path: Path
    skipped: list[list[str]] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def cache_key(encoder: Encoder, dataset: ImageDataset) -> str:
    blob = json.dumps({"encoder": encoder.identity(), "dataset": dataset.manifest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def shard_is_complete(entry: Path, i: int) -> bool:
    shard, side = entry / f"shard-{i:05d}.safetensors", entry / f"shard-{i:05d}.json"
    if not (shard.is_file() and side.is_file()):
        return False
    try:
        return json.loads(side.read_text())["sha256"] == file_sha256(shard)
    except (ValueError, KeyError):
        return False


class _Decoded(torch.utils.data.Dataset):
    """Rows of a data set as preprocessed tensors; unreadable files come back as reasons."""

    def __init__(self, dataset: ImageDataset, rows: list[int], transform):
        self.dataset, self.rows, self.transform = dataset, rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        try:
            return self.transform(self.dataset.open(row)), row, ""
        except UnreadableImage as exc:
            return None, row, str(exc)


def _collate(items):
    good = [(x, row) for x, row, _ in items if x is not None]
    bad = [(row, reason) for x, row, reason in items if x is None]
    images = torch.stack([x for x, _ in good]) if good else None
    return images, [row for _, row in good], bad


def extract_features(
    dataset: ImageDataset,
    encoder: Encoder,
    cache_dir: str | Path = DEFAULT_CACHE,
    *,
    batch_size: int = 32,
    shard_size: int = SHARD_SIZE,
    workers: int | None = None,
    strict: bool = False,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
    stop_after_shards: int | None = None,
) -> FeatureSet | None:
    """Features of every image in ``dataset``, from the cache when present.

    Returns ``None`` only on a rank > 0 (or with ``stop_after_shards``) when the entry is not
    complete yet. ``strict`` turns an unreadable image into an error naming the file;
    otherwise it is skipped with a warning and listed in ``FeatureSet.skipped``.
    """
    tune_allocator()
    key = cache_key(encoder, dataset)
    entry = Path(cache_dir) / key[:20]
    if (entry / "manifest.json").is_file():
        try:
            return load_features(entry)
        except SpikebridgeError as exc:
            warnings.warn(f"{exc}; recomputing", stacklevel=2)
            (entry / "manifest.json").unlink(missing_ok=True)
    entry.mkdir(parents=True, exist_ok=True)
    n_shards = max(1, -(-len(dataset) // shard_size))
    mine = [i for i in range(n_shards) if i % world_size == rank]
    todo = [i for i in mine if not shard_is_complete(entry, i)]
    if stop_after_shards is not None:
        todo = todo[:stop_after_shards]
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    transform = encoder.transform()
    n_todo = sum(min(shard_size, len(dataset) - i * shard_size) for i in todo)
    bar = tqdm(total=n_todo, unit="img", desc=f"extract {dataset.name}/{dataset.split}", disable=not progress)
    # one loader for all pending shards (worker start-up is paid once); batches never cross a shard
    shard_rows = {i: list(range(i * shard_size, min((i + 1) * shard_size, len(dataset)))) for i in todo}
    batches = [rows[b : b + batch_size] for rows in shard_rows.values() for b in range(0, len(rows), batch_size)]
    positions = {row: p for p, row in enumerate(r for rows in shard_rows.values() for r in rows)}
    loader = torch.utils.data.DataLoader(
        _Decoded(dataset, [r for rows in shard_rows.values() for r in rows], transform),
        batch_sampler=[[positions[r] for r in b] for b in batches],
        num_workers=workers,
        collate_fn=_collate,
    )
    batch_iter = iter(loader)
    for i, rows in shard_rows.items():
        feats, kept, skipped, seen = [], [], [], 0
        while seen < len(rows):
            images, good_rows, bad = next(batch_iter)
            seen += len(good_rows) + len(bad)
            for row, reason in bad:
                if strict:
                    raise SpikebridgeError(reason + " (--strict)")
                warnings.warn(f"skipping {reason}", stacklevel=2)
                skipped.append([dataset.samples[row][0], reason])
            if images is not None:
                feats.append(encoder(images).numpy())
                kept += good_rows
            bar.update(len(good_rows) + len(bad))
        _write_shard(entry, i, feats, kept, skipped, encoder.feature_dim, rank)
    bar.close()
    if not all(shard_is_complete(entry, i) for i in range(n_shards)):
        return None
    if rank == 0:
        write_json_atomic(
            entry / "manifest.json",
            {
                "key": key,
                "encoder": encoder.identity(),
                "weight_source": encoder.weight_source,
                "dataset": dataset.manifest(),
                "labels_of_rows": dataset.labels.tolist(),
                "n_shards": n_shards,
                "feature_dim": encoder.feature_dim,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
        return load_features(entry)
    return None


def _write_shard(entry: Path, i: int, feats: list, kept: list, skipped: list, dim: int, rank: int = 0) -> None:
    arrays = {
        "features": np.concatenate(feats) if feats else np.zeros((0, dim), np.float32),
        "index": np.asarray(kept, dtype=np.int64),
    }
    shard = entry / f"shard-{i:05d}.safetensors"
    tmp = shard.with_name(f".{shard.name}.{os.getpid()}.tmp")
    save_file(arrays, str(tmp))
    os.replace(tmp, shard)
    write_json_atomic(entry / f"shard-{i:05d}.json", {"sha256": file_sha256(shard), "rows": len(kept), "skipped": skipped,
                                                        "rank": rank})


def load_features(entry: str | Path) -> FeatureSet:
    """Read a complete cache entry, verifying every shard's checksum."""
    entry = Path(entry)
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise SpikebridgeError(f"no readable feature manifest in {entry}") from exc
    feats, index, skipped = [], [], []
    for i in range(manifest["n_shards"]):
        if not shard_is_complete(entry, i):
            raise SpikebridgeError(f"feature shard {entry}/shard-{i:05d}.safetensors is missing or corrupted")
        arrays = load_file(str(entry / f"shard-{i:05d}.safetensors"))
        feats.append(arrays["features"])
        index.append(arrays["index"])
        skipped += json.loads((entry / f"shard-{i:05d}.json").read_text())["skipped"]
    index_all = np.concatenate(index)
    labels = np.asarray(manifest["labels_of_rows"], dtype=np.int64)[index_all]
    return FeatureSet(
        np.concatenate(feats), labels, index_all, manifest["dataset"]["classes"], manifest["key"], entry, skipped, manifest
    )


def extract_distributed(dataset: ImageDataset, encoder: Encoder, cache_dir: str | Path = DEFAULT_CACHE,
                        **kw) -> FeatureSet:
    """:func:`extract_features` run by every rank of a ``torch.distributed`` group (torchrun).

    Each rank computes its own shards (``i % world_size == rank``) into the shared cache
    entry; once every rank is done, rank 0 writes the manifest (computing any shard still
    missing itself) and every rank loads the complete entry. Without a process group this is
    plain :func:`extract_features`. A rerun after a crash recomputes only missing shards.
    """
    from .distributed import barrier, rank_and_world

    rank, world = rank_and_world()
    if world == 1:
        return extract_features(dataset, encoder, cache_dir, **kw)
    progress = kw.pop("progress", True) and rank == 0
    extract_features(dataset, encoder, cache_dir, rank=rank, world_size=world, progress=progress, **kw)
    barrier()
    merged = extract_features(dataset, encoder, cache_dir, progress=progress, **kw) if rank == 0 else None
    barrier()
    return merged if merged is not None else load_features(Path(cache_dir) / cache_key(encoder, dataset)[:20])
