"""Helpers shared by the command lines (:mod:`.cli`, :mod:`.energy_cli`): the checks of a
trained model's metadata against the data set and encoder options. Imports no torch."""

from __future__ import annotations

from pathlib import Path

from .errors import SpikebridgeError


def check_model_classes(model: Path, meta: dict, spec: str, classes: list[str]) -> None:
    """The model (or checkpoint) was trained on the data set's classes: the class names it
    records, and in any case their number (a checkpoint of an API run records no names)."""
    recorded = meta.get("classes")
    if recorded and recorded != classes or meta.get("n_classes", len(classes)) != len(classes):
        have = f"e.g. {recorded[:3]}" if recorded else "names not recorded"
        raise SpikebridgeError(f"{model} was trained on other classes than {spec} ({meta.get('n_classes')} classes, "
                               f"{have}; the data set has {len(classes)}, e.g. {classes[:3]})")


def encoder_of_model(args, meta: dict) -> tuple[str, int | None]:
    """Encoder name and cut from the model's metadata; flags that contradict it are refused."""
    trained_on = meta.get("encoder") or {}
    name = args.encoder or trained_on.get("encoder") or "efficientnet_lite0"
    cut = args.cut if args.cut is not None else trained_on.get("cut")
    if trained_on and (name != trained_on.get("encoder") or cut != trained_on.get("cut")):
        def where(n, c):
            return f"{n} ({'full network' if c is None else f'cut {c}'})"

        raise SpikebridgeError(f"{args.model} was trained on features of {where(trained_on.get('encoder'), trained_on.get('cut'))}, "
                               f"not {where(name, cut)}; leave out --encoder/--cut to use the model's")
    return name, cut
