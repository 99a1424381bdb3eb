"""One export API: [`export()`][spikebridge.deploy.api.export] writes a trained model in any format and [`load()`][spikebridge.deploy.api.load] reads any
file it wrote back; the package offers them as ``spikebridge.export`` and ``spikebridge.load``::

    import spikebridge as sb

    clf = sb.SpikingClassifier(rule="colanet").fit(X, y)
    sb.export(clf, "model.nir", format="nir")      # or the CoLaNETLearner, or the CoLaNET itself
    model = sb.load("model.nir")                   # a CoLaNET; predictions identical

Formats (``format=``; the sidecar ``<file>.json`` is a versioned JSON record) and what
[`load()`][spikebridge.deploy.api.load] returns for each:

* ``nir`` -- NIR graph (HDF5) + [`NIRSidecar`][spikebridge.deploy.nir.NIRSidecar]; loads as a
  [`CoLaNET`][spikebridge.colanet.CoLaNET] (inference, identical predictions);
* ``int8`` -- the fixed-point model (safetensors) + [`Int8Sidecar`][spikebridge.deploy.fixed_point.Int8Sidecar]; loads as an
  [`Int8CoLaNET`][spikebridge.deploy.fixed_point.Int8CoLaNET];
* ``akida`` -- BrainChip Akida ``.fbz`` + [`AkidaSidecar`][spikebridge.deploy.akida.AkidaSidecar] (needs the ``akida`` package);
  loads as an [`AkidaCoLaNET`][spikebridge.deploy.akida.AkidaCoLaNET];
* ``integer`` -- the integer learner's state (safetensors) + [`IntegerRuleSidecar`][spikebridge.deploy.integer_learning.IntegerRuleSidecar];
  loads as an [`IntegerCoLaNET`][spikebridge.deploy.integer_learning.IntegerCoLaNET];
* ``spikebridge`` -- the native safetensors file, no sidecar; loads as a
  `SpikingClassifier` (the model of any rule, ``spikebridge train`` files
  included) or as the CoLaNET that ``CoLaNET.save`` wrote.

``nir``, ``int8`` and ``akida`` take a fitted `SpikingClassifier` of rule
``colanet``, a [`CoLaNETLearner`][spikebridge.colanet.CoLaNETLearner] or a [`CoLaNET`][spikebridge.colanet.CoLaNET]
([`colanet_of()`][spikebridge.deploy.api.colanet_of]), or the model of their own format already converted (an ``Int8CoLaNET``, an
``AkidaCoLaNET``); ``int8`` also takes an ``IntegerCoLaNET`` (its deployed model,
[`to_int8()`][spikebridge.deploy.integer_learning.IntegerCoLaNET.to_int8]). ``integer`` takes an ``IntegerCoLaNET`` only (a float
CoLaNET deploys in integers as ``int8``). Options ([`OPTIONS`][spikebridge.deploy.api.OPTIONS]) go to the format's writer:
[`export_nir()`][spikebridge.deploy.nir.export_nir], [`Int8CoLaNET.quantise`][spikebridge.deploy.fixed_point.Int8CoLaNET.quantise],
[`AkidaCoLaNET.from_colanet`][spikebridge.deploy.akida.AkidaCoLaNET.from_colanet]; ``classes`` defaults to a
classifier's ``classes_``.

[`load()`][spikebridge.deploy.api.load] tells the format from the file: a safetensors file by its metadata (int8 record,
integer learner, a rule's model, ``CoLaNET.save``), any other file by the ``format`` of its
sidecar (NIR, Akida). Every sidecar is a [`VersionedSidecar`][spikebridge.deploy.sidecar.VersionedSidecar] whose format and
version are checked on load; every error of [`load()`][spikebridge.deploy.api.load] is one line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import SpikebridgeError
from .formats import AKIDA_FORMAT, EXPORT_FORMATS, INT8_FORMAT, SIDECAR_FORMAT, sidecar_path

#: keyword options of each format (passed to its writer)
OPTIONS = {"nir": ("target", "convention", "layout", "classes"),
           "int8": ("reset", "dynamics", "headroom"),
           "akida": ("input_bits", "weight_bits", "calibration", "slices", "classes"),
           "integer": (),
           "spikebridge": ()}


def _is_classifier(obj) -> bool:
    from ..estimator import SpikingClassifier

    return isinstance(obj, SpikingClassifier)


def _describe(obj) -> str:
    rule = obj.rule if _is_classifier(obj) else getattr(obj, "name", None)
    name = type(obj).__name__
    return f"{'an' if name[0] in 'AEIOU' else 'a'} {name}" + (f" (rule {rule!r})" if isinstance(rule, str) else "")


def _fitted(clf) -> None:
    if "learner_" not in vars(clf):
        raise SpikebridgeError("the SpikingClassifier is not fitted; call fit() before exporting it")


def colanet_of(obj):
    """The trained [`CoLaNET`][spikebridge.colanet.CoLaNET] of a fitted ``SpikingClassifier`` (rule
    ``colanet``), of a ``CoLaNETLearner``, or ``obj`` itself; else a one-line error."""
    from ..colanet import CoLaNET

    inner = obj
    if _is_classifier(obj):
        _fitted(obj)
        inner = obj.learner_
    model = inner if isinstance(inner, CoLaNET) else getattr(inner, "model", None)
    if not isinstance(model, CoLaNET):
        raise SpikebridgeError(f"export needs a trained CoLaNET (a SpikingClassifier or learner of rule 'colanet', "
                               f"or the CoLaNET itself), not {_describe(obj)}")
    if model.normaliser is None or not bool(model.active.any()):
        raise SpikebridgeError("the CoLaNET has no recruited neurons or no rate normaliser (train it first)")
    return model


def _classes(obj, classes):
    if classes is None and _is_classifier(obj):
        return obj.classes_.tolist()
    return classes


def _as_is(obj, options: dict, fmt: str):
    """``obj`` saved unchanged: options would be ignored, so they are refused."""
    if options:
        raise SpikebridgeError(f"{_describe(obj)} is already in format {fmt!r}; leave out {', '.join(sorted(options))}")
    return obj


# --------------------------------------------------------------------------- writers: (obj, path, **options) -> summary
def _nir(obj, path: Path, **options) -> dict:
    from .nir import export_nir

    return export_nir(colanet_of(obj), path, **{**options, "classes": _classes(obj, options.get("classes"))})


def _int8(obj, path: Path, **options) -> dict:
    from .fixed_point import Int8CoLaNET
    from .integer_learning import IntegerCoLaNET

    if isinstance(obj, Int8CoLaNET):
        q = _as_is(obj, options, "int8")
    elif isinstance(obj, IntegerCoLaNET):
        if set(options) - {"reset"}:
            raise SpikebridgeError(f"the int8 model of an IntegerCoLaNET takes only the option reset, not "
                                   f"{', '.join(sorted(set(options) - {'reset'}))}")
        q = obj.to_int8(**options)
    else:
        q = Int8CoLaNET.quantise(colanet_of(obj), **options)
    return q.save(path)


def _akida(obj, path: Path, **options) -> dict:
    from .akida import AkidaCoLaNET

    if isinstance(obj, AkidaCoLaNET):
        return _as_is(obj, options, "akida").save(path)
    options["classes"] = _classes(obj, options.get("classes"))
    return AkidaCoLaNET.from_colanet(colanet_of(obj), **options).save(path)


def _integer(obj, path: Path) -> dict:
    from .integer_learning import IntegerCoLaNET

    if not isinstance(obj, IntegerCoLaNET):
        raise SpikebridgeError(f"format 'integer' saves the integer learner (an IntegerCoLaNET, from "
                               f"spikebridge.deploy.integer_learner), not {_describe(obj)}; a CoLaNET trained in "
                               f"float deploys in integers as format 'int8'")
    obj.save(path)
    return {}


def _native(obj, path: Path) -> dict:
    from ..colanet import CoLaNET
    from ..io import save_tensors
    from ..learner import list_rules

    if _is_classifier(obj):
        _fitted(obj)
        obj.save(path)
    elif isinstance(obj, CoLaNET):
        obj.save(path)
    elif getattr(obj, "name", None) in list_rules() and hasattr(obj, "tensors"):  # a rule's learner
        save_tensors(path, obj.tensors(), obj.metadata())  # as 'spikebridge train' writes it
    else:
        raise SpikebridgeError(f"format 'spikebridge' saves a SpikingClassifier, a learner of a registered rule or "
                               f"a CoLaNET, not {_describe(obj)}")
    return {}


_WRITERS = {"nir": _nir, "int8": _int8, "akida": _akida, "integer": _integer, "spikebridge": _native}


def export(model, path, format: str = "nir", **options) -> dict:
    """Write ``model`` for neuromorphic hardware or a simulator.

    Parameters
    ----------
    model : SpikingClassifier, Learner or CoLaNET
        A fitted classifier, a learner or a network (the module docstring says what each
        format takes).
    path : str or Path
        The file to write; its versioned JSON sidecar goes to ``<path>.json`` where the format
        has one.
    format : str
        One of `EXPORT_FORMATS`: ``"nir"``, ``"int8"``, ``"akida"``, ``"integer"``, ``"spikebridge"``.
    **options
        Those of the format ([`OPTIONS`][spikebridge.deploy.api.OPTIONS]); others are refused.

    Returns
    -------
    dict
        ``path``, ``sidecar`` (``None`` without one), ``bytes`` and what the format's writer reports.
    """
    if format not in _WRITERS:
        raise SpikebridgeError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    wrong = sorted(set(options) - set(OPTIONS[format]))
    if wrong:
        takes = f"takes {', '.join(OPTIONS[format])}" if OPTIONS[format] else "takes no options"
        raise SpikebridgeError(f"format {format!r} {takes}; not {', '.join(wrong)}")
    path = Path(path)
    if path.is_dir():
        raise SpikebridgeError(f"{path} is a folder; give the file to write")
    summary = _WRITERS[format](model, path, **options)
    side = sidecar_path(path)
    return {**summary, "path": str(path), "sidecar": str(side) if format != "spikebridge" else None,
            "bytes": path.stat().st_size}


# --------------------------------------------------------------------------- load
def _sidecar_format(side: Path) -> str:
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise SpikebridgeError(f"cannot read {side}: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict) or not isinstance(data.get("format"), str):
        raise SpikebridgeError(f"{side} is not a spikebridge sidecar (no format field)")
    return data["format"]


def load(path):
    """Read back what [`export()`][spikebridge.deploy.api.export] (or a ``save`` method) wrote.

    Parameters
    ----------
    path : str or Path
        The model file; its format comes from the file (module docstring), and its sidecar is
        checked for format and version.

    Returns
    -------
    CoLaNET, Int8CoLaNET, AkidaCoLaNET, IntegerCoLaNET or SpikingClassifier
        A ``CoLaNET`` for NIR and native ``CoLaNET.save`` files; a ``SpikingClassifier`` for the
        native files of a rule (``spikebridge train`` models included).

    Raises
    ------
    SpikebridgeError
        One line naming the file when it is missing, unknown or damaged.
    """
    from ..io import is_safetensors, load_tensors

    path = Path(path)
    if not path.is_file():
        raise SpikebridgeError(f"{path} is a folder, not an exported model" if path.is_dir()
                               else f"model file not found: {path}")
    side = sidecar_path(path)
    if is_safetensors(path):
        _, meta = load_tensors(path, tensors=False)
        if meta.get("format") == INT8_FORMAT:
            from .fixed_point import Int8CoLaNET

            return Int8CoLaNET.load(path)
        from .integer_learning import MODEL_KIND, IntegerCoLaNET

        if meta.get("kind") == MODEL_KIND:
            return IntegerCoLaNET.load(path)
        from ..learner import list_rules

        if meta.get("rule") in list_rules():
            from ..estimator import SpikingClassifier

            return SpikingClassifier.load(path)
        if meta.get("kind") == "colanet":
            from ..colanet import CoLaNET

            try:
                return CoLaNET.load(path)
            except KeyError as exc:
                raise SpikebridgeError(f"{path} is not a complete CoLaNET: it lacks {exc}") from exc
        raise SpikebridgeError(f"{path} is a safetensors file but not a spikebridge model or export (its metadata "
                               f"names no int8 record, rule or model kind)")
    if not side.is_file():
        raise SpikebridgeError(f"{path} is not a spikebridge export: not a spikebridge safetensors file, and no "
                               f"sidecar {side.name} beside it")
    fmt = _sidecar_format(side)
    if fmt == SIDECAR_FORMAT:
        from .nir_import import import_nir

        return import_nir(path)
    if fmt == AKIDA_FORMAT:
        from .akida import AkidaCoLaNET

        return AkidaCoLaNET.load(path)
    raise SpikebridgeError(f"{side} has format {fmt!r}; beside a file that is not safetensors spikebridge reads "
                           f"{SIDECAR_FORMAT!r} (NIR) or {AKIDA_FORMAT!r} (Akida)")
