"""``spikebridge extract``: features of the train and val splits into the cache."""

from __future__ import annotations

import argparse
import time

from . import inputs
from .inputs import add_data_options


def cmd_extract(args) -> int:
    from ..distributed import rank_and_world

    t0 = time.perf_counter()
    _, encoder, train, val = inputs.load_split_features(args)
    dt = time.perf_counter() - t0
    rank, world = rank_and_world()
    if rank > 0:
        return 0
    for name, fs in (("train", train), ("val", val)):
        print(f"{name}: {fs.features.shape[0]} x {fs.features.shape[1]} features -> {fs.path} "
              f"({len(fs.computed)} of {fs.info['n_shards']} shards computed by this process"
              + (f"; {len(fs.skipped)} unreadable images skipped)" if fs.skipped else ")"))
    print(f"encoder {encoder.name} ({encoder.weight_source}), done in {dt:.1f} s"
          + (f" by {world} ranks" if world > 1 else ""))
    return 0


def add_extract_command(subparsers) -> argparse.ArgumentParser:
    """Register ``spikebridge extract`` on an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("extract", help="extract (and cache) encoder features of a data set",
                              description="Extract pooled encoder features of the train and val splits into the cache.")
    add_data_options(p)
    p.set_defaults(func=cmd_extract)
    return p
