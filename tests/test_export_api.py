"""The one export API (spikebridge.deploy.api): ``spikebridge.export(model, path, format=...)`` from a
classifier, learner or CoLaNET, ``spikebridge.load(path)`` by format detection, versioned sidecars
checked on load, one-line errors naming the file; the ``spikebridge export`` command goes through it.
Real data: the raw 64-pixel scikit-learn digits (no encoder)."""

import argparse
import importlib.util
import json
import re

import numpy as np
import pytest
import torch

import spikebridge as sb
from spikebridge.colanet import CoLaNET
from spikebridge.deploy.fixed_point import Int8CoLaNET, Int8Sidecar
from spikebridge.deploy.formats import sidecar_path
from spikebridge.deploy.api import OPTIONS
from spikebridge.deploy.formats import EXPORT_FORMATS
from spikebridge.deploy.integer_learning import IntegerCoLaNET, integer_learner
from spikebridge.errors import SpikebridgeError
from spikebridge.cli.export import add_export_command
from spikebridge.io import load_tensors, save_arrays, save_tensors

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module

HAS_NIR = importlib.util.find_spec("nir") is not None
HAS_AKIDA = importlib.util.find_spec("akida") is not None
FILE = {"nir": "m.nir", "int8": "m.int8.safetensors", "akida": "m.fbz", "spikebridge": "m.safetensors"}


@pytest.fixture(scope="module")
def fitted(pixel_digits):
    """A SpikingClassifier (rule colanet) fitted on the raw digit pixels, and the val split."""
    xt, xv, yt, yv = pixel_digits
    clf = sb.SpikingClassifier(rule="colanet", epochs=2, microcolumns=3, seed=0).fit(xt, yt)
    return clf, xv[:150], yv[:150]


@pytest.fixture(scope="module")
def integer_model(pixel_digits):
    xt, _, yt, _ = pixel_digits
    learner = integer_learner(xt.shape[1], 10, 8, microcolumns=3, seed=0)
    return sb.train(learner, xt[:600], yt[:600], epochs=1, batch_size=16, progress=False)[0]


def _skip_without(fmt):
    if fmt == "nir" and not HAS_NIR:
        pytest.skip("needs the nir package")
    if fmt == "akida" and not HAS_AKIDA:
        pytest.skip("needs BrainChip's akida package")


def _given(clf, kind):
    return {"classifier": clf, "learner": clf.learner_, "model": clf.learner_.model}[kind]


def _one_line(err, *names):
    text = str(err.value)
    assert "\n" not in text, text
    for name in names:
        assert str(name) in text, (name, text)
    return text


# --------------------------------------------------------------------------- the names
def test_export_and_load_are_top_level_functions():
    from spikebridge.deploy import api

    assert sb.export is api.export and sb.load is api.load
    assert {"export", "load"} <= set(sb.__all__) and {"export", "load"} <= set(dir(sb))
    import spikebridge.deploy.nir  # noqa: F401  importing the subpackage rebinds nothing
    assert sb.export is api.export and callable(sb.export)
    assert tuple(OPTIONS) == EXPORT_FORMATS == ("nir", "int8", "akida", "integer", "spikebridge")


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("kind", ["classifier", "learner", "model"])
@pytest.mark.parametrize("fmt", ["nir", "int8", "akida", "spikebridge"])
def test_round_trip_gives_the_same_predictions(fitted, fmt, kind, tmp_path):
    _skip_without(fmt)
    clf, xv, _ = fitted
    model = clf.learner_.model
    path = tmp_path / "out" / FILE[fmt]
    summary = sb.export(_given(clf, kind), path, format=fmt)
    assert summary["path"] == str(path) and summary["bytes"] == path.stat().st_size
    back = sb.load(path)
    if fmt == "spikebridge":
        assert summary["sidecar"] is None and not sidecar_path(path).exists()
        if kind == "model":
            assert isinstance(back, CoLaNET)
            assert torch.equal(back.predict_spiking(xv), model.predict_spiking(xv))
        else:  # a rule's model file loads as the classifier, ready to predict
            assert isinstance(back, sb.SpikingClassifier)
            assert np.array_equal(back.predict(xv), clf.predict(xv))
        return
    assert summary["sidecar"] == str(sidecar_path(path)) and sidecar_path(path).is_file()
    if fmt == "nir":
        assert isinstance(back, CoLaNET)
        assert torch.equal(back.predict_spiking(xv), model.predict_spiking(xv))
        assert np.array_equal(clf.classes_[back.predict_spiking(xv).numpy()], clf.predict(xv))
        classes = json.loads(sidecar_path(path).read_text())["classes"]
        assert classes == (clf.classes_.tolist() if kind == "classifier" else None)
    elif fmt == "int8":
        assert isinstance(back, Int8CoLaNET)
        assert torch.equal(back.predict(xv), Int8CoLaNET.quantise(model).predict(xv))
        side = Int8Sidecar.read(sidecar_path(path))
        assert side.file_bytes == path.stat().st_size and side.bit_widths["weight"] == 8
    else:
        from spikebridge.deploy.akida import AkidaCoLaNET

        assert isinstance(back, AkidaCoLaNET)
        assert torch.equal(back.predict(xv), AkidaCoLaNET.from_colanet(model).predict(xv))


def test_format_options_reach_the_writer(fitted, tmp_path):
    clf, xv, _ = fitted
    model = clf.learner_.model
    sb.export(clf, tmp_path / "z.int8.safetensors", format="int8", reset="zero")
    back = sb.load(tmp_path / "z.int8.safetensors")
    assert back.reset == "zero" and torch.equal(back.predict(xv), Int8CoLaNET.quantise(model, "zero").predict(xv))
    q = Int8CoLaNET.quantise(model, dynamics="loihi")  # an Int8CoLaNET is written as it is
    sb.export(q, tmp_path / "l.int8.safetensors", format="int8")
    assert sb.load(tmp_path / "l.int8.safetensors").dynamics == "loihi"
    if HAS_NIR:
        s = sb.export(model, tmp_path / "n.nir", format="nir", target="norse", classes=list("abcdefghij"))
        side = json.loads(sidecar_path(tmp_path / "n.nir").read_text())
        assert side["target"] == "norse" and side["classes"] == list("abcdefghij") and s["neurons"] > 0
        assert torch.equal(sb.load(tmp_path / "n.nir").predict_spiking(xv), model.predict_spiking(xv))


def test_the_integer_learner_exports_its_state_and_its_int8_model(integer_model, fitted, tmp_path):
    _, xv, _ = fitted
    sb.export(integer_model, tmp_path / "i.safetensors", format="integer")
    back = sb.load(tmp_path / "i.safetensors")
    assert isinstance(back, IntegerCoLaNET) and torch.equal(back.weights, integer_model.weights)
    assert torch.equal(back.predict(xv), integer_model.predict(xv))
    sb.export(integer_model, tmp_path / "i.int8.safetensors", format="int8")
    q = sb.load(tmp_path / "i.int8.safetensors")
    assert isinstance(q, Int8CoLaNET) and torch.equal(q.predict(xv), integer_model.to_int8().predict(xv))


# --------------------------------------------------------------------------- export errors
def test_export_refuses_what_it_cannot_write_with_one_line(fitted, pixel_digits, tmp_path):
    clf, _, _ = fitted
    out = tmp_path / "m.nir"
    with pytest.raises(SpikebridgeError) as err:
        sb.export(clf, out, format="onnx")
    assert _one_line(err) == "unknown export format 'onnx'; choose one of nir, int8, akida, integer, spikebridge"
    with pytest.raises(SpikebridgeError) as err:
        sb.export(clf, out, format="int8", target="norse")
    assert _one_line(err) == "format 'int8' takes reset, dynamics, headroom; not target"
    with pytest.raises(SpikebridgeError, match="format 'integer' saves the integer learner") as err:
        sb.export(clf, out, format="integer")
    _one_line(err)
    with pytest.raises(SpikebridgeError, match="not fitted"):
        sb.export(sb.SpikingClassifier(), out, format="int8")
    xt, _, yt, _ = pixel_digits
    rstdp = sb.SpikingClassifier(rule="rstdp", epochs=1).fit(xt[:100], yt[:100])
    with pytest.raises(SpikebridgeError, match=r"needs a trained CoLaNET .*not a SpikingClassifier \(rule 'rstdp'\)"):
        sb.export(rstdp, out, format="int8")
    with pytest.raises(SpikebridgeError, match="train it first"):
        sb.export(CoLaNET(64, 10), out, format="int8")
    with pytest.raises(SpikebridgeError, match="is a folder"):
        sb.export(clf, tmp_path, format="int8")
    with pytest.raises(SpikebridgeError, match="an Int8CoLaNET is already in format 'int8'; leave out reset"):
        sb.export(Int8CoLaNET.quantise(clf.learner_.model), out, format="int8", reset="zero")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_akida_export_without_akida_is_one_line(fitted, monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "akida", None)  # import akida -> ImportError
    with pytest.raises(SpikebridgeError, match=r"pip install 'spikebridge\[akida\]'") as err:
        sb.export(fitted[0], tmp_path / "m.fbz", format="akida")
    _one_line(err)


# --------------------------------------------------------------------------- load errors
def test_load_refuses_unknown_or_damaged_files_naming_them(fitted, tmp_path):
    clf, _, _ = fitted
    with pytest.raises(SpikebridgeError) as err:
        sb.load(tmp_path / "absent.nir")
    assert _one_line(err, tmp_path / "absent.nir").startswith("model file not found")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SpikebridgeError, match="is not a spikebridge export") as err:
        sb.load(junk)
    _one_line(err, junk)
    sidecar_path(junk).write_text('{"format": "spikebridge-onnx", "version": 1}')
    with pytest.raises(SpikebridgeError, match="has format 'spikebridge-onnx'") as err:
        sb.load(junk)
    _one_line(err, sidecar_path(junk))
    sidecar_path(junk).write_text("{not json")
    with pytest.raises(SpikebridgeError, match="cannot read") as err:
        sb.load(junk)
    _one_line(err, sidecar_path(junk))
    arrays = tmp_path / "arrays.safetensors"  # safetensors, but no spikebridge metadata
    save_arrays(arrays, {"x": np.zeros(3, np.float32)})
    with pytest.raises(SpikebridgeError, match="not a spikebridge model or export") as err:
        sb.load(arrays)
    _one_line(err, arrays)
    sb.export(clf, tmp_path / "m.int8.safetensors", format="int8")
    data = (tmp_path / "m.int8.safetensors").read_bytes()
    cut = tmp_path / "cut.int8.safetensors"
    cut.write_bytes(data[: len(data) - 200])  # truncated: the header survives, the tensors do not
    with pytest.raises(SpikebridgeError) as err:
        sb.load(cut)
    _one_line(err, cut)


@pytest.mark.skipif(not HAS_NIR, reason="needs the nir package")
def test_load_refuses_a_damaged_nir_graph(fitted, tmp_path):
    sb.export(fitted[0], tmp_path / "m.nir", format="nir")
    (tmp_path / "m.nir").write_bytes(b"not an HDF5 file at all")
    with pytest.raises(SpikebridgeError, match="cannot read") as err:
        sb.load(tmp_path / "m.nir")
    _one_line(err, tmp_path / "m.nir")


@pytest.mark.parametrize("fmt", ["nir", "int8", "akida", "integer"])
def test_a_sidecar_from_a_newer_spikebridge_is_refused(fitted, integer_model, fmt, tmp_path):
    _skip_without(fmt)
    clf, _, _ = fitted
    path = tmp_path / (FILE.get(fmt) or "i.safetensors")
    sb.export(integer_model if fmt == "integer" else clf, path, format=fmt)
    side = sidecar_path(path)
    data = json.loads(side.read_text())
    assert data["version"] == 1
    side.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(SpikebridgeError, match=r"version 99; this spikebridge reads versions up to 1") as err:
        sb.load(path)
    _one_line(err, side)


def test_the_int8_record_in_the_file_is_version_checked_too(fitted, tmp_path):
    path = tmp_path / "m.int8.safetensors"
    sb.export(fitted[0], path, format="int8")
    sidecar_path(path).unlink()  # the model file alone carries its record
    assert isinstance(sb.load(path), Int8CoLaNET)
    tensors, meta = load_tensors(path)
    assert Int8Sidecar.from_dict(meta).version == 1 and "file_bytes" not in meta
    save_tensors(path, tensors, {**meta, "version": 2})
    with pytest.raises(SpikebridgeError, match=re.escape(f"{path} is int8 model version 2; this spikebridge reads "
                                                         "versions up to 1")) as err:
        sb.load(path)
    _one_line(err)


# --------------------------------------------------------------------------- the command line
def test_export_command_writes_through_the_api(fitted, monkeypatch, tmp_path, capsys):
    from spikebridge.deploy import api

    clf, xv, _ = fitted
    model_file = tmp_path / "run" / "model.safetensors"
    sb.export(clf, model_file, format="spikebridge")
    calls = []
    real = api.export
    monkeypatch.setattr(api, "export", lambda *a, **kw: calls.append(kw["format"]) or real(*a, **kw))
    parser = argparse.ArgumentParser(prog="spikebridge")
    add_export_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "--model", str(model_file), "--format", "int8"])
    assert args.func(args) == 0 and calls == ["int8"]
    out = tmp_path / "run" / "model.int8.safetensors"
    assert f"sidecar:    {sidecar_path(out)}" in capsys.readouterr().out
    assert torch.equal(sb.load(out).predict(xv), Int8CoLaNET.quantise(clf.learner_.model).predict(xv))
    assert Int8Sidecar.read(sidecar_path(out)).format == "spikebridge-int8"
