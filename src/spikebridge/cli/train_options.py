"""The options of ``spikebridge train`` (and ``demo``): the rule, its settings (flags and
``--config``), the schedule and ``--continual``; every value checked before any work."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import checks
from ..errors import SpikebridgeError
from .common import at_least, checked


def add_train_options(p: argparse.ArgumentParser) -> None:
    from ..learner import list_rules

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


def rule_config(args) -> tuple:
    """``(config, options)`` of ``--rule`` from --config (if any) and flags; also fills epochs /
    train batch / steps. Checks every training option (one line naming it and its value) and
    refuses flags the rule has no setting for, before any work."""
    import dataclasses
    import json

    from ..learner import list_rules, rule_class, rule_settings

    check_train_flags(args)
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
            checked(checks.optional_integer, f"train.{name} in {args.config}", schedule.get(name), 1)
    from ..training import DEFAULT_TRAIN_BATCH

    if args.single_pass:
        args.epochs = 1
    args.epochs = args.epochs if args.epochs is not None else schedule.get("epochs")  # None: train() decides
    args.train_batch = args.train_batch if args.train_batch is not None else schedule.get("train_batch", DEFAULT_TRAIN_BATCH)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    given = {name: getattr(args, name) for name in RULE_FLAGS if getattr(args, name) is not None}
    config = dataclasses.replace(config, **{k: v for k, v in given.items() if k in fields})
    args.steps, args.seed = config.steps, config.seed
    return config, {k: v for k, v in given.items() if k not in fields}


def check_continual_flags(args) -> None:
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
    at_least("--tasks", getattr(args, "tasks", None), 1)
    at_least("--ways", getattr(args, "ways", None), 1)
    at_least("--shots", getattr(args, "shots", None), 1)
    if args.base_fraction is not None:
        checked(lambda n, v: checks.number(n, v, maximum=1.0, above=0.0), "--base-fraction", args.base_fraction)


def check_train_flags(args) -> None:
    if hasattr(args, "continual"):
        check_continual_flags(args)
    at_least("--microcolumns", args.microcolumns, 1)
    at_least("--ensemble", args.ensemble, 1)
    at_least("--epochs", args.epochs, 1, ": a model trained for 0 epochs is untrained")
    checked(checks.steps, "--steps", args.steps)
    at_least("--train-batch", args.train_batch, 1)
    checked(checks.seed, "--seed", args.seed)
