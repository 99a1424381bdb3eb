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
(`calibrate()`). (BatchNorm folding, ``torch.compile``
and the OpenVINO fp32 backend change features only by float rounding, ~1e-6, and are not in
the key; the manifest records the engine that ran.)

Pipeline: ``workers`` loader processes (default `default_workers()`: on the CPU one per
8 cores, at least one, none with 2 cores or fewer; each with one torch thread) decode, resize and
crop images to ``uint8`` pixels; the main process keeps every core for normalisation and the forward pass
(`__call__()`). Every file is written to a temporary name and renamed into place. A shard counts
as done only when its JSON sidecar exists, the shard's checksum matches it, and the rows it
records (range and hash of their manifest entries) are the rows expected at its position;
so an interrupted run resumes from the last complete shard and a corrupted or misplaced
shard is recomputed. An entry begun with another ``shard_size`` is resumed with its own
shard size (never mixing two layouts). Before use, the assembled entry is checked against
its manifest: every row once (kept or skipped), labels of the right length.

Shards are assigned round-robin to ranks (``rank``/``world_size``) so several processes
can fill one entry; the manifest is written once all shards are present.

Concurrency: a process computes a shard only while holding an exclusive ``fcntl.flock``
on ``.shard-NNNNN.lock`` in the entry (`ShardLock`). A second process extracting the
same entry skips the shards being computed, takes the others, and then waits for the
locked ones (or computes them itself if their holder died: the kernel releases the lock of
a killed process). On network file systems: Linux NFS clients emulate ``flock`` with POSIX
byte-range locks, which work across machines when the server provides locking (NFSv4, or
NFSv3 with lockd); with ``-o nolock`` (or file systems without locking) the lock is local
to each machine, so two machines may compute the same shard. Results stay correct (equal
content, atomic renames); only the work is duplicated.
"""

from .by_name import dataset_features
from .cache import DEFAULT_CACHE, SHARD_SIZE, FeatureSet, cache_key, file_sha256, load_features, shard_is_complete
from .distributed import extract_distributed
from .extraction import extract_features
from .loader import default_workers, pixel_loader, tune_allocator
from .shard_lock import ShardLock

__all__ = [
    "DEFAULT_CACHE", "SHARD_SIZE", "FeatureSet", "ShardLock", "cache_key", "dataset_features", "default_workers",
    "extract_distributed", "extract_features", "file_sha256", "load_features", "pixel_loader", "shard_is_complete",
    "tune_allocator",
]
