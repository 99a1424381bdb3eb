"""``spikebridge tune``: an Optuna search of CoLaNET hyperparameters on the train features."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SpikebridgeError
from . import inputs
from .common import print_table
from .inputs import add_data_options, check_classes, check_data_options


#: tune seeds scikit-learn's folds and Optuna's sampler, which take seeds below 2**32
TUNE_MAX_SEED = 2**32 - 1


def _check_folds(folds: int, labels, classes: list[str], where: str) -> None:
    """Stratified --folds need at least that many examples of every class."""
    import numpy as np

    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    smallest = int(counts.argmin())
    if folds > counts[smallest]:
        raise SpikebridgeError(f"--folds {folds} needs {folds} training examples of every class; {where} has "
                               f"{int(counts[smallest])} of class {classes[smallest]}"
                               + (f": pass --folds {int(counts[smallest])} or fewer" if counts[smallest] >= 2 else ""))


def cmd_tune(args) -> int:
    from ..tune import tune

    check_data_options(args)
    splits, encoder = inputs.open_inputs(args)
    check_classes(args.dataset, splits)
    _check_folds(args.folds, splits.train.labels, splits.classes, f"{args.dataset} train")
    train_fs, _ = inputs.extract_splits(args, (splits.train, splits.val), encoder)
    _check_folds(args.folds, train_fs.labels, splits.classes, "the train features (unreadable images were skipped)")
    result = tune(train_fs.features, train_fs.labels, args.out, trials=args.trials, timeout=args.timeout,
                  seed=args.seed, folds=args.folds, progress=not args.no_progress)
    v = result["validation"]
    print_table([("trials", str(result["study"]["trials"])),
                  (f"default config (continuous, {result['validation']['folds']}-fold CV of train)", f"{100 * v['default_continuous_top1']:.2f} %"),
                  ("best config (continuous)", f"{100 * v['continuous_top1']:.2f} %"),
                  ("best config (spiking, T=%d)" % result["colanet"]["steps"], f"{100 * v['spiking_top1']:.2f} %")])
    print(f"configuration: {Path(args.out) / 'best.json'} (use: spikebridge train --config {Path(args.out) / 'best.json'})")
    return 0


def add_tune_command(subparsers) -> argparse.ArgumentParser:
    """Register ``spikebridge tune`` on an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("tune", help="search CoLaNET hyperparameters with Optuna (resumable)",
                              description="Optuna search on a validation split carved from the training features, "
                                          "continuous approximation per trial, best trial confirmed in the spiking "
                                          "simulation; writes <out>/best.json for 'train --config'.")
    add_data_options(p)
    p.add_argument("--trials", type=int, default=60, help="total trials in the study (default: 60)")
    p.add_argument("--timeout", type=float, default=600, help="stop starting trials after this many seconds (default: 600)")
    p.add_argument("--seed", type=int, default=0, help="sampler and split seed (default: 0)")
    p.add_argument("--folds", type=int, default=3, help="cross-validation folds of the training features per trial (default: 3)")
    p.add_argument("--out", type=Path, default=Path("runs/tune"), help="study.db and best.json folder (default: runs/tune)")
    p.set_defaults(func=cmd_tune)
    return p
