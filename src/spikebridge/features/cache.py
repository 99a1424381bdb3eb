"""The feature cache format: entry key, shards with their JSON sidecars, checks of a shard and of a
whole entry, and reading an entry back as a `FeatureSet` (layout: `features`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from ..data import ImageDataset
from ..encoders.encoder import Encoder
from ..errors import SpikebridgeError
from ..io import file_sha256, save_arrays, write_json_atomic


SHARD_SIZE = 1024
DEFAULT_CACHE = Path(os.environ.get("SPIKEBRIDGE_CACHE", Path.home() / ".cache" / "spikebridge"))


@dataclass
class FeatureSet:
    """Features of one data set split: ``features[i]`` belongs to data set row ``index[i]``.

    Attributes
    ----------
    features : np.ndarray
        [n, D] float32.
    labels : np.ndarray
        [n] int64.
    index : np.ndarray
        [n] int64.
    classes : list[str]
        Class names, in label order.
    key : str
        The cache key (hash of encoder identity and data set manifest).
    path : Path
        The cache entry folder.
    skipped : list[list[str]]
        Unreadable images left out, with the reason.
    info : dict
        The entry record (encoder, data set, counts).
    computed : list[int]
        Shards this call computed (the rest came from the cache).
    """

    features: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    classes: list[str]
    key: str
    path: Path
    skipped: list[list[str]] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    computed: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


def cache_key(encoder: Encoder, dataset: ImageDataset) -> str:
    blob = json.dumps({"encoder": encoder.identity(), "dataset": dataset.manifest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_json(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:  # a torn or foreign file: the shard counts as not done
        return None
    return obj if isinstance(obj, dict) else None


def shard_is_complete(entry: Path, i: int, expect: dict | None = None) -> bool:
    """Shard ``i`` exists, matches its sidecar's checksum and, with ``expect``, holds exactly
    the rows ``expect`` describes (``start``, ``stop``, ``shard_size``, ``rows_sha256``)."""
    shard, side = entry / f"shard-{i:05d}.safetensors", entry / f"shard-{i:05d}.json"
    if not (shard.is_file() and side.is_file()):
        return False
    meta = read_json(side)
    if meta is None or meta.get("sha256") != file_sha256(shard):
        return False
    return expect is None or all(meta.get(k) == v for k, v in expect.items())


def recorded_shard_size(entry: Path) -> int | None:
    """Shard size of the first valid shard already in ``entry`` (None for a new entry)."""
    for side in sorted(entry.glob("shard-*.json")):
        meta = read_json(side)
        shard = side.with_suffix(".safetensors")
        if meta and isinstance(meta.get("shard_size"), int) and shard.is_file() and meta.get("sha256") == file_sha256(shard):
            return meta["shard_size"]
    return None


def write_shard(entry: Path, i: int, s: dict, dim: int, rank: int, expect: dict) -> None:
    arrays = {
        "features": np.concatenate(s["feats"]) if s["feats"] else np.zeros((0, dim), np.float32),
        "index": np.asarray(s["kept"], dtype=np.int64),
    }
    shard = entry / f"shard-{i:05d}.safetensors"
    save_arrays(shard, arrays)
    write_json_atomic(entry / f"shard-{i:05d}.json", {"sha256": file_sha256(shard), "rows": len(s["kept"]), **expect,
                                                        "skipped": s["skipped"], "skipped_rows": s["skipped_rows"],
                                                        "rank": rank})


def load_features(entry: str | Path, dataset: ImageDataset | None = None) -> FeatureSet:
    """Read a complete cache entry, verifying every shard's checksum and row range and that
    the shards together hold every row of the manifest once (kept or skipped), with the
    manifest's labels; with ``dataset``, also that the entry describes exactly its rows."""
    entry = Path(entry)
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        n, labels_of_rows = manifest["dataset"]["n"], manifest["labels_of_rows"]
        n_shards = manifest["n_shards"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpikebridgeError(f"no readable feature manifest in {entry}") from exc
    if len(labels_of_rows) != n:
        raise SpikebridgeError(f"cache entry {entry}: the manifest lists {len(labels_of_rows)} labels for {n} rows")
    if dataset is not None and (n != len(dataset) or labels_of_rows != dataset.labels.tolist()):
        raise SpikebridgeError(f"cache entry {entry} does not describe the rows and labels of {dataset.name}/{dataset.split}")
    feats, index, skipped, skipped_rows, old_format, expected_start = [], [], [], [], False, 0
    for i in range(n_shards):
        if not shard_is_complete(entry, i):
            raise SpikebridgeError(f"feature shard {entry}/shard-{i:05d}.safetensors is missing or corrupted")
        arrays = load_file(str(entry / f"shard-{i:05d}.safetensors"))
        side = json.loads((entry / f"shard-{i:05d}.json").read_text())
        if "start" in side:
            start, stop = side["start"], side["stop"]
            if start != (expected_start if i else 0) or (i == n_shards - 1 and stop != n):
                raise SpikebridgeError(f"feature shard {entry}/shard-{i:05d} records rows {start}..{stop - 1}, "
                                       "which is not its place in the entry")
            expected_start = stop
            rows = set(arrays["index"].tolist()) | set(side["skipped_rows"])
            if rows != set(range(start, stop)) or len(arrays["index"]) + len(side["skipped_rows"]) != stop - start:
                raise SpikebridgeError(f"feature shard {entry}/shard-{i:05d} does not hold rows {start}..{stop - 1} it records")
            if dataset is not None and side["rows_sha256"] != dataset.rows_digest(start, stop):
                raise SpikebridgeError(f"feature shard {entry}/shard-{i:05d} holds other images than rows {start}..{stop - 1}")
            skipped_rows += side["skipped_rows"]
        else:
            old_format = True
        feats.append(arrays["features"])
        index.append(arrays["index"])
        skipped += side["skipped"]
    index_all = np.concatenate(index)
    covered = np.concatenate([index_all, np.asarray(skipped_rows, dtype=np.int64)])
    ok = len(index_all) + len(skipped) == n and (np.diff(index_all) > 0).all() and (
        len(index_all) == 0 or (index_all[0] >= 0 and index_all[-1] < n))
    if not old_format:
        ok = ok and np.array_equal(np.sort(covered), np.arange(n))
    if not ok:
        raise SpikebridgeError(f"cache entry {entry} holds {len(index_all)} rows + {len(skipped)} skipped, "
                               f"not the {n} rows of its manifest")
    labels = np.asarray(labels_of_rows, dtype=np.int64)[index_all]
    return FeatureSet(np.concatenate(feats), labels, index_all, manifest["dataset"]["classes"], manifest["key"], entry,
                      skipped, manifest)
