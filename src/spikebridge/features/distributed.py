"""Feature extraction by every rank of a ``torch.distributed`` group into one cache entry."""

from __future__ import annotations

from pathlib import Path

from ..data import ImageDataset
from ..encoders.encoder import Encoder
from .cache import DEFAULT_CACHE, FeatureSet, cache_key, load_features
from .extraction import extract_features


def extract_distributed(dataset: ImageDataset, encoder: Encoder, cache_dir: str | Path = DEFAULT_CACHE,
                        **kw) -> FeatureSet:
    """[`extract_features()`][spikebridge.features.extract_features] run by every rank of a ``torch.distributed`` group (torchrun).

    Each rank computes its own shards (``i % world_size == rank``) into the shared cache
    entry; once every rank is done, rank 0 writes the manifest (computing any shard still
    missing itself) and every rank loads the complete entry. Without a process group this is
    plain [`extract_features()`][spikebridge.features.extract_features]. A rerun after a crash recomputes only missing shards.
    """
    from ..distributed import barrier, rank_and_world

    rank, world = rank_and_world()
    if world == 1:
        return extract_features(dataset, encoder, cache_dir, **kw)
    progress = kw.pop("progress", True) and rank == 0
    extract_features(dataset, encoder, cache_dir, rank=rank, world_size=world, progress=progress, **kw)
    barrier()
    merged = extract_features(dataset, encoder, cache_dir, progress=progress, **kw) if rank == 0 else None
    barrier()
    return merged if merged is not None else load_features(Path(cache_dir) / cache_key(encoder, dataset)[:20], dataset)
