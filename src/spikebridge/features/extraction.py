"""Extracting a data set's features into the cache, shard by shard, resumable and shared between
processes ([`extract_features()`][spikebridge.features.extraction.extract_features])."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

from tqdm.auto import tqdm

from ..data import ImageDataset
from ..encoders.encoder import Encoder
from ..errors import SpikebridgeError
from .cache import (DEFAULT_CACHE, SHARD_SIZE, FeatureSet, cache_key, load_features, read_json, recorded_shard_size,
                    shard_is_complete, write_shard)
from .loader import default_workers, pixel_loader, tune_allocator
from .shard_lock import ShardLock
from ..io import write_json_atomic


def _writable_entry(entry: Path) -> None:
    """Create the cache entry folder, or say in one line why the cache cannot hold it (a cache
    path that is a file, a read-only folder, a full disk), before any image is decoded."""
    try:
        entry.mkdir(parents=True, exist_ok=True)
        probe = entry / f".write-test.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise SpikebridgeError(f"cannot write the feature cache {entry.parent}: {exc.strerror or exc} "
                               f"({exc.filename or entry}); set --cache-dir or $SPIKEBRIDGE_CACHE to a "
                               "writable folder") from exc


def _strict_refusal(entry: Path, skipped: list) -> SpikebridgeError:
    return SpikebridgeError(f"cache entry {entry} records {len(skipped)} unreadable image(s), e.g. {skipped[0][0]} "
                            "(--strict refuses them: fix or remove the files, or drop --strict)")


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

    Parameters
    ----------
    dataset : ImageDataset
        One split (``open_dataset(...).train`` or ``.val``).
    encoder : Encoder
        From `create_encoder`; an int8 encoder is calibrated on the train split first.
    cache_dir : str or Path
        The feature cache (content-addressed, checksummed shards written atomically).
    batch_size, shard_size, workers : int
        Images per batch, per cache shard, and loader processes (default `default_workers`).
        An entry begun with another ``shard_size`` is resumed with its own (with a warning),
        so no completed work is lost.
    strict : bool
        An unreadable image is an error naming the file (also when the cache entry already
        records skipped images); otherwise it is skipped with a warning and listed in
        ``FeatureSet.skipped``.
    progress : bool
        Show a progress bar.
    rank, world_size : int
        Several processes on one entry share the work shard by shard (`ShardLock`).
    stop_after_shards : int, optional
        Stop after computing this many shards (tests of resumption).

    Returns
    -------
    FeatureSet or None
        ``features [n, D]``, ``labels [n]`` and the entry's record; ``None`` only on a rank > 0
        (or with ``stop_after_shards``) while the entry is not complete.
    """
    tune_allocator()
    if batch_size < 1:
        raise SpikebridgeError(f"batch_size must be >= 1, not {batch_size}")
    if encoder.precision == "int8" and encoder.calibration is None:
        if dataset.split != "train":
            raise SpikebridgeError(f"an int8 encoder is calibrated on the train split: extract {dataset.name}/train first, "
                                   "or call encoder.calibrate(<train split>, cache_dir)")
        encoder.calibrate(dataset, cache_dir, progress=progress)
    key = cache_key(encoder, dataset)
    entry = Path(cache_dir) / key[:20]
    if (entry / "manifest.json").is_file():
        try:
            fs = load_features(entry, dataset)
        except SpikebridgeError as exc:
            warnings.warn(f"{exc}; recomputing", stacklevel=2)
            (entry / "manifest.json").unlink(missing_ok=True)
        else:
            if strict and fs.skipped:
                raise _strict_refusal(entry, fs.skipped)
            if fs.skipped:  # said when they were skipped, and again each time the entry is used
                warnings.warn(f"the cached features {entry} of {dataset.name}/{dataset.split} lack {len(fs.skipped)} "
                              f"unreadable image(s), skipped when they were extracted, e.g. {fs.skipped[0][0]} "
                              "(--strict refuses such an entry)", stacklevel=2)
            return fs
    _writable_entry(entry)
    recorded = recorded_shard_size(entry)
    if recorded is not None and recorded != shard_size:
        warnings.warn(f"cache entry {entry} was begun with shards of {recorded} images: resuming with "
                      f"--shard-size {recorded} instead of {shard_size}", stacklevel=2)
        shard_size = recorded
    n = len(dataset)
    n_shards = max(1, -(-n // shard_size))
    expect = {}
    for i in range(n_shards):
        start, stop = i * shard_size, min((i + 1) * shard_size, n)
        expect[i] = {"start": start, "stop": stop, "shard_size": shard_size, "rows_sha256": dataset.rows_digest(start, stop)}
    mine = [i for i in range(n_shards) if i % world_size == rank]
    if strict:
        done_skipped = [s for i in mine if shard_is_complete(entry, i, expect[i])
                        for s in (read_json(entry / f"shard-{i:05d}.json") or {}).get("skipped", [])]
        if done_skipped:
            raise _strict_refusal(entry, done_skipped)
    workers = default_workers(encoder.device) if workers is None else workers
    if workers < 0:
        raise SpikebridgeError(f"workers must be >= 0, not {workers}")
    pending = [i for i in mine if not shard_is_complete(entry, i, expect[i])]
    n_pending = sum(expect[i]["stop"] - expect[i]["start"] for i in pending)
    builds = bool(n_pending) and encoder.prepare(n_pending, batch_size)  # picks the engine (Encoder.prepare)
    desc = f"extract {dataset.name}/{dataset.split}"
    bar = tqdm(total=n_pending, unit="img", desc=desc + (f" ({encoder.engine}: the first batch builds its graph)" if builds else ""),
               disable=not progress)
    computed: list[int] = []
    budget = stop_after_shards
    started = time.time()
    while pending and (budget is None or budget > 0):
        done = _extract_pass(dataset, encoder, entry, pending, expect, budget, batch_size=batch_size, workers=workers,
                             strict=strict, rank=rank, bar=bar, started=started)
        computed += done
        if budget is not None:
            budget -= len(done)
        if not done:  # every pending shard is being computed by another process: wait for one
            lock = ShardLock(entry / f".shard-{pending[0]:05d}.lock")
            lock.acquire(block=True)
            lock.release()
        pending = [i for i in mine if not shard_is_complete(entry, i, expect[i])]
    bar.close()
    if not all(shard_is_complete(entry, i, expect[i]) for i in range(n_shards)):
        return None
    if rank == 0:
        for stale in entry.glob("shard-*.*"):  # left by an earlier layout of this entry
            if stale.name.split(".")[0][6:].isdigit() and int(stale.name.split(".")[0][6:]) >= n_shards:
                stale.unlink()
        write_json_atomic(
            entry / "manifest.json",
            {
                "key": key,
                "encoder": encoder.identity(),
                "weight_source": encoder.weight_source,
                "engine": encoder.engine,  # what ran the last batches (not in the key: see the module docstring)
                "dataset": dataset.manifest(),
                "labels_of_rows": dataset.labels.tolist(),
                "n_shards": n_shards,
                "shard_size": shard_size,
                "feature_dim": encoder.feature_dim,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
        fs = load_features(entry, dataset)
        if strict and fs.skipped:
            raise _strict_refusal(entry, fs.skipped)
        fs.computed = computed
        return fs
    return None


def _extract_pass(dataset, encoder, entry: Path, pending: list[int], expect: dict, limit: int | None, *, batch_size: int,
                  workers: int, strict: bool, rank: int, bar, started: float) -> list[int]:
    """Compute the pending shards no other process holds; returns the shards written."""
    claimed: dict[int, ShardLock] = {}  # shards being computed (their locks)
    taken: list[int] = []

    def batches():  # runs in this process as the loader asks for work: claims shards one by one
        for i in pending:
            if limit is not None and len(taken) >= limit:
                return
            lock = ShardLock(entry / f".shard-{i:05d}.lock")
            if not lock.acquire(block=False):
                continue  # another process is computing it
            if shard_is_complete(entry, i, expect[i]):  # finished by another process meanwhile
                lock.release()
                continue
            side = read_json(entry / f"shard-{i:05d}.json") or {}
            if (side.get("shard_size") not in (None, expect[i]["shard_size"])
                    and (entry / f"shard-{i:05d}.json").stat().st_mtime >= started):
                lock.release()
                raise SpikebridgeError(f"cache entry {entry} is being filled with --shard-size {side['shard_size']} by "
                                       f"another process; rerun with --shard-size {side['shard_size']}")
            claimed[i] = lock
            taken.append(i)
            start, stop = expect[i]["start"], expect[i]["stop"]
            for b in range(start, stop, batch_size):
                yield list(range(b, min(b + batch_size, stop)))

    written: list[int] = []
    state: dict[int, dict] = {}
    try:
        loader = pixel_loader(dataset, encoder, batches(), workers)
        for images, good_rows, bad in loader:
            rows = good_rows + [row for row, _ in bad]
            i = next(j for j in claimed if expect[j]["start"] <= rows[0] < expect[j]["stop"])
            s = state.setdefault(i, {"feats": [], "kept": [], "skipped": [], "skipped_rows": [], "seen": 0})
            for row, reason in bad:
                if strict:
                    raise SpikebridgeError(reason + " (--strict)")
                warnings.warn(f"skipping {reason}", stacklevel=3)
                s["skipped"].append([dataset.samples[row][0], reason])
                s["skipped_rows"].append(row)
            if images is not None:
                s["feats"].append(encoder(images).numpy())
                s["kept"] += good_rows
            s["seen"] += len(rows)
            bar.update(len(rows))
            if bar.n == len(rows) and not bar.disable:
                bar.set_description(f"extract {dataset.name}/{dataset.split}")
            if s["seen"] == expect[i]["stop"] - expect[i]["start"]:
                write_shard(entry, i, s, encoder.feature_dim, rank, expect[i])
                written.append(i)
                claimed.pop(i).release()
        for i in list(claimed):  # claimed shards without rows (an empty data set)
            if expect[i]["stop"] > expect[i]["start"]:
                raise RuntimeError(f"shard {i} was claimed but its rows never came back from the loader")
            write_shard(entry, i, {"feats": [], "kept": [], "skipped": [], "skipped_rows": []}, encoder.feature_dim,
                         rank, expect[i])
            written.append(i)
            claimed.pop(i).release()
    finally:
        for lock in claimed.values():
            lock.release()
    return written
