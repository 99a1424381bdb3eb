"""Command-line interface: ``spikebridge <command> --help`` explains every option."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from . import checks
from .cli_common import check_model_classes, encoder_of_model
from .errors import SpikebridgeError

#: tune seeds scikit-learn's folds and Optuna's sampler, which take seeds below 2**32
TUNE_MAX_SEED = 2**32 - 1


def _add_data_options(p: argparse.ArgumentParser, evaluate: bool = False) -> None:
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


def _at_least(option: str, value, minimum: int, why: str = "") -> None:
    if value is not None and value < minimum:
        raise SpikebridgeError(f"{option} must be >= {minimum} (got {value}){why}")


def _check_data_options(args) -> None:
    """Every data/extraction option, before anything is opened or computed."""
    _at_least("--batch-size", args.batch_size, 1)
    _at_least("--shard-size", args.shard_size, 1)
    _at_least("--workers", args.workers, 0)
    _at_least("--max-per-class", getattr(args, "max_per_class", None), 1)
    _at_least("--calibration-images", getattr(args, "calibration_images", None), 1)
    _at_least("--calibration-seed", getattr(args, "calibration_seed", None), 0)
    calibrated = getattr(args, "calibration_images", None) is not None or getattr(args, "calibration_seed", None) is not None
    evaluate_default = getattr(args, "command", None) == "evaluate" and getattr(args, "precision", None) is None
    if calibrated and getattr(args, "precision", None) != "int8" and not evaluate_default:  # evaluate: the model's
        raise SpikebridgeError("--calibration-images / --calibration-seed apply to --precision int8")
    if getattr(args, "precision", None) == "int8" and getattr(args, "backend", "auto") == "torch":
        raise SpikebridgeError("--precision int8 runs a model quantised by NNCF on OpenVINO: use --backend auto or openvino, not torch")


def _open_inputs(args) -> tuple:
    """The data set splits and the encoder (cheap next to extraction: checks can follow)."""
    from .data import open_dataset

    splits = open_dataset(args.dataset, getattr(args, "max_per_class", None))
    return splits, _create_encoder(args, args.encoder, args.cut)


def _extract(args, datasets, encoder) -> list:
    from .features import DEFAULT_CACHE, extract_distributed

    cache = args.cache_dir or DEFAULT_CACHE
    return [extract_distributed(ds, encoder, cache, batch_size=args.batch_size, shard_size=args.shard_size,
                                workers=args.workers, strict=args.strict, progress=not args.no_progress)
            for ds in datasets]


def load_split_features(args) -> tuple:
    """Open the data set, create the encoder, and extract (or load) train and val features."""
    _check_data_options(args)
    splits, encoder = _open_inputs(args)
    train, val = _extract(args, (splits.train, splits.val), encoder)  # an int8 encoder calibrates on train first
    return splits, encoder, train, val


def cmd_extract(args) -> int:
    from .distributed import rank_and_world

    t0 = time.perf_counter()
    _, encoder, train, val = load_split_features(args)
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


def _add_train_options(p: argparse.ArgumentParser) -> None:
    from .learner import list_rules

    p.add_argument("--rule", default="colanet", choices=list_rules(),
                   help="local learning rule (default: colanet)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training features (default: the --config file's, else CoLaNET adapts it to "
                        "the training-set size, clip(ceil(60000 / n), 10, 30); the other rules: 4)")
    p.add_argument("--single-pass", action="store_true",
                   help="online learning: every training example is seen once, in a stream (same as --epochs 1)")
    p.add_argument("--steps", type=int, default=None, help="time steps T per example (default: the rule's, 32, or the --config file's)")
    p.add_argument("--train-batch", type=int, default=None,
                   help="examples per plasticity update (default: 16, or the --config file's; 1 = exact online rule)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of shuffling, coders and initial weights (default: 0, or the --config file's)")
    p.add_argument("--microcolumns", type=int, default=None,
                   help="CoLaNET only: prototypes per class (default: from the number of training examples per class)")
    p.add_argument("--ensemble", type=int, default=None, help="CoLaNET only: K independently seeded members (default: 1)")
    p.add_argument("--learn-mode", default=None, choices=["continuous", "spiking"],
                   help="CoLaNET only: plasticity from the continuous approximation (default, fast) or the spiking simulation")
    p.add_argument("--config", type=Path, default=None,
                   help="configuration JSON of the rule: {\"<rule>\": {...}, \"train\": {\"epochs\", \"train_batch\"}} "
                        "(e.g. written by 'spikebridge tune') or the rule's settings alone")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="where checkpoints, run.json, report.md and figures go (default: a new runs/<data>-<rule>-<n>); "
                        "a folder that holds a run is refused unless --resume or --overwrite")
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoint.safetensors")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --run-dir (its checkpoint, model and report)")
    p.add_argument("--no-baseline", action="store_true", help="skip the reference: logistic regression with C chosen by 3-fold CV on train")
    p.add_argument("--continual", default=None, choices=CONTINUAL_PROTOCOLS,
                   help="learn on line with partial_fit / add_classes instead of epochs: 'streaming' (every example "
                        "once, shuffled), 'class-incremental' (--tasks groups of classes, one after the other), "
                        "'few-shot' (a base session, then sessions of --ways new classes x --shots examples); "
                        "--seed also orders the classes and the stream")
    p.add_argument("--tasks", type=int, default=None, help="--continual class-incremental: groups of classes (default: 5)")
    p.add_argument("--ways", type=int, default=None, help="--continual few-shot: new classes per session (default: 3)")
    p.add_argument("--shots", type=int, default=None, help="--continual few-shot: examples per new class (default: 5)")
    p.add_argument("--base-fraction", type=float, default=None,
                   help="--continual few-shot: fraction of the classes in the base session (default: 0.6)")


#: protocols of ``train --continual`` (spikebridge.continual)
CONTINUAL_PROTOCOLS = ("streaming", "class-incremental", "few-shot")
CONTINUAL_FLAGS = {"tasks": ("class-incremental", 5), "ways": ("few-shot", 3), "shots": ("few-shot", 5),
                   "base_fraction": ("few-shot", 0.6)}


#: training flags that set a rule's setting of the same name (refused for rules without it)
RULE_FLAGS = ("microcolumns", "ensemble", "learn_mode", "steps", "seed")


def _rule_config(args) -> tuple:
    """``(config, options)`` of ``--rule`` from --config (if any) and flags; also fills epochs /
    train batch / steps. Checks every training option (one line naming it and its value) and
    refuses flags the rule has no setting for, before any work."""
    import dataclasses
    import json

    from .learner import list_rules, rule_class, rule_settings

    _check_train_flags(args)
    cls, accepted = rule_class(args.rule), rule_settings(args.rule)
    for name in RULE_FLAGS:
        if getattr(args, name) is not None and name not in accepted:
            owners = [r for r in list_rules() if name in rule_settings(r)]
            raise SpikebridgeError(f"--{name.replace('_', '-')} applies to --rule {' / '.join(owners)} only, "
                                   f"not to {args.rule}; leave it out")
    config, schedule = cls.config_class(), {}
    if args.config is not None:
        try:
            values = json.loads(args.config.read_text())
            others = [r for r in list_rules() if r != args.rule and r in values]
            if others and args.rule not in values:
                raise ValueError(f"it holds settings of --rule {others[0]}, not {args.rule}")
            config = cls.config_class(**values.get(args.rule, values))
            schedule = values.get("train", {}) if args.rule in values else {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise SpikebridgeError(f"bad configuration file {args.config}: {exc}".splitlines()[0]) from exc
        for name in ("epochs", "train_batch"):  # the settings were checked by the config type
            _checked(checks.optional_integer, f"train.{name} in {args.config}", schedule.get(name), 1)
    from .train import DEFAULT_TRAIN_BATCH

    if args.single_pass:
        args.epochs = 1
    args.epochs = args.epochs if args.epochs is not None else schedule.get("epochs")  # None: train() decides
    args.train_batch = args.train_batch if args.train_batch is not None else schedule.get("train_batch", DEFAULT_TRAIN_BATCH)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    given = {name: getattr(args, name) for name in RULE_FLAGS if getattr(args, name) is not None}
    config = dataclasses.replace(config, **{k: v for k, v in given.items() if k in fields})
    args.steps, args.seed = config.steps, config.seed
    return config, {k: v for k, v in given.items() if k not in fields}


def _checked(check, option: str, value, *limits) -> None:
    """``check(option, value, *limits)`` of :mod:`spikebridge.checks` unless ``value`` is None."""
    if value is not None:
        check(option, value, *limits)


def _check_continual_flags(args) -> None:
    """--continual and its options: each option belongs to one protocol; epochs, resume,
    spiking learn mode and rules that cannot add classes do not combine with it."""
    protocol = getattr(args, "continual", None)
    for name, (owner, default) in CONTINUAL_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        if getattr(args, name, None) is not None and protocol != owner:
            raise SpikebridgeError(f"{flag} applies to --continual {owner} only; leave it out")
        if protocol == owner and getattr(args, name) is None:
            setattr(args, name, default)
    if protocol is None:
        return
    for flag, given in (("--epochs", args.epochs is not None), ("--single-pass", args.single_pass),
                        ("--resume", args.resume), ("--learn-mode spiking", args.learn_mode == "spiking")):
        if given:
            raise SpikebridgeError(f"--continual learns each example once with the continuous rule; {flag} does not apply")
    if protocol != "streaming" and args.rule != "colanet":
        raise SpikebridgeError(f"--continual {protocol} needs a rule that adds classes (colanet), not {args.rule}")
    _at_least("--tasks", getattr(args, "tasks", None), 1)
    _at_least("--ways", getattr(args, "ways", None), 1)
    _at_least("--shots", getattr(args, "shots", None), 1)
    if args.base_fraction is not None:
        _checked(lambda n, v: checks.number(n, v, maximum=1.0, above=0.0), "--base-fraction", args.base_fraction)


def _check_train_flags(args) -> None:
    if hasattr(args, "continual"):
        _check_continual_flags(args)
    _at_least("--microcolumns", args.microcolumns, 1)
    _at_least("--ensemble", args.ensemble, 1)
    _at_least("--epochs", args.epochs, 1, ": a model trained for 0 epochs is untrained")
    _checked(checks.steps, "--steps", args.steps)
    _at_least("--train-batch", args.train_batch, 1)
    _checked(checks.seed, "--seed", args.seed)


def _check_options(args) -> None:
    """Checks of option values alone (no imports of torch), run before any command starts."""
    if hasattr(args, "batch_size"):
        _check_data_options(args)
    if hasattr(args, "microcolumns"):
        _check_train_flags(args)
    if args.command == "evaluate":
        _checked(checks.steps, "--steps", args.steps)
        _evaluate_out(args)
    if args.command == "tune":
        _at_least("--trials", args.trials, 1)
        _at_least("--folds", args.folds, 2)
        checks.number("--timeout", args.timeout, above=0.0)
        checks.seed("--seed", args.seed, TUNE_MAX_SEED)


def _dataset_label(spec: str) -> str:
    return spec.split(":", 1)[0] if spec.startswith("imagenet64:") else Path(spec).name or spec


def _plain(obj):
    """JSON round trip: tuples become lists, as in a checkpoint's metadata."""
    import json

    return json.loads(json.dumps(obj))


def _check_resume(learner, run_dir: Path) -> None:
    """Refuse --resume from a checkpoint of another rule or other settings (before extraction).
    Settings left to be chosen from the data (CoLaNET's ``microcolumns=None``) match any value."""
    from .io import load_tensors

    ckpt = run_dir / "checkpoint.safetensors"
    if not ckpt.is_file():
        warnings.warn(f"--resume: no checkpoint in {run_dir}; training from the start", stacklevel=2)
        return
    _, have = load_tensors(ckpt)
    want = {k: v for k, v in _plain(learner.metadata()).items() if k != "normaliser"}  # settings, not fitted state
    requested = getattr(learner, "requested", None)  # the config as asked for, before prepare() resolves it
    if requested is not None:
        from dataclasses import asdict

        adaptive = [k for k, v in asdict(requested).items() if v is None]
        want["config"] = {k: v for k, v in want["config"].items() if k not in adaptive}
    if have.get("rule") != want.get("rule"):
        raise SpikebridgeError(f"--resume: {ckpt} is a {have.get('rule')!r} checkpoint, not {want.get('rule')!r}; "
                               f"pass --rule {have.get('rule')} or another --run-dir")
    diffs = []
    for key, value in want.items():
        if isinstance(value, dict):
            diffs += [f"{k} {have.get(key, {}).get(k)!r} (now {v!r})" for k, v in value.items()
                      if have.get(key, {}).get(k) != v]
        elif have.get(key) != value:
            diffs.append(f"{key} {have.get(key)!r} (now {value!r})")
    if diffs:
        raise SpikebridgeError(f"--resume: {ckpt} was trained with other settings: {', '.join(diffs)}; "
                               "resume with the checkpoint's settings or use another --run-dir")


#: files of a training run that --overwrite removes before the new run starts
RUN_FILES = ("checkpoint.safetensors", "model.safetensors", "run.json", "report.md")
RUN_LOCK = ".train.lock"


def _check_run_dir(args) -> None:
    """--run-dir that already holds a run is refused unless --resume or --overwrite. The lock
    file alone is no run: a run in progress is refused by its lock (:func:`_lock_run_dir`), and
    one left by a killed run is free."""
    if args.resume and args.overwrite:
        raise SpikebridgeError("--resume continues the run in --run-dir and --overwrite replaces it; pass one")
    if args.resume and args.run_dir is None:
        raise SpikebridgeError("--resume needs --run-dir (by default every run gets a new folder)")
    out = args.run_dir
    if out is None or args.resume or args.overwrite or not out.exists():
        return
    if not out.is_dir():
        raise SpikebridgeError(f"--run-dir {out} is a file, not a folder")
    if any(p.name != RUN_LOCK for p in out.iterdir()):
        raise SpikebridgeError(f"--run-dir {out} already holds files (a run is never replaced silently); "
                               "pass --resume to continue it, --overwrite to replace it, or choose another folder")


def _lock_run_dir(args, default: Path):
    """The run folder, created and locked for this process: ``--run-dir`` (checked again under
    the lock) or a new numbered ``default-<n>``. Returns ``(folder, lock)``."""
    from .features import ShardLock

    run_dir = args.run_dir or _new_numbered_dir(default)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpikebridgeError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}") from exc
    lock = ShardLock(run_dir / RUN_LOCK)
    try:
        locked = lock.acquire(block=False)
    except OSError as exc:
        raise SpikebridgeError(f"cannot write in the run folder {run_dir}: {exc.strerror or exc}") from exc
    if not locked:
        raise SpikebridgeError(f"{run_dir} is in use by another 'spikebridge train' (it holds {run_dir / RUN_LOCK}); "
                               "wait for it to finish or choose another --run-dir")
    try:
        _check_run_dir(args)  # again under the lock: a run may have finished in the folder meanwhile
        if args.overwrite:
            for name in RUN_FILES:
                (run_dir / name).unlink(missing_ok=True)
    except BaseException:
        lock.release()
        raise
    return run_dir, lock


def _check_classes(spec: str, splits) -> None:
    """A classifier needs two classes (one would train, then fail in the baseline or score 100 %)."""
    if len(splits.classes) < 2:
        raise SpikebridgeError(f"data set {spec} has {len(splits.classes)} class ({', '.join(splits.classes)}); "
                               "training a classifier needs at least 2")


def cmd_train(args) -> int:
    import torch

    from .distributed import rank_and_world

    config, options = _rule_config(args)  # every option is checked before any long work
    _check_data_options(args)
    _check_run_dir(args)
    torch.manual_seed(args.seed)
    splits, encoder = _open_inputs(args)
    _check_classes(args.dataset, splits)
    rank, world = rank_and_world()
    lock = None
    if rank == 0:
        default = "demo" if args.command == "demo" else f"{_dataset_label(args.dataset)}-{args.rule}"
        run_dir, lock = _lock_run_dir(args, Path("runs") / default)
    else:  # other ranks write nothing: they read the checkpoint of --resume only
        run_dir = args.run_dir
    try:
        return _train_in(args, run_dir, config, options, splits, encoder)
    finally:
        if lock is not None:
            lock.release()


def _train_in(args, run_dir: Path | None, config, options, splits, encoder) -> int:
    from .distributed import rank_and_world
    from .errors import require_finite
    from .learner import create_learner
    from .baselines import tuned_logistic
    from .report import evaluate, summary_rows, write_run
    from .train import train

    if getattr(args, "continual", None):
        return _train_continual(args, run_dir, config, options, splits, encoder)
    learner = create_learner(args.rule, encoder.feature_dim, len(splits.classes), config, **options)
    if args.resume:
        _check_resume(learner, run_dir)
    train_fs, val_fs = _extract(args, (splits.train, splits.val), encoder)
    described = {"classes": splits.classes, "encoder": encoder.identity()}
    learner, history = train(learner, train_fs.features, train_fs.labels, epochs=args.epochs,
                             batch_size=args.train_batch, run_dir=run_dir, resume=args.resume,
                             progress=not args.no_progress, meta=described)
    rank, world = rank_and_world()
    if rank > 0:  # every rank holds the same weights; rank 0 saves, evaluates and reports
        return 0
    from .io import save_tensors

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
    write_run(run_dir, record, _raster(learner, val_fs, args.steps, splits.classes, splits.val))
    _print_table(summary_rows(record))
    print(f"run directory: {run_dir} (run.json, report.md, figures, model.safetensors)")
    return 0


def _train_continual(args, run_dir: Path, config, options, splits, encoder) -> int:
    """``train --continual``: one protocol of :mod:`spikebridge.continual` through
    ``SpikingClassifier.partial_fit`` / ``add_classes``, then the usual run folder."""
    import dataclasses

    import numpy as np

    from . import continual
    from .distributed import rank_and_world
    from .errors import require_finite
    from .estimator import SpikingClassifier
    from .io import save_tensors
    from .report import evaluate, summary_rows, write_run

    if rank_and_world()[1] > 1:
        raise SpikebridgeError("--continual runs in one process (a stream has one order); leave out torchrun")
    train_fs, val_fs = _extract(args, (splits.train, splits.val), encoder)
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
    write_run(run_dir, record, _raster(learner, val_fs, args.steps, splits.classes, splits.val))
    _print_table(summary_rows(record))
    print(f"run directory: {run_dir} (run.json, report.md, figures, model.safetensors)")
    return 0


def _raster(learner, val_fs, steps, classes=None, val_ds=None):
    """Spikes of the first validation example (CoLaNET only): all its input spikes, the
    plastic neurons' spikes (ensemble member 0), and its true and predicted class."""
    model = getattr(learner, "model", None)
    if model is None or len(val_fs) == 0:
        return None
    spikes = model.spikes_for(val_fs.features[:1], steps)
    rec = model.simulate(spikes, record_raster=True)
    row = int(val_fs.index[0]) if getattr(val_fs, "index", None) is not None else 0
    return {"inputs": spikes[:, 0, :].numpy(), "outputs": rec.raster.numpy(), "label": int(val_fs.labels[0]),
            "prediction": int(model.column_scores(rec).argmax(1)[0]), "classes": list(classes or []),
            "source": val_ds.samples[row][0] if val_ds is not None else f"val row {row}",
            "microcolumns": model.config.microcolumns, "active": model.active[0].numpy()}


def _print_table(rows) -> None:
    width = max(len(k) for k, _ in rows)
    print("-" * (width + 20))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("-" * (width + 20))


def _evaluate_out(args) -> Path | None:
    """--out, refused when it already holds something (unless --overwrite); None: a new folder."""
    out = args.out
    if out is not None and out.exists() and not args.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise SpikebridgeError(f"--out {out} already exists and is not empty (a run directory is never overwritten); "
                               "choose another folder or pass --overwrite")
    return out


def _new_eval_dir(model: Path) -> Path:
    """``runs/<model's folder>-eval-<n>``, the first n not taken (created, so two runs never share it)."""
    return _new_numbered_dir(Path("runs") / f"{Path(model).resolve().parent.name}-eval")


def _new_numbered_dir(base: Path) -> Path:
    """``<base>-<n>``, the first n not taken (created, so two runs never share it)."""
    n = 1
    while True:
        candidate = Path(f"{base}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            n += 1
        except OSError as exc:  # a read-only working folder, 'runs' being a file, a full disk
            raise SpikebridgeError(f"cannot create the run folder {candidate}: {exc.strerror or exc}") from exc


def cmd_evaluate(args) -> int:
    from .data import open_dataset
    from .errors import require_finite
    from .learner import load_learner
    from .report import evaluate, summary_rows, write_run

    _check_data_options(args)
    _checked(checks.steps, "--steps", args.steps)
    out = _evaluate_out(args)
    learner, meta = load_learner(args.model)
    name, cut = encoder_of_model(args, meta)
    splits = open_dataset(args.dataset)
    check_model_classes(args.model, meta, args.dataset, splits.classes)
    trained_on = meta.get("encoder") or {}
    encoder = _create_encoder(args, name, cut, trained_on.get("precision"), trained_on.get("calibration"))
    if trained_on.get("weights_sha256") and trained_on["weights_sha256"] != encoder.weight_checksum:
        raise SpikebridgeError(f"{args.model} was trained with other {name} weights (sha256 "
                               f"{trained_on['weights_sha256'][:12]}..., these are {encoder.weight_checksum[:12]}...); "
                               "pass the --weights file it was trained with")
    n_inputs = meta.get("n_inputs")
    if n_inputs is not None and n_inputs != encoder.feature_dim:
        raise SpikebridgeError(f"{args.model} expects {n_inputs} features; {name} (cut {cut}) gives {encoder.feature_dim}")
    steps = args.steps or meta["config"]["steps"]
    if encoder.precision == "int8":
        from .features import DEFAULT_CACHE

        calibration = encoder.calibrate(splits.train, args.cache_dir or DEFAULT_CACHE, progress=not args.no_progress)
        was = trained_on.get("calibration")
        if was and was.get("manifest_sha256") != calibration["manifest_sha256"]:
            raise SpikebridgeError(f"{args.model} was trained on int8 features calibrated on other images ({was.get('images')} "
                                   f"of {was.get('dataset')}/train, seed {was.get('seed')}); evaluate with its data set "
                                   "and the same --calibration-images / --calibration-seed")
    (val_fs,) = _extract(args, (splits.val,), encoder)
    require_finite(val_fs.features, "val")
    metrics = evaluate(learner, val_fs.features, val_fs.labels, splits.classes, steps)
    record = {"command": "evaluate", "rule": meta.get("rule"), "dataset": args.dataset, "model": str(args.model),
              "metrics": metrics, "n_val": len(val_fs), "skipped_images": val_fs.skipped}
    out = out or _new_eval_dir(args.model)
    write_run(out, record, _raster(learner, val_fs, steps, splits.classes, splits.val))
    _print_table(summary_rows(record))
    print(f"report: {out}/report.md")
    return 0


def _create_encoder(args, name: str, cut: int | None, precision: str | None = None, calibration: dict | None = None):
    from .distributed import local_device
    from .encoders import create_encoder

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
    from .tune import tune

    _check_data_options(args)
    splits, encoder = _open_inputs(args)
    _check_classes(args.dataset, splits)
    _check_folds(args.folds, splits.train.labels, splits.classes, f"{args.dataset} train")
    train_fs, _ = _extract(args, (splits.train, splits.val), encoder)
    _check_folds(args.folds, train_fs.labels, splits.classes, "the train features (unreadable images were skipped)")
    result = tune(train_fs.features, train_fs.labels, args.out, trials=args.trials, timeout=args.timeout,
                  seed=args.seed, folds=args.folds, progress=not args.no_progress)
    v = result["validation"]
    _print_table([("trials", str(result["study"]["trials"])),
                  (f"default config (continuous, {result['validation']['folds']}-fold CV of train)", f"{100 * v['default_continuous_top1']:.2f} %"),
                  ("best config (continuous)", f"{100 * v['continuous_top1']:.2f} %"),
                  ("best config (spiking, T=%d)" % result["colanet"]["steps"], f"{100 * v['spiking_top1']:.2f} %")])
    print(f"configuration: {Path(args.out) / 'best.json'} (use: spikebridge train --config {Path(args.out) / 'best.json'})")
    return 0


def cmd_demo(args) -> int:
    args.dataset, args.max_per_class = "digits", None
    return cmd_train(args)


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

    p = sub.add_parser("train", help="train a spiking classifier on cached features with a local rule",
                       description="Extract/load features, train with local plasticity (no backprop), "
                                   "checkpoint every epoch, evaluate and write a run directory.")
    _add_data_options(p)
    _add_train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained model on a data set's val split",
                       description="Top-1/top-5, per-class accuracy, confusion matrix, accuracy vs T, spikes and SynOps "
                                   "on the whole val split, with the encoder, weights and cut the model was trained on.")
    p.add_argument("--model", type=Path, required=True, help="model.safetensors written by 'spikebridge train'")
    _add_data_options(p, evaluate=True)
    p.add_argument("--steps", type=int, default=None, help="time steps T (default: the model's)")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: a new runs/<model folder>-eval-<n>; the training run is never touched)")
    p.add_argument("--overwrite", action="store_true", help="allow an --out folder that already holds files")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("tune", help="search CoLaNET hyperparameters with Optuna (resumable)",
                       description="Optuna search on a validation split carved from the training features, "
                                   "continuous approximation per trial, best trial confirmed in the spiking "
                                   "simulation; writes <out>/best.json for 'train --config'.")
    _add_data_options(p)
    p.add_argument("--trials", type=int, default=60, help="total trials in the study (default: 60)")
    p.add_argument("--timeout", type=float, default=600, help="stop starting trials after this many seconds (default: 600)")
    p.add_argument("--seed", type=int, default=0, help="sampler and split seed (default: 0)")
    p.add_argument("--folds", type=int, default=3, help="cross-validation folds of the training features per trial (default: 3)")
    p.add_argument("--out", type=Path, default=Path("runs/tune"), help="study.db and best.json folder (default: runs/tune)")
    p.set_defaults(func=cmd_tune)

    from .energy_cli import add_energy_command
    from .export_cli import add_export_command

    add_export_command(sub)
    add_energy_command(sub)

    p = sub.add_parser("demo", help="the whole pipeline offline on the embedded digits data set",
                       description="Lite0 features of scikit-learn's digits -> CoLaNET trained with local "
                                   "plasticity -> report in a new runs/demo-<n> (offline, a few minutes on 2 CPU cores).")
    _add_data_options(p)
    _add_train_options(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # warnings are shown (none is filtered), one line each; the format is restored on return
    plain_format, warnings.formatwarning = warnings.formatwarning, lambda msg, cat, *a, **k: f"warning: {msg}\n"
    distributed = None
    try:
        _check_options(args)
        from . import distributed

        if distributed.launched_by_torchrun() and args.command not in ("extract", "train"):
            raise SpikebridgeError(f"'{args.command}' does not run under torchrun; only 'extract' and 'train' do")
        distributed.init_from_environment()
        return args.func(args) or 0
    except SpikebridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed work is kept; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = plain_format
        if distributed is not None:
            distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
