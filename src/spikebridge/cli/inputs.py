"""The data set and encoder options the commands share, and what they open: the data set
splits, the encoder, their features (extracted or read from the cache)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SpikebridgeError
from .common import at_least


def add_data_options(p: argparse.ArgumentParser, evaluate: bool = False) -> None:
    p.add_argument("--dataset", default="digits",
                   help="'digits' (embedded, offline), a folder with train/<class>/ and val/<class>/, "
                        "or 'imagenet64:<ILSVRC-2012 root>' (default: digits)")
    if evaluate:
        p.add_argument("--encoder", default=None, help="timm model name (default: the one the model was trained on)")
        p.add_argument("--weights", default=None, help="local encoder checkpoint (.safetensors or .pth) the model was trained with")
        p.add_argument("--cut", type=int, default=None, help="encoder stage cut (default: the model's)")
    else:
        p.add_argument("--max-per-class", type=int, default=None, help="cap training images per class (e.g. 600)")
        p.add_argument("--encoder", default="efficientnet_lite0", help="timm model name (default: efficientnet_lite0, offline weights)")
        p.add_argument("--weights", default=None, help="local checkpoint (.safetensors or .pth) overriding other weight sources")
        p.add_argument("--cut", type=int, default=None, help="use pooled features of stage K instead of the final features")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache folder (default: $SPIKEBRIDGE_CACHE or ~/.cache/spikebridge)")
    p.add_argument("--batch-size", type=int, default=32, help="images per encoder batch (default: 32)")
    p.add_argument("--shard-size", type=int, default=1024,
                   help="images per cache shard: the unit of resume and of work per torchrun rank (default: 1024; "
                        "an entry begun with another size keeps its own)")
    p.add_argument("--workers", type=int, default=None,
                   help="image-decoding worker processes (default: one per 8 cores, at least 1; up to 8 with a GPU)")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8", "auto"], default=None,
                   help="encoder arithmetic: fp32 (default; evaluate: the model's), bf16 autocast, int8 (NNCF post-training "
                        "quantisation on OpenVINO, calibrated on train images: pip install spikebridge[int8]), or auto "
                        "(bf16 where the CPU has native bf16); part of the feature cache key")
    p.add_argument("--calibration-images", type=int, default=None,
                   help="int8: train images the quantisation is calibrated on, drawn class-stratified "
                        "(default: 300; evaluate: the model's); part of the feature cache key")
    p.add_argument("--calibration-seed", type=int, default=None,
                   help="int8: seed of the calibration images' draw (default: 0; evaluate: the model's)")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="torch.compile the encoder: auto (large CPU extractions, when a C++ compiler is found), on, off")
    p.add_argument("--backend", choices=["auto", "torch", "openvino"], default="auto",
                   help="engine running the encoder: auto (OpenVINO for fp32 CPU extractions of >= 1024 images when "
                        "installed, else PyTorch), torch, openvino (fp32, CPU)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda[:i]'")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable image instead of skipping it (also refuses cached features "
                        "that skipped images)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def check_data_options(args) -> None:
    """Every data/extraction option, before anything is opened or computed."""
    at_least("--batch-size", args.batch_size, 1)
    at_least("--shard-size", args.shard_size, 1)
    at_least("--workers", args.workers, 0)
    at_least("--max-per-class", getattr(args, "max_per_class", None), 1)
    at_least("--calibration-images", getattr(args, "calibration_images", None), 1)
    at_least("--calibration-seed", getattr(args, "calibration_seed", None), 0)
    calibrated = getattr(args, "calibration_images", None) is not None or getattr(args, "calibration_seed", None) is not None
    evaluate_default = getattr(args, "command", None) == "evaluate" and getattr(args, "precision", None) is None
    if calibrated and getattr(args, "precision", None) != "int8" and not evaluate_default:  # evaluate: the model's
        raise SpikebridgeError("--calibration-images / --calibration-seed apply to --precision int8")
    if getattr(args, "precision", None) == "int8" and getattr(args, "backend", "auto") == "torch":
        raise SpikebridgeError("--precision int8 runs a model quantised by NNCF on OpenVINO: use --backend auto or openvino, not torch")


def open_inputs(args) -> tuple:
    """The data set splits and the encoder (cheap next to extraction: checks can follow)."""
    from ..data import open_dataset

    splits = open_dataset(args.dataset, getattr(args, "max_per_class", None))
    return splits, encoder_from_options(args, args.encoder, args.cut)


def extract_splits(args, datasets, encoder) -> list:
    from ..features import DEFAULT_CACHE, extract_distributed

    cache = args.cache_dir or DEFAULT_CACHE
    return [extract_distributed(ds, encoder, cache, batch_size=args.batch_size, shard_size=args.shard_size,
                                workers=args.workers, strict=args.strict, progress=not args.no_progress)
            for ds in datasets]


def load_split_features(args) -> tuple:
    """Open the data set, create the encoder, and extract (or load) train and val features."""
    check_data_options(args)
    splits, encoder = open_inputs(args)
    train, val = extract_splits(args, (splits.train, splits.val), encoder)  # an int8 encoder calibrates on train first
    return splits, encoder, train, val


def encoder_from_options(args, name: str, cut: int | None, precision: str | None = None, calibration: dict | None = None):
    from ..distributed import local_device
    from ..encoders import create_encoder

    compile_ = {"auto": "auto", "on": True, "off": False}[getattr(args, "compile", "auto")]
    precision = getattr(args, "precision", None) or precision or "fp32"
    calibration = calibration or {}  # evaluate: the calibration the model was trained with, unless given
    images = getattr(args, "calibration_images", None)
    seed = getattr(args, "calibration_seed", None)
    if precision == "int8":
        images = images if images is not None else calibration.get("images_requested")
        seed = seed if seed is not None else calibration.get("seed")
    return create_encoder(name, weights=args.weights, cut=cut, device=local_device(args.device),
                          precision=precision, compile=compile_, backend=getattr(args, "backend", "auto"),
                          calibration_images=images, calibration_seed=seed)


def check_classes(spec: str, splits) -> None:
    """A classifier needs two classes (one would train, then fail in the baseline or score 100 %)."""
    if len(splits.classes) < 2:
        raise SpikebridgeError(f"data set {spec} has {len(splits.classes)} class ({', '.join(splits.classes)}); "
                               "training a classifier needs at least 2")
