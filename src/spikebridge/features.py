"""Batched feature extraction into a content-addressed, resumable on-disk cache.

Layout of one cache entry (``<cache_dir>/<key[:20]>/``)::

    shard-00000.safetensors   features [m, D] float32, index [m] int64 (data set rows kept)
    shard-00000.json          {"sha256": <of the .safetensors file>, "start": a, "stop": b, "shard_size": s,
                               "rows_sha256": <of the manifest entries of rows a..b-1>, "rows": m,
                               "skipped": [[key, reason], ...], "skipped_rows": [...], "rank": r}
    ...
    manifest.json             written last: key, encoder identity, data set manifest, labels, shards

The key is the SHA-256 of (encoder name, weight checksum, feature point, preprocessing
including JPEG draft decoding, precision fp32/bf16/int8 -- for int8 with its calibration: manifest
hash of the calibration images, their number, seed, NNCF version and preset --, data set
manifest of paths + sizes + mtimes), so a changed input never reuses a stale entry. An int8
encoder not yet calibrated is calibrated on the first train split it extracts
(:meth:`Encoder.calibrate`). (BatchNorm folding, ``torch.compile``
and the OpenVINO fp32 backend change features only by float rounding, ~1e-6, and are not in
the key; the manifest records the engine that ran.)

Pipeline: ``workers`` loader processes (default :func:`default_workers`: on the CPU one per
8 cores, at least one, none with 2 cores or fewer; each with one torch thread) decode, resize and
crop images to ``uint8`` pixels; the main process keeps every core for normalisation and the forward pass
(:meth:`Encoder.__call__`). Every file is written to a temporary name and renamed into place. A shard counts
as done only when its JSON sidecar exists, the shard's checksum matches it, and the rows it
records (range and hash of their manifest entries) are the rows expected at its position;
so an interrupted run resumes from the last complete shard and a corrupted or misplaced
shard is recomputed. An entry begun with another ``shard_size`` is resumed with its own
shard size (never mixing two layouts). Before use, the assembled entry is checked against
its manifest: every row once (kept or skipped), labels of the right length.

Shards are assigned round-robin to ranks (``rank``/``world_size``) so several processes
can fill one entry; the manifest is written once all shards are present.

Concurrency: a process computes a shard only while holding an exclusive ``fcntl.flock``
on ``.shard-NNNNN.lock`` in the entry (:class:`ShardLock`). A second process extracting the
same entry skips the shards being computed, takes the others, and then waits for the
locked ones (or computes them itself if their holder died: the kernel releases the lock of
a killed process). On network file systems: Linux NFS clients emulate ``flock`` with POSIX
byte-range locks, which work across machines when the server provides locking (NFSv4, or
NFSv3 with lockd); with ``-o nolock`` (or file systems without locking) the lock is local
to each machine, so two machines may compute the same shard. Results stay correct (equal
content, atomic renames); only the work is duplicated.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import platform
import sys
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from tqdm.auto import tqdm

from .data import ImageDataset, UnreadableImage
from .encoders import Encoder
from .errors import SpikebridgeError
from .io import save_arrays, write_json_atomic

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
    computed: list[int] = field(default_factory=list)  # shards this call computed (the rest came from the cache)

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


def _read_json(path: Path) -> dict | None:
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
    meta = _read_json(side)
    if meta is None or meta.get("sha256") != file_sha256(shard):
        return False
    return expect is None or all(meta.get(k) == v for k, v in expect.items())


class ShardLock:
    """Exclusive ``fcntl.flock`` on ``<entry>/.shard-NNNNN.lock`` while one process computes a shard.

    The lock file is removed on release; a process that locked a file removed meanwhile
    (its inode no longer at the path) retries on the new one, so removal is race-free. The
    kernel drops the lock when its holder dies (``kill -9`` included). On NFS, ``flock`` is
    emulated with byte-range locks (Linux >= 2.6.12) and works across clients when the server
    supports locking; a mount with ``nolock`` makes locks local to each client, so two
    machines may compute the same shard: the result is still correct (identical content,
    atomic renames), only the work is done twice.
    """

    def __init__(self, path: Path):
        self.path, self.fd = Path(path), None

    def acquire(self, block: bool = True) -> bool:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                st = os.stat(self.path)
                same = (st.st_ino, st.st_dev) == (os.fstat(fd).st_ino, os.fstat(fd).st_dev)
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return True
            os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            os.unlink(self.path)  # while still holding it: see the class docstring
            os.close(self.fd)
            self.fd = None


def _recorded_shard_size(entry: Path) -> int | None:
    """Shard size of the first valid shard already in ``entry`` (None for a new entry)."""
    for side in sorted(entry.glob("shard-*.json")):
        meta = _read_json(side)
        shard = side.with_suffix(".safetensors")
        if meta and isinstance(meta.get("shard_size"), int) and shard.is_file() and meta.get("sha256") == file_sha256(shard):
            return meta["shard_size"]
    return None


class _Decoded(torch.utils.data.Dataset):
    """Rows of a data set as ``uint8 [H, W, 3]`` pixels (:meth:`Preprocess.pixels`); unreadable
    files come back as reasons. Normalisation to float happens on whole batches in the main
    process (:meth:`Encoder.__call__`), so workers only decode, resize and crop."""

    def __init__(self, dataset: ImageDataset, preprocess):
        self.dataset, self.preprocess = dataset, preprocess

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, row: int):
        try:
            image = self.dataset.open(row, draft_to=self.preprocess.draft_target)
        except UnreadableImage as exc:
            return None, row, str(exc)
        return self.preprocess.pixels(image), row, ""


def _collate(items):
    good = [(x, row) for x, row, _ in items if x is not None]
    bad = [(row, reason) for x, row, reason in items if x is None]
    # uint8 [B, H, W, 3]; in a worker, default_collate stacks straight into shared memory (no extra copy)
    images = torch.utils.data.default_collate([x for x, _ in good]) if good else None
    return images, [row for _, row in good], bad


def _worker_init(worker_id: int) -> None:
    """A loader worker decodes with one thread: the cores belong to the forward pass."""
    torch.set_num_threads(1)


def pixel_loader(dataset: ImageDataset, encoder: Encoder, batch_sampler, workers: int) -> torch.utils.data.DataLoader:
    """The extraction loader: batches of ``(uint8 [B, H, W, 3] pixels or None, kept rows,
    [(row, reason), ...] unreadable)`` for the row lists ``batch_sampler`` yields, decoded by
    ``workers`` one-thread processes (0: in this process)."""
    return torch.utils.data.DataLoader(_Decoded(dataset, encoder.preprocess()), batch_sampler=batch_sampler,
                                       num_workers=workers, collate_fn=_collate,
                                       worker_init_fn=_worker_init if workers else None,
                                       pin_memory=encoder.device.type == "cuda")


def default_workers(device: torch.device | str = "cpu") -> int:
    """Loader worker processes for extraction on ``device``.

    On the CPU the forward pass keeps every core (torch's intra-op threads) and decoding
    (JPEG decode, resize, crop: ~1-1.5 ms of one core per image at 224 px) is a small share of
    it (Lite0: ~8-20 core-ms per image), so one worker per 8 cores overlaps decoding with the
    forward without taking cores from it; more workers only preempt the forward's threads.
    With 2 cores or fewer, none: a worker process then preempts the forward and adds the
    copy through shared memory, and decoding in the main process between batches measured
    faster end to end (``benchmarks/extract.py`` worker sweep on 2 cores: 186 vs 169 img/s on
    Imagenette, 207 vs 189 on the 64-class set). On a GPU the CPU does nothing but decode: up
    to 8 workers.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.device(device).type == "cpu":
        return 0 if cores <= 2 else max(1, cores // 8)
    return max(1, min(8, cores))


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

    Returns ``None`` only on a rank > 0 (or with ``stop_after_shards``) when the entry is not
    complete yet. ``strict`` turns an unreadable image into an error naming the file (also
    when the cache entry already records skipped images); otherwise it is skipped with a
    warning and listed in ``FeatureSet.skipped``. An entry begun with another ``shard_size``
    is resumed with that entry's shard size (with a warning), so no completed work is lost.
    Several processes on one entry share the work shard by shard (:class:`ShardLock`).
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
    recorded = _recorded_shard_size(entry)
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
                        for s in (_read_json(entry / f"shard-{i:05d}.json") or {}).get("skipped", [])]
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
            side = _read_json(entry / f"shard-{i:05d}.json") or {}
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
                _write_shard(entry, i, s, encoder.feature_dim, rank, expect[i])
                written.append(i)
                claimed.pop(i).release()
        for i in list(claimed):  # claimed shards without rows (an empty data set)
            if expect[i]["stop"] > expect[i]["start"]:
                raise RuntimeError(f"shard {i} was claimed but its rows never came back from the loader")
            _write_shard(entry, i, {"feats": [], "kept": [], "skipped": [], "skipped_rows": []}, encoder.feature_dim,
                         rank, expect[i])
            written.append(i)
            claimed.pop(i).release()
    finally:
        for lock in claimed.values():
            lock.release()
    return written


def _write_shard(entry: Path, i: int, s: dict, dim: int, rank: int, expect: dict) -> None:
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
    return merged if merged is not None else load_features(Path(cache_dir) / cache_key(encoder, dataset)[:20], dataset)


def dataset_features(dataset: str = "digits", encoder: str | Encoder = "efficientnet_lite0", split: str = "train", *,
                     cut: int | None = None, weights: str | None = None, cache_dir: str | Path | None = None,
                     max_per_class: int | None = None, device: str = "cpu", batch_size: int = 32,
                     precision: str | None = None, workers: int | None = None,
                     calibration_images: int | None = None, calibration_seed: int | None = None,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(X [n, D] float32, y [n] int64)``: encoder features of one split of a data set, in one call.

    ``dataset`` is what :func:`spikebridge.data.open_dataset` accepts (``"digits"``, an image
    folder with ``train/`` and ``val/``, ``"imagenet64:<root>"``); ``encoder`` a timm name (the
    default Lite0 weights are installed offline) or an :class:`~spikebridge.encoders.Encoder`;
    ``split`` ``"train"`` or ``"val"``. ``precision``: ``"fp32"`` (default), ``"bf16"`` or
    ``"auto"`` (bf16 on CPUs with native bf16; see :func:`~spikebridge.encoders.create_encoder`) or
    ``"int8"`` (NNCF, calibrated on ``calibration_images`` train images drawn with ``calibration_seed``);
    with an ``Encoder`` it must match the encoder's. ``workers``: loader processes (default
    :func:`default_workers`).
    Features are cached (``cache_dir``, default ``$SPIKEBRIDGE_CACHE`` or
    ``~/.cache/spikebridge``; the precision is part of the key), so a second call is a disk read.
    Also available as ``spikebridge.features(...)``.
    """
    from .data import SPLITS, open_dataset
    from .encoders import DEFAULT_PRECISION, create_encoder, resolve_precision

    if split not in SPLITS:
        raise SpikebridgeError(f"split must be one of {SPLITS}, not {split!r}")
    if isinstance(encoder, Encoder):
        if cut is not None or weights is not None:
            raise SpikebridgeError("cut= and weights= apply when the encoder is given by name; this Encoder "
                                   f"is already built (cut {encoder.cut}, weights {encoder.weight_source})")
        if precision is not None and resolve_precision(precision, encoder.device) != encoder.precision:
            raise SpikebridgeError(f"precision={precision!r} conflicts with the given encoder's precision "
                                   f"{encoder.precision!r}: create the encoder with that precision instead")
    else:
        resolve_precision(precision or DEFAULT_PRECISION, torch.device(device))  # a bad value fails before the data set is scanned
    splits = open_dataset(dataset, max_per_class)
    if isinstance(encoder, str):
        encoder = create_encoder(encoder, weights=weights, cut=cut, device=device, precision=precision or DEFAULT_PRECISION,
                                 calibration_images=calibration_images, calibration_seed=calibration_seed)
    if encoder.precision == "int8" and encoder.calibration is None:  # calibrated on train, whichever split is asked for
        encoder.calibrate(splits.train, cache_dir or DEFAULT_CACHE, progress=progress)
    fs = extract_features(getattr(splits, split), encoder, cache_dir or DEFAULT_CACHE, batch_size=batch_size,
                          workers=workers, progress=progress)
    return fs.features, fs.labels


class _CallableModule(types.ModuleType):
    """``spikebridge.features(...)`` is :func:`dataset_features` (the module stays a module)."""

    def __call__(self, *args, **kwargs):
        return dataset_features(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
