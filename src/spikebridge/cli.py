"""Command-line interface: ``spikebridge <command> --help`` explains every option."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from .errors import SpikebridgeError


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits",
                   help="'digits' (embedded, offline), a folder with train/<class>/ and val/<class>/, "
                        "or 'imagenet64:<ILSVRC-2012 root>' (default: digits)")
    p.add_argument("--max-per-class", type=int, default=None, help="cap training images per class (e.g. 600)")
    p.add_argument("--encoder", default="efficientnet_lite0", help="timm model name (default: efficientnet_lite0, offline weights)")
    p.add_argument("--weights", default=None, help="local checkpoint (.safetensors or .pth) overriding other weight sources")
    p.add_argument("--cut", type=int, default=None, help="use pooled features of stage K instead of the final features")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache folder (default: $SPIKEBRIDGE_CACHE or ~/.cache/spikebridge)")
    p.add_argument("--batch-size", type=int, default=32, help="images per encoder batch (default: 32)")
    p.add_argument("--workers", type=int, default=None, help="image-decoding worker processes (default: min(2, cores))")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda[:i]'")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image instead of skipping it")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def load_split_features(args) -> tuple:
    """Open the data set, create the encoder, and extract (or load) train and val features."""
    from .data import open_dataset
    from .encoders import create_encoder
    from .features import DEFAULT_CACHE, extract_features

    splits = open_dataset(args.dataset, args.max_per_class)
    encoder = create_encoder(args.encoder, weights=args.weights, cut=args.cut, device=args.device)
    cache = args.cache_dir or DEFAULT_CACHE
    out = []
    for ds in (splits.train, splits.val):
        out.append(extract_features(ds, encoder, cache, batch_size=args.batch_size, workers=args.workers,
                                    strict=args.strict, progress=not args.no_progress))
    return splits, encoder, out[0], out[1]


def cmd_extract(args) -> int:
    t0 = time.perf_counter()
    _, encoder, train, val = load_split_features(args)
    dt = time.perf_counter() - t0
    for name, fs in (("train", train), ("val", val)):
        print(f"{name}: {fs.features.shape[0]} x {fs.features.shape[1]} features -> {fs.path}"
              + (f" ({len(fs.skipped)} unreadable images skipped)" if fs.skipped else ""))
    print(f"encoder {encoder.name} ({encoder.weight_source}), done in {dt:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikebridge",
        description="Pretrained image encoders + spiking CoLaNET classifiers trained with local plasticity.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("extract", help="extract (and cache) encoder features of a data set",
                       description="Extract pooled encoder features of the train and val splits into the cache.")
    _add_data_options(p)
    p.set_defaults(func=cmd_extract)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        return args.func(args) or 0
    except SpikebridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed work is kept; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
