"""``spikebridge evaluate``: a trained model on a data set's val split, with the encoder it was trained on."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import checks
from ..errors import SpikebridgeError
from . import inputs
from .common import check_model_classes, checked, encoder_of_model, new_numbered_dir, print_table, raster
from .inputs import add_data_options, check_data_options, encoder_from_options


def evaluate_out(args) -> Path | None:
    """--out, refused when it already holds something (unless --overwrite); None: a new folder."""
    out = args.out
    if out is not None and out.exists() and not args.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise SpikebridgeError(f"--out {out} already exists and is not empty (a run directory is never overwritten); "
                               "choose another folder or pass --overwrite")
    return out


def _new_eval_dir(model: Path) -> Path:
    """``runs/<model's folder>-eval-<n>``, the first n not taken (created, so two runs never share it)."""
    return new_numbered_dir(Path("runs") / f"{Path(model).resolve().parent.name}-eval")


def cmd_evaluate(args) -> int:
    from ..data import open_dataset
    from ..errors import require_finite
    from ..learner import load_learner
    from ..report import evaluate, summary_rows, write_run

    check_data_options(args)
    checked(checks.steps, "--steps", args.steps)
    out = evaluate_out(args)
    learner, meta = load_learner(args.model)
    name, cut = encoder_of_model(args, meta)
    splits = open_dataset(args.dataset)
    check_model_classes(args.model, meta, args.dataset, splits.classes)
    trained_on = meta.get("encoder") or {}
    encoder = encoder_from_options(args, name, cut, trained_on.get("precision"), trained_on.get("calibration"))
    if trained_on.get("weights_sha256") and trained_on["weights_sha256"] != encoder.weight_checksum:
        raise SpikebridgeError(f"{args.model} was trained with other {name} weights (sha256 "
                               f"{trained_on['weights_sha256'][:12]}..., these are {encoder.weight_checksum[:12]}...); "
                               "pass the --weights file it was trained with")
    n_inputs = meta.get("n_inputs")
    if n_inputs is not None and n_inputs != encoder.feature_dim:
        raise SpikebridgeError(f"{args.model} expects {n_inputs} features; {name} (cut {cut}) gives {encoder.feature_dim}")
    steps = args.steps or meta["config"]["steps"]
    if encoder.precision == "int8":
        from ..features import DEFAULT_CACHE

        calibration = encoder.calibrate(splits.train, args.cache_dir or DEFAULT_CACHE, progress=not args.no_progress)
        was = trained_on.get("calibration")
        if was and was.get("manifest_sha256") != calibration["manifest_sha256"]:
            raise SpikebridgeError(f"{args.model} was trained on int8 features calibrated on other images ({was.get('images')} "
                                   f"of {was.get('dataset')}/train, seed {was.get('seed')}); evaluate with its data set "
                                   "and the same --calibration-images / --calibration-seed")
    (val_fs,) = inputs.extract_splits(args, (splits.val,), encoder)
    require_finite(val_fs.features, "val")
    metrics = evaluate(learner, val_fs.features, val_fs.labels, splits.classes, steps)
    record = {"command": "evaluate", "rule": meta.get("rule"), "dataset": args.dataset, "model": str(args.model),
              "metrics": metrics, "n_val": len(val_fs), "skipped_images": val_fs.skipped}
    out = out or _new_eval_dir(args.model)
    write_run(out, record, raster(learner, val_fs, steps, splits.classes, splits.val))
    print_table(summary_rows(record))
    print(f"report: {out}/report.md")
    return 0


def add_evaluate_command(subparsers) -> argparse.ArgumentParser:
    """Register ``spikebridge evaluate`` on an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("evaluate", help="evaluate a trained model on a data set's val split",
                              description="Top-1/top-5, per-class accuracy, confusion matrix, accuracy vs T, spikes and SynOps "
                                          "on the whole val split, with the encoder, weights and cut the model was trained on.")
    p.add_argument("--model", type=Path, required=True, help="model.safetensors written by 'spikebridge train'")
    add_data_options(p, evaluate=True)
    p.add_argument("--steps", type=int, default=None, help="time steps T (default: the model's)")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: a new runs/<model folder>-eval-<n>; the training run is never touched)")
    p.add_argument("--overwrite", action="store_true", help="allow an --out folder that already holds files")
    p.set_defaults(func=cmd_evaluate)
    return p
