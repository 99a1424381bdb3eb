"""Helpers shared by the commands of `cli`: option checks, the checks of a trained
model's metadata against the data set and encoder options, numbered run folders, and the
summary table and spike raster of a report. Imports no torch."""

from __future__ import annotations

from pathlib import Path

from ..errors import SpikebridgeError


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


def at_least(option: str, value, minimum: int, why: str = "") -> None:
    if value is not None and value < minimum:
        raise SpikebridgeError(f"{option} must be >= {minimum} (got {value}){why}")


def checked(check, option: str, value, *limits) -> None:
    """``check(option, value, *limits)`` of `checks` unless ``value`` is None."""
    if value is not None:
        check(option, value, *limits)


def dataset_label(spec: str) -> str:
    return spec.split(":", 1)[0] if spec.startswith("imagenet64:") else Path(spec).name or spec


def raster(learner, val_fs, steps, classes=None, val_ds=None):
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


def print_table(rows) -> None:
    width = max(len(k) for k, _ in rows)
    print("-" * (width + 20))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("-" * (width + 20))


def new_numbered_dir(base: Path) -> Path:
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
