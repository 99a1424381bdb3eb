"""The ``spikebridge`` command: its parser (one sub-command per module of `cli`),
the option checks run before any command starts, and `main()`."""

from __future__ import annotations

import argparse
import sys
import warnings

from .. import checks
from ..errors import SpikebridgeError
from .common import at_least, checked
from .energy import add_energy_command
from .evaluate import add_evaluate_command, evaluate_out
from .export import add_export_command
from .extract import add_extract_command
from .inputs import check_data_options
from .train import add_demo_command, add_train_command
from .train_options import check_train_flags
from .tune import TUNE_MAX_SEED, add_tune_command


def check_options(args) -> None:
    """Checks of option values alone (no imports of torch), run before any command starts."""
    if hasattr(args, "batch_size"):
        check_data_options(args)
    if hasattr(args, "microcolumns"):
        check_train_flags(args)
    if args.command == "evaluate":
        checked(checks.steps, "--steps", args.steps)
        evaluate_out(args)
    if args.command == "tune":
        at_least("--trials", args.trials, 1)
        at_least("--folds", args.folds, 2)
        checks.number("--timeout", args.timeout, above=0.0)
        checks.seed("--seed", args.seed, TUNE_MAX_SEED)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikebridge",
        description="Pretrained image encoders + spiking CoLaNET classifiers trained with local plasticity.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_extract_command(sub)
    add_train_command(sub)
    add_evaluate_command(sub)
    add_tune_command(sub)
    add_export_command(sub)
    add_energy_command(sub)
    add_demo_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # warnings are shown (none is filtered), one line each; the format is restored on return
    plain_format, warnings.formatwarning = warnings.formatwarning, lambda msg, cat, *a, **k: f"warning: {msg}\n"
    distributed = None
    try:
        check_options(args)
        from .. import distributed

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
