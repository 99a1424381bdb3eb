"""``spikebridge train`` and ``spikebridge demo``: features, local-plasticity training (or a
``--continual`` protocol), evaluation and the run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SpikebridgeError
from . import inputs
from .common import dataset_label, print_table, raster
from .inputs import add_data_options, check_classes, check_data_options
from .run_dir import check_resume, check_run_dir, lock_run_dir
from .train_options import CONTINUAL_FLAGS, add_train_options, rule_config


def cmd_train(args) -> int:
    import torch

    from ..distributed import rank_and_world

    config, options = rule_config(args)  # every option is checked before any long work
    check_data_options(args)
    check_run_dir(args)
    torch.manual_seed(args.seed)
    splits, encoder = inputs.open_inputs(args)
    check_classes(args.dataset, splits)
    rank, world = rank_and_world()
    lock = None
    if rank == 0:
        default = "demo" if args.command == "demo" else f"{dataset_label(args.dataset)}-{args.rule}"
        run_dir, lock = lock_run_dir(args, Path("runs") / default)
    else:  # other ranks write nothing: they read the checkpoint of --resume only
        run_dir = args.run_dir
    try:
        return _train_in(args, run_dir, config, options, splits, encoder)
    finally:
        if lock is not None:
            lock.release()


def _train_in(args, run_dir: Path | None, config, options, splits, encoder) -> int:
    from ..distributed import rank_and_world
    from ..errors import require_finite
    from ..learner import create_learner
    from ..baselines import tuned_logistic
    from ..report import evaluate, summary_rows, write_run
    from ..training import train

    if getattr(args, "continual", None):
        return _train_continual(args, run_dir, config, options, splits, encoder)
    learner = create_learner(args.rule, encoder.feature_dim, len(splits.classes), config, **options)
    if args.resume:
        check_resume(learner, run_dir)
    train_fs, val_fs = inputs.extract_splits(args, (splits.train, splits.val), encoder)
    described = {"classes": splits.classes, "encoder": encoder.identity()}
    learner, history = train(learner, train_fs.features, train_fs.labels, epochs=args.epochs,
                             batch_size=args.train_batch, run_dir=run_dir, resume=args.resume,
                             progress=not args.no_progress, meta=described)
    rank, world = rank_and_world()
    if rank > 0:  # every rank holds the same weights; rank 0 saves, evaluates and reports
        return 0
    from ..io import save_tensors

    meta = {**learner.metadata(), **described}
    save_tensors(run_dir / "model.safetensors", learner.tensors(), meta)
    require_finite(val_fs.features, "val")
    metrics = evaluate(learner, val_fs.features, val_fs.labels, splits.classes, args.steps)
    record = {"command": "train", "rule": args.rule, "dataset": args.dataset, "seed": args.seed, "world_size": world,
              "epochs": history["epochs_planned"], "train_batch": args.train_batch,
              "single_pass": history["epochs_planned"] == 1,
              "config": {k: v for k, v in meta.items() if k not in ("classes",)},
              "encoder": {**encoder.identity(), "weight_source": encoder.weight_source},
              "n_train": len(train_fs), "n_val": len(val_fs), "train_seconds": history["train_seconds"],
              "history": history["epochs"], "skipped_images": train_fs.skipped + val_fs.skipped, "metrics": metrics}
    if not args.no_baseline:
        record["baseline"] = tuned_logistic(train_fs.features, train_fs.labels, val_fs.features, val_fs.labels)
    write_run(run_dir, record, raster(learner, val_fs, args.steps, splits.classes, splits.val))
    print_table(summary_rows(record))
    print(f"run directory: {run_dir} (run.json, report.md, figures, model.safetensors)")
    return 0


def _train_continual(args, run_dir: Path, config, options, splits, encoder) -> int:
    """``train --continual``: one protocol of [`continual`][spikebridge.continual] through
    ``SpikingClassifier.partial_fit`` / ``add_classes``, then the usual run folder."""
    import dataclasses

    import numpy as np

    from .. import continual
    from ..distributed import rank_and_world
    from ..errors import require_finite
    from ..estimator import SpikingClassifier
    from ..io import save_tensors
    from ..report import evaluate, summary_rows, write_run

    if rank_and_world()[1] > 1:
        raise SpikebridgeError("--continual runs in one process (a stream has one order); leave out torchrun")
    train_fs, val_fs = inputs.extract_splits(args, (splits.train, splits.val), encoder)
    require_finite(val_fs.features, "val")
    settings = {**dataclasses.asdict(config), **options}
    clf = SpikingClassifier(args.rule, batch_size=args.train_batch, progress=not args.no_progress, **settings)
    x, y, xv, yv = train_fs.features, train_fs.labels, val_fs.features, val_fs.labels
    if args.continual == "streaming":
        result = continual.streaming(clf, x, y, xv, yv, seed=args.seed, batch=args.train_batch)
    elif args.continual == "class-incremental":
        result = continual.class_incremental(clf, x, y, xv, yv, tasks=args.tasks, seed=args.seed, batch=args.train_batch)
    else:
        result = continual.few_shot(clf, x, y, xv, yv, seed=args.seed, base_fraction=args.base_fraction, ways=args.ways,
                                    shots=args.shots, batch=args.train_batch)
    learner = clf.learner_
    model = getattr(learner, "model", None)
    if model is not None and hasattr(model, "reorder_classes"):  # columns in the data set's class order
        model.reorder_classes(np.argsort(clf.classes_))
    seen = np.sort(clf.classes_)
    classes = [splits.classes[int(c)] for c in seen]
    meta = {**learner.metadata(), "classes": classes, "encoder": encoder.identity(), "continual": args.continual}
    save_tensors(run_dir / "model.safetensors", learner.tensors(), meta)
    mask = np.isin(yv, seen)  # few-shot: only the classes the protocol reached
    codes = np.searchsorted(seen, yv[mask])
    metrics = evaluate(learner, xv[mask], codes, classes, args.steps)
    protocol = {k: v for k, v in result.items() if k not in ("per_class",)}
    record = {"command": "train", "rule": args.rule, "dataset": args.dataset, "seed": args.seed, "world_size": 1,
              "continual": {"protocol": args.continual, **{k: getattr(args, k) for k in CONTINUAL_FLAGS
                                                             if getattr(args, k) is not None}, **protocol},
              "train_batch": args.train_batch, "config": {k: v for k, v in meta.items() if k != "classes"},
              "encoder": {**encoder.identity(), "weight_source": encoder.weight_source},
              "n_train": len(train_fs), "n_val": len(val_fs), "examples_learned": result["examples"],
              "train_seconds": result.get("train_seconds", result.get("base_seconds")), "history": [],
              "skipped_images": train_fs.skipped + val_fs.skipped, "metrics": metrics}
    write_run(run_dir, record, raster(learner, val_fs, args.steps, splits.classes, splits.val))
    print_table(summary_rows(record))
    print(f"run directory: {run_dir} (run.json, report.md, figures, model.safetensors)")
    return 0


def cmd_demo(args) -> int:
    args.dataset, args.max_per_class = "digits", None
    return cmd_train(args)


def _add_command(subparsers, name: str, help: str, description: str, func) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help=help, description=description)
    add_data_options(p)
    add_train_options(p)
    p.set_defaults(func=func)
    return p


def add_train_command(subparsers) -> argparse.ArgumentParser:
    """Register ``spikebridge train`` on an ``argparse`` sub-parser collection."""
    return _add_command(subparsers, "train", "train a spiking classifier on cached features with a local rule",
                        "Extract/load features, train with local plasticity (no backprop), "
                        "checkpoint every epoch, evaluate and write a run directory.", cmd_train)


def add_demo_command(subparsers) -> argparse.ArgumentParser:
    """Register ``spikebridge demo`` on an ``argparse`` sub-parser collection."""
    return _add_command(subparsers, "demo", "the whole pipeline offline on the embedded digits data set",
                        "Lite0 features of scikit-learn's digits -> CoLaNET trained with local "
                        "plasticity -> report in a new runs/demo-<n> (offline, a few minutes on 2 CPU cores).", cmd_demo)
