"""BrainChip Akida export (spikebridge.deploy.akida, ``spikebridge export --format akida``).

Needs BrainChip's ``akida`` package (``pip install 'spikebridge[akida]'``); without it every test
that runs Akida skips and says so."""

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import spikebridge as sb
from spikebridge import create_learner, train
from spikebridge.colanet import CoLaNETConfig
from spikebridge.deploy.formats import sidecar_path
from spikebridge.deploy.akida import AkidaCoLaNET, AkidaSidecar
from spikebridge.deploy.akida_quantisation import count_rates, quantise_weights, quantised_colanet, window_steps
from spikebridge.deploy.formats import check_akida_bits
from spikebridge.errors import SpikebridgeError
from spikebridge.cli.export import add_export_command
from spikebridge.io import save_tensors


@pytest.fixture(scope="module")
def akida():
    return pytest.importorskip("akida", reason="needs BrainChip's akida package: pip install 'spikebridge[akida]'")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


def _train(x, y, **cfg):
    learner = create_learner("colanet", x.shape[1], 10, config=CoLaNETConfig(**cfg))
    return train(learner, x, y, epochs=2, batch_size=16, progress=False)[0].model


@pytest.fixture(scope="module")
def pixel_model(pixel_digits):
    """CoLaNET on the raw 64-pixel digits (real data, no encoder): 128 ON/OFF channels, 30 neurons."""
    xt, xv, yt, yv = pixel_digits
    return _train(xt, yt, microcolumns=3), xv, yv


@pytest.fixture(scope="module")
def pixel_ensemble(pixel_digits):
    xt, xv, yt, yv = pixel_digits
    return _train(xt, yt, microcolumns=2, ensemble=2), xv, yv


def _agreement(a, b) -> float:
    return float((torch.as_tensor(np.asarray(a)) == torch.as_tensor(np.asarray(b))).double().mean())


# --------------------------------------------------------------------------- without Akida
def test_bit_widths_are_checked_with_one_line_errors():
    assert [check_akida_bits(b, "weight bits") for b in (1, 2, 4, np.int64(4))] == [1, 2, 4, 4]
    for bad in (0, 3, 8, 4.0, True, "4"):
        with pytest.raises(SpikebridgeError, match=r"is not an Akida bit width; choose one of 1, 2, 4$"):
            check_akida_bits(bad, "weight bits")
    assert [window_steps(b) for b in (1, 2, 4)] == [1, 3, 15]


def test_quantiser_uses_akidas_integer_ranges_and_errors_shrink_with_bits(pixel_model):
    model, _, _ = pixel_model
    w = model.effective_weights()[0]
    w = torch.cat([w, torch.zeros(1, w.shape[1])])  # an unrecruited neuron: zero row
    errors = {}
    for bits, (lo, hi) in {4: (-7, 7), 2: (-1, 1), 1: (0, 1)}.items():
        q = quantise_weights(w, bits)
        assert q.q.dtype == torch.int8 and int(q.q.min()) >= lo and int(q.q.max()) <= hi
        assert q.q.shape == (1, *w.shape) and q.scale.shape == (1, len(w))
        assert q.scale[0, -1] == 0 and bool((q.dequantised()[-1] == 0).all())
        assert bool((q.scale[0, :-1] > 0).all())
        errors[bits] = float(((q.dequantised() - w.double()) ** 2).sum() / (w.double() ** 2).sum())
    assert errors[4] < 0.05 and errors[4] < errors[2] < 1.0 and errors[1] < 1.0
    with pytest.raises(SpikebridgeError, match="weight bits 3 is not an Akida bit width"):
        quantise_weights(w, 3)
    for bits in (4, 2, 1):  # residual slices: each one shrinks the error
        errs = [float(((quantise_weights(w, bits, slices=n).dequantised() - w.double()) ** 2).sum()) for n in (1, 2, 3)]
        assert errs[0] > errs[1] > errs[2], (bits, errs)
    for bad in (0, 5, 1.5):
        with pytest.raises(SpikebridgeError, match="weight slices .* must be an integer from 1 to 4"):
            quantise_weights(w, 4, slices=bad)


def test_calibrated_quantiser_has_the_least_drive_error(pixel_digits, pixel_model):
    """With the input second moment of the training rates, every neuron's expected squared drive
    error on those inputs is at most that of the plain weight-error quantiser (same codes, best scale)."""
    from spikebridge.deploy.akida_quantisation import input_second_moment

    model, _, _ = pixel_model
    xt = pixel_digits[0]
    w = model.effective_weights()[0].double()
    sigma = input_second_moment(model, xt, 4)
    x = count_rates(model, xt, 4).double()
    assert torch.allclose(sigma, x.T @ x / len(x), rtol=1e-5, atol=1e-9)
    for bits in (4, 2, 1):
        errors = [((x @ (w - quantise_weights(w, bits, s).dequantised()).T) ** 2).mean(0) for s in (sigma, None)]
        assert bool((errors[0] <= errors[1] * (1 + 1e-9) + 1e-12).all()), bits
        assert float(errors[0].sum()) < float(errors[1].sum())
    with pytest.raises(SpikebridgeError, match="calibration features are empty"):
        input_second_moment(model, xt[:0], 4)
    with pytest.raises(SpikebridgeError, match="non-finite features"):
        input_second_moment(model, np.full((2, 64), np.nan, np.float32), 4)


def test_error_feedback_rounding_lowers_the_drive_error(pixel_digits, pixel_model, monkeypatch):
    """Calibrated quantisation re-rounds with error feedback (GPTQ): per neuron never worse than
    nearest rounding at the same Sigma, and lower in total at every width; Sigma = I is untouched."""
    from spikebridge.deploy import akida_quantisation as quantisation

    model, _, _ = pixel_model
    xt = pixel_digits[0]
    w = model.effective_weights()[0].double()
    sigma = quantisation.input_second_moment(model, xt, 4)
    x = count_rates(model, xt, 4).double()
    drive_error = lambda q: ((x @ (w - q.dequantised()).T) ** 2).mean(0)  # noqa: E731
    with_feedback = {bits: quantisation.quantise_weights(w, bits, sigma) for bits in (4, 2, 1)}
    calls = []
    monkeypatch.setattr(quantisation, "_error_feedback_codes", lambda t, s, f: calls.append(1) or t * float("nan"))  # never better
    for bits, q in with_feedback.items():
        nearest = quantisation.quantise_weights(w, bits, sigma)
        assert q.q.dtype == torch.int8 and int(q.q.min()) >= (0 if bits == 1 else -(2 ** (bits - 1) - 1))
        e_fb, e_near = drive_error(q), drive_error(nearest)
        assert bool((e_fb <= e_near * (1 + 1e-9) + 1e-12).all()), bits
        assert float(e_fb.sum()) < 0.97 * float(e_near.sum()), bits
    n = len(calls)
    quantisation.quantise_weights(w, 4, None)
    assert len(calls) == n  # no calibration: plain nearest rounding of the weight error


def test_without_akida_the_export_says_how_to_install_it(pixel_model, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "akida", None)  # import akida -> ImportError
    with pytest.raises(SpikebridgeError, match=r"pip install 'spikebridge\[akida\]'"):
        sb.export(pixel_model[0], tmp_path / "m.fbz", format="akida")


def _parser():
    parser = argparse.ArgumentParser()
    add_export_command(parser.add_subparsers(dest="command"))
    return parser


@pytest.mark.parametrize("argv, message", [
    (["--format", "akida", "--weight-bits", "3"], "--weight-bits 3 is not an Akida bit width; choose one of 1, 2, 4"),
    (["--format", "akida", "--input-bits", "8"], "--input-bits 8 is not an Akida bit width; choose one of 1, 2, 4"),
    (["--format", "akida", "--reset", "zero"], "--reset does not apply to --format akida; leave it out"),
    (["--format", "akida", "--target", "norse"], "--target does not apply to --format akida; leave it out"),
    (["--format", "nir", "--input-bits", "4"], "--input-bits does not apply to --format nir; leave it out"),
    (["--format", "int8", "--weight-bits", "4"], "--weight-bits does not apply to --format int8; leave it out"),
    (["--format", "nir", "--calibration", "feats"], "--calibration does not apply to --format nir; leave it out"),
    (["--format", "akida", "--weight-slices", "5"], "--weight-slices 5 must be from 1 to 4"),
    (["--format", "int8", "--weight-slices", "2"], "--weight-slices does not apply to --format int8; leave it out"),
])
def test_export_command_refuses_bad_akida_options_before_reading_the_model(tmp_path, argv, message):
    args = _parser().parse_args(["export", "--model", str(tmp_path / "absent.safetensors"), *argv])
    with pytest.raises(SpikebridgeError) as err:
        args.func(args)
    assert str(err.value) == message


# --------------------------------------------------------------------------- with Akida
def test_network_layout_and_sidecar(akida, pixel_model, tmp_path):
    model, _, _ = pixel_model
    summary = sb.export(model, tmp_path / "m.fbz", format="akida", classes=[str(c) for c in range(10)])
    net = akida.Model(str(tmp_path / "m.fbz"))  # Akida's own reader
    inp, fc = net.get_layer(0), net.get_layer(1)
    assert inp.parameters.layer_type == akida.LayerType.InputData
    assert fc.parameters.layer_type == akida.LayerType.FullyConnected
    assert inp.input_bits == 4 and list(inp.output_dims) == [1, 1, 128]
    assert fc.parameters.weights_bits == 4 and not fc.parameters.activation
    weights = fc.get_variable("weights")
    assert weights.shape == (1, 1, 128, 30) and weights.min() >= -7 and weights.max() <= 7
    side = json.loads(sidecar_path(tmp_path / "m.fbz").read_text())
    assert side["format"] == "spikebridge-akida" and side["steps"] == 15 and side["coder"]["name"] == "regular"
    assert [n["column"] for n in side["neurons"]] == [j // 3 for j in range(30)]
    assert [n["active"] for n in side["neurons"]] == model.active[0].tolist()
    assert side["classes"] == [str(c) for c in range(10)] and "argmax_c" in side["readout"]["rule"]
    assert summary["neurons"] == 30 and summary["recruited"] == int(model.active.sum())
    unrecruited = ~model.active[0].numpy()
    if unrecruited.any():
        assert (weights[0, 0][:, unrecruited] == 0).all()


@pytest.mark.parametrize("input_bits, weight_bits", [(4, 4), (4, 2), (4, 1), (2, 4), (1, 1)])
def test_akida_decision_is_our_readout_on_the_same_counts(akida, pixel_model, input_bits, weight_bits):
    """Akida's integer potentials decoded by the sidecar's rule give the decision of our continuous
    readout on the same counts with the same (quantised) weights; with 4-bit weights also (>= 99 %)
    that of the float weights."""
    model, xv, _ = pixel_model
    ak = AkidaCoLaNET.from_colanet(model, input_bits, weight_bits)
    x = ak.counts(xv)
    assert x.dtype == np.uint8 and int(x.max()) <= window_steps(input_bits)
    P = ak.potentials(x)
    q = quantise_weights(model.effective_weights()[0], weight_bits)
    assert np.array_equal(P, x.reshape(len(x), -1).astype(np.int64) @ q.q[0].T.numpy().astype(np.int64))  # exact integers
    ours = ak.scores(P, x)
    rates = count_rates(model, xv, input_bits)
    assert torch.equal(rates, torch.from_numpy(x.reshape(len(x), -1)).float() / window_steps(input_bits))
    reference = quantised_colanet(model, weight_bits).column_scores_continuous(rates)
    assert torch.allclose(ours, reference.double(), rtol=1e-4, atol=1e-6)
    assert _agreement(ours.argmax(1), reference.argmax(1)) >= 0.995
    if weight_bits == 4:
        assert _agreement(ours.argmax(1), model.column_scores_continuous(rates).argmax(1)) >= 0.99
    if weight_bits != 1:  # Akida's own predict_classes (predict = (P - threshold) / act_step) decides the same
        assert _agreement(ak.predict_classes(x), ours.argmax(1)) >= 0.995
    else:
        with pytest.raises(SpikebridgeError, match="1-bit"):
            ak.predict_classes(x)


def test_akida_decision_is_the_readout_function(akida, pixel_ensemble, monkeypatch):
    """AkidaCoLaNET.scores decodes the drives and leaves the column decision to
    spikebridge.readout.continuous_column_scores (one home, shared with CoLaNET)."""
    from spikebridge.deploy import akida as akida_export
    from spikebridge.readout import continuous_column_scores

    model, xv, _ = pixel_ensemble
    ak = AkidaCoLaNET.from_colanet(model, 4, 4)
    x = ak.counts(xv[:20])
    calls = []

    def spy(drive, threshold, n_classes):
        calls.append(drive.shape)
        return continuous_column_scores(drive, threshold, n_classes)

    monkeypatch.setattr(akida_export, "continuous_column_scores", spy)
    ak.scores(ak.potentials(x), x)
    assert calls == [(2, 20, model.weights.shape[1])]


def test_unrecruited_neurons_and_tiny_thresholds(akida, pixel_model):
    """An unrecruited neuron gets zero weights and no say, also in Akida's own predict_classes;
    a threshold so small that act_step would fall below Akida's 1/16 rescales all act_steps."""
    import copy

    model, xv, _ = pixel_model
    odd = copy.copy(model)
    odd.active = model.active.clone()
    odd.active[0, ::3] = False  # the first microcolumn of every column
    odd.threshold = model.threshold * 1e-6
    ak = AkidaCoLaNET.from_colanet(odd, 4, 4)
    layer = ak.model.get_layer(1)
    assert (layer.get_variable("weights")[0, 0][:, ::3] == 0).all()
    assert ak.side.weights["predict_factor"] > 1 and layer.get_variable("act_step").min() >= 1 / 16
    x = ak.counts(xv)
    ours = ak.scores(ak.potentials(x), x).argmax(1)
    reference = quantised_colanet(odd, 4).column_scores_continuous(count_rates(odd, xv, 4)).argmax(1)
    assert _agreement(ours, reference) >= 0.995 and _agreement(ak.predict_classes(x), ours) >= 0.995
    predicted = np.asarray(ak.model.predict(x)).reshape(len(x), -1)
    assert predicted[:, ::3].max() < -1e9  # unrecruited: (0 - 2**30) / (1/16)


def test_fbz_round_trip_gives_identical_predictions(akida, pixel_model, tmp_path):
    model, xv, yv = pixel_model
    ak = AkidaCoLaNET.from_colanet(model, 4, 4)
    before = ak.predict(xv)
    ak.save(tmp_path / "a" / "m.fbz")
    back = AkidaCoLaNET.load(tmp_path / "a" / "m.fbz")
    x = back.counts(xv)
    assert np.array_equal(back.potentials(x), ak.potentials(x))
    assert torch.equal(back.predict(xv), before)
    assert _agreement(before, yv) > 0.8  # a working classifier, not just a consistent one


@pytest.mark.parametrize("weight_bits", [4, 2, 1])
def test_residual_slices_are_summed_by_the_readout(akida, pixel_model, weight_bits):
    """Two Akida neurons per CoLaNET neuron (the second quantises the first one's error): the
    decision is our readout with the two-slice weights and is closer to the float decision."""
    model, xv, _ = pixel_model
    ak = AkidaCoLaNET.from_colanet(model, 4, weight_bits, slices=2)
    U = model.active.numel()
    assert ak.side.slices == 2 and list(ak.model.get_layer(1).output_dims) == [1, 1, 2 * U]
    x = ak.counts(xv)
    P = ak.potentials(x)
    ours = ak.scores(P, x)
    rates = count_rates(model, xv, 4)
    reference = quantised_colanet(model, weight_bits, slices=2).column_scores_continuous(rates)
    assert torch.allclose(ours, reference.double(), rtol=1e-4, atol=1e-6)
    float_scores = model.column_scores_continuous(rates)
    one = quantised_colanet(model, weight_bits).column_scores_continuous(rates)
    assert float((ours - float_scores).abs().mean()) < float((one - float_scores).abs().mean())
    if weight_bits != 1:  # Akida's predict, summed over a neuron's two units, is u_j = a_j / theta
        u = np.asarray(ak.model.predict(x)).reshape(len(x), 2, U).sum(1)
        theta = float(model.threshold[0])
        drive = rates.double() @ quantised_colanet(model, weight_bits, slices=2).effective_weights()[0].double().T
        assert np.allclose(u, (drive / theta).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(SpikebridgeError, match="predict_classes is not CoLaNET's decision"):
        ak.predict_classes(x)


def test_ensemble_members_are_summed_like_ours(akida, pixel_ensemble):
    model, xv, _ = pixel_ensemble
    ak = AkidaCoLaNET.from_colanet(model, 4, 4)
    assert len(ak.side.neurons) == 2 * 10 * 2 and not ak.side.readout["akida_predict_classes"]
    x = ak.counts(xv)
    reference = quantised_colanet(model, 4).column_scores_continuous(count_rates(model, xv, 4))
    assert _agreement(ak.scores(ak.potentials(x), x).argmax(1), reference.argmax(1)) >= 0.995


def test_maps_onto_an_akd1000(akida, pixel_model):
    m = AkidaCoLaNET.from_colanet(pixel_model[0], 4, 4).hardware_mapping("AKD1000")
    assert m["mapped"] and m["hardware_sequences"] == 1 and m["neural_processors"] >= 1
    with pytest.raises(SpikebridgeError, match="unknown Akida device"):
        AkidaCoLaNET.from_colanet(pixel_model[0], 4, 4).hardware_mapping("AKD9")


def test_load_refuses_missing_or_mismatched_sidecars(akida, pixel_model, tmp_path):
    model, _, _ = pixel_model
    sb.export(model, tmp_path / "four.fbz", format="akida", weight_bits=4)
    sb.export(model, tmp_path / "two.fbz", format="akida", weight_bits=2)
    with pytest.raises(SpikebridgeError, match="Akida model not found"):
        AkidaCoLaNET.load(tmp_path / "absent.fbz")
    sidecar_path(tmp_path / "two.fbz").replace(tmp_path / "kept.json")
    with pytest.raises(SpikebridgeError, match="is missing; a bare .fbz has no CoLaNET readout"):
        AkidaCoLaNET.load(tmp_path / "two.fbz")
    (tmp_path / "kept.json").replace(sidecar_path(tmp_path / "four.fbz"))  # a 2-bit sidecar beside a 4-bit model
    with pytest.raises(SpikebridgeError, match="does not match"):
        AkidaCoLaNET.load(tmp_path / "four.fbz")
    sidecar_path(tmp_path / "four.fbz").write_text('{"format": "spikebridge-nir"}')
    with pytest.raises(SpikebridgeError, match="not a spikebridge Akida sidecar"):
        AkidaCoLaNET.load(tmp_path / "four.fbz")
    with pytest.raises(SpikebridgeError, match="lacks fields: akida_version, input_bits"):
        AkidaSidecar.from_dict({"format": "spikebridge-akida", "version": 1})
    with pytest.raises(SpikebridgeError, match="input bits 3 is not an Akida bit width"):
        AkidaCoLaNET.from_colanet(model, 3, 4)


def test_digits_features_agree_at_four_bits(akida, digits_features):
    """Lite0 features of the digits set (slow: extracts them), quantiser calibrated on train: >= 99 %
    agreement with our quantised continuous readout on the same counts, and 4-bit weights cost at
    most a point of accuracy against our float weights on those counts."""
    from spikebridge.deploy.akida_quantisation import input_second_moment

    train_fs, val_fs = digits_features
    model = _train(train_fs.features, train_fs.labels)
    sigma = input_second_moment(model, train_fs.features, 4)
    ak = AkidaCoLaNET.from_colanet(model, 4, 4, second_moment=sigma)
    x = ak.counts(val_fs.features)
    pred = ak.scores(ak.potentials(x), x).argmax(1)
    rates = count_rates(model, val_fs.features, 4)
    reference = quantised_colanet(model, 4, sigma).column_scores_continuous(rates).argmax(1)
    assert _agreement(pred, reference) >= 0.99
    float_weights = _agreement(model.column_scores_continuous(rates).argmax(1), val_fs.labels)
    assert _agreement(pred, val_fs.labels) >= float_weights - 0.01


def test_export_command_reads_calibration_features(akida, pixel_model, digits_features, tmp_path, capsys):
    """--calibration takes a cached feature folder; a folder without features or of another
    width is refused in one line."""
    train_fs, _ = digits_features
    model = _train(train_fs.features, train_fs.labels)
    path = tmp_path / "model.safetensors"
    save_tensors(path, model.tensors(), {"rule": "colanet", "learn_mode": "continuous", **model.metadata()})
    out = tmp_path / "m.fbz"
    args = _parser().parse_args(["export", "--model", str(path), "--format", "akida", "--out", str(out),
                                 "--calibration", str(train_fs.path)])
    assert args.func(args) == 0 and "Akida model:" in capsys.readouterr().out
    assert f"of {len(train_fs.features)} calibration examples" in AkidaCoLaNET.load(out).side.weights["sigma"]
    args = _parser().parse_args(["export", "--model", str(path), "--format", "akida", "--calibration", str(tmp_path)])
    with pytest.raises(SpikebridgeError, match="no readable feature manifest"):
        args.func(args)
    pixel = tmp_path / "pixel.safetensors"
    save_tensors(pixel, pixel_model[0].tensors(), {"rule": "colanet", "learn_mode": "continuous", **pixel_model[0].metadata()})
    args = _parser().parse_args(["export", "--model", str(pixel), "--format", "akida", "--calibration", str(train_fs.path)])
    with pytest.raises(SpikebridgeError, match="holds 1280-dimensional features; the model reads 64"):
        args.func(args)


@pytest.mark.slow
def test_export_command_writes_an_akida_model(akida, pixel_model, tmp_path):
    model, xv, _ = pixel_model
    path = tmp_path / "run" / "model.safetensors"
    save_tensors(path, model.tensors(), {"rule": "colanet", "learn_mode": "continuous", **model.metadata(), "classes": [str(c) for c in range(10)]})
    done = subprocess.run([sys.executable, "-m", "spikebridge", "export", "--model", str(path), "--format", "akida",
                           "--weight-bits", "2", "--input-bits", "2", "--weight-slices", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "run" / "model.fbz"  # default: beside the model
    assert "Akida model:" in done.stdout and out.is_file() and sidecar_path(out).is_file()
    back = AkidaCoLaNET.load(out)
    assert back.side.weight_bits == 2 and back.side.input_bits == 2 and back.steps == 3 and back.side.slices == 2
    assert torch.equal(back.predict(xv), AkidaCoLaNET.from_colanet(model, 2, 2, slices=2).predict(xv))
    bad = subprocess.run([sys.executable, "-m", "spikebridge", "export", "--model", str(path), "--format", "akida",
                          "--weight-bits", "3"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [
        "error: --weight-bits 3 is not an Akida bit width; choose one of 1, 2, 4"]
