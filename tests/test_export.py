"""NIR export/import, peer simulators (snnTorch, Norse), the int8 fixed-point model, the CLI."""

import argparse
import json
import math

import numpy as np
import pytest
import torch

from spikebridge.deploy.fixed_point import Int8CoLaNET
from spikebridge.deploy.formats import SNNTORCH_DT, sidecar_path
from spikebridge.deploy.nir import export_nir, nir_graph
from spikebridge.deploy.nir_import import import_nir
from spikebridge.deploy.nir_lif import lif_to_nir, nir_to_lif
from spikebridge.cli.export import add_export_command
from spikebridge.colanet import CoLaNETConfig
from spikebridge.errors import SpikebridgeError
from spikebridge.deploy.peer_agreement import peer_predictions
from spikebridge.io import save_tensors
from spikebridge.neurons import PopulationParameters, lif_population
from spikebridge import create_learner, train

nir = pytest.importorskip("nir")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


def _train(x, y, **cfg):
    learner = create_learner("colanet", x.shape[1], 10, config=CoLaNETConfig(**cfg))
    return train(learner, x, y, epochs=3, batch_size=16, progress=False)[0]


@pytest.fixture(scope="module")
def digits_model(digits_features):
    train_fs, val_fs = digits_features
    return _train(train_fs.features, train_fs.labels).model, val_fs


@pytest.fixture(scope="module")
def pixel_ensemble(pixel_digits):
    xt, xv, yt, yv = pixel_digits
    return _train(xt, yt, ensemble=2, microcolumns=3).model, xv, yv


# --------------------------------------------------------------------------- parameter mapping
@pytest.mark.parametrize("convention", ["euler", "exact"])
def test_parameter_mapping_round_trip(convention):
    for dt, tau, theta in [(1e-3, 20e-3, 203.7), (1e-4, 5e-3, 1.0), (1e-3, 1e-3, 0.25), (2e-3, 0.5, 3e4)]:
        beta = math.exp(-dt / tau)
        p = lif_to_nir(beta, theta, dt, convention)
        assert p.v_leak == 0 and p.v_reset == 0 and p.v_threshold == theta
        beta2, gain, theta2 = nir_to_lif(p.tau, p.r, p.v_threshold, dt, convention)
        assert beta2 == pytest.approx(beta, rel=1e-13, abs=0) and gain == pytest.approx(1.0, abs=1e-12)
        assert theta2 == theta
    beta = math.exp(-1e-3 / 20e-3)  # the defaults: dt = 1 ms, tau = 20 ms
    p = lif_to_nir(beta, 1.0, 1e-3, convention)
    assert p.tau == pytest.approx(20e-3 if convention == "exact" else 1e-3 / (1 - beta), rel=1e-12)
    assert p.r == pytest.approx(1 / (1 - beta), rel=1e-12)


@pytest.mark.parametrize("convention", ["euler", "exact"])
def test_mapped_parameters_integrate_the_nir_equation_to_our_neuron(convention):
    """Integrate NIR's tau dv/dt = (v_leak - v) + r I (current held over each step) with the
    mapped parameters, Euler steps or finely sub-stepped, and compare with our discrete LIF."""
    dt, tau, theta = 1e-3, 20e-3, 1.0
    beta = math.exp(-dt / tau)
    p = lif_to_nir(beta, theta, dt, convention)
    current = torch.rand(40, generator=torch.Generator().manual_seed(0)) * 0.4
    ours = PopulationParameters(beta, torch.tensor([theta], dtype=torch.float64))
    spikes = lif_population(current.view(1, -1, 1, 1).double(), ours, keep_spikes=True).spikes
    v, out, sub = 0.0, [], 1 if convention == "euler" else 2000
    for i in current.double().tolist():
        for _ in range(sub):
            v += dt / sub / p.tau * ((p.v_leak - v) + p.r * i)
        s = v >= p.v_threshold
        v -= theta * s  # our subtractive reset (sidecar "reset": "subtract")
        out.append(float(s))
    assert out == spikes.view(-1).tolist() and sum(out) >= 5


# --------------------------------------------------------------------------- export / import
def test_export_writes_graph_and_sidecar(digits_model, tmp_path):
    model, _ = digits_model
    s = export_nir(model, tmp_path / "m.nir", classes=[str(c) for c in range(10)])
    graph, side = nir.read(s["path"]), json.loads((tmp_path / "m.nir.json").read_text())
    J = int(model.active.sum())
    assert set(graph.nodes) == {"input", "synapses", "winner_take_all", "output"}
    assert graph.nodes["synapses"].weight.shape == (J, model.n_channels)
    pop = graph.nodes["winner_take_all"]
    lif, lateral = pop.nodes["lif"], pop.nodes["lateral"].weight
    assert ("lif", "lateral") in pop.edges and ("lateral", "lif") in pop.edges
    theta = float(model.threshold[0])
    assert np.allclose(lif.v_threshold, theta) and np.all(lif.v_leak == 0)
    assert np.allclose(lif.tau, 1e-3 / (1 - model.config.beta)) and np.allclose(lif.r, 1 / (1 - model.config.beta))
    assert np.all(np.diag(lateral) == 0)
    off = lateral[~np.eye(J, dtype=bool)]
    assert np.allclose(off, -model.config.lateral_inhibition * theta)
    assert side["reset"] == "subtract" and side["time_step_s"] == model.config.dt and len(side["neurons"]) == J
    assert [n["column"] for n in side["neurons"]] == model.column[model.active[0]].tolist()
    assert len(side["coder"]["gain"]) == model.n_channels and "plasticity" in side


@pytest.mark.parametrize("layout,convention", [("nested", "euler"), ("flat", "exact")])
def test_import_gives_identical_predictions(digits_model, tmp_path, layout, convention):
    model, val = digits_model
    path = tmp_path / "m.nir"
    export_nir(model, path, layout=layout, convention=convention)
    back = import_nir(path)
    assert torch.equal(back.predict_spiking(val.features), model.predict_spiking(val.features))
    assert back.config.lateral_inhibition == model.config.lateral_inhibition
    assert back.config.beta == model.config.beta
    assert torch.equal(back.effective_weights()[back.active], model.effective_weights()[model.active])


def test_ensemble_exports_as_one_block_diagonal_population(pixel_ensemble, tmp_path):
    model, xv, _ = pixel_ensemble
    export_nir(model, tmp_path / "e.nir")
    graph = nir.read(str(tmp_path / "e.nir"))
    lateral = graph.nodes["winner_take_all"].nodes["lateral"].weight
    member = np.array([n["member"] for n in json.loads((tmp_path / "e.nir.json").read_text())["neurons"]])
    assert set(member) == {0, 1} and np.all(lateral[member[:, None] != member[None, :]] == 0)
    back = import_nir(tmp_path / "e.nir")
    assert back.config.ensemble == 2
    assert torch.equal(back.predict_spiking(xv), model.predict_spiking(xv))


def test_import_rejects_bad_input(digits_model, tmp_path):
    model, _ = digits_model
    with pytest.raises(SpikebridgeError, match="not found"):
        import_nir(tmp_path / "missing.nir")
    export_nir(model, tmp_path / "m.nir")
    (tmp_path / "m.nir.json").unlink()
    with pytest.raises(SpikebridgeError, match="missing"):
        import_nir(tmp_path / "m.nir")


# --------------------------------------------------------------------------- peers
@pytest.mark.parametrize("peer", ["snntorch", "norse"])
def test_peer_simulator_agrees_with_ours(digits_model, peer):
    pytest.importorskip(peer)
    pytest.importorskip("nirtorch")
    model, val = digits_model
    idx = np.random.default_rng(0).permutation(len(val.labels))[:200]
    r = peer_predictions(model, val.features[idx], peer)
    assert r["reference_spike_match"] == 1.0  # the peer runs exactly the exported dynamics
    assert r["agreement"] >= 0.99, r["agreement"]
    assert r["spikes"].sum() > 0


def test_snntorch_target_normalises_ensemble_thresholds(pixel_ensemble):
    pytest.importorskip("snntorch")
    model, xv, _ = pixel_ensemble
    assert model.threshold[0] != model.threshold[1]
    graph, side = nir_graph(model, target="snntorch")
    assert side.unit_threshold and side.time_step_s == SNNTORCH_DT
    assert np.all(graph.nodes["winner_take_all"].nodes["lif"].v_threshold == 1)
    r = peer_predictions(model, xv[:150], "snntorch")
    assert r["agreement"] >= 0.98, r["agreement"]


# --------------------------------------------------------------------------- int8
def _reference_int_loop(q: Int8CoLaNET, spikes: np.ndarray):
    """Independent, plain-Python integer simulation of one example ``spikes [T, N]``."""
    w = q.weights.numpy().astype(np.int64)
    member = q.member.tolist()
    theta = [int(q.threshold[k]) for k in member]
    lateral = [int(q.lateral[k]) for k in member]
    J, keep = len(member), 4096 - q.decay_dv
    v, prev, counts, first = [0] * J, [0] * J, [0] * J, [len(spikes) + 1] * J
    for t, x in enumerate(spikes):
        drive = (w @ x.astype(np.int64)).tolist()
        fired = [0] * J
        for j in range(J):
            product = v[j] * keep
            decayed = abs(product) // 4096 * (1 if product >= 0 else -1)  # toward zero
            others = sum(prev[i] for i in range(J) if i != j and member[i] == member[j])
            u = min(max(decayed + drive[j] - lateral[j] * others, -(2**23)), 2**23 - 1)
            if u >= theta[j]:
                fired[j], u = 1, u - theta[j]
                counts[j] += 1
                first[j] = min(first[j], t + 1)
            v[j] = u
        prev = fired
    return counts, first, v


def test_one_decay_formula():
    """dv = round(4096 (1 - beta)) clamped to [0, 4096]; v <- trunc(v (4096 - dv) / 4096) toward zero."""
    from spikebridge.deploy.fixed_point import decay, decay_dv, decay_factor

    assert [decay_dv(b) for b in (1.0, 0.95, 0.0, -0.5, 1.5)] == [0, 205, 4096, 4096, 0]
    assert decay_factor(decay_dv(0.95)) == (4096 - 205) / 4096
    v = torch.tensor([-(2**23), -4097, -1, 0, 1, 4097, 2**23 - 1], dtype=torch.int64)
    expected = [abs(x * 3891) // 4096 * (1 if x >= 0 else -1) for x in v.tolist()]
    assert decay(v, 205).tolist() == expected


def test_int8_simulation_is_exact(pixel_ensemble, digits_model):
    for model, x in ((pixel_ensemble[0], pixel_ensemble[1][:3]), (digits_model[0], digits_model[1].features[:3])):
        q = Int8CoLaNET.quantise(model)
        assert q.weights.dtype == torch.int8 and q.weights.abs().max() <= 127
        spikes = q.spikes_for(x)
        rec = q.simulate(spikes)
        for b in range(spikes.shape[1]):
            counts, first, v = _reference_int_loop(q, spikes[:, b].numpy())
            assert rec.counts[b].tolist() == counts and rec.first_spike[b].tolist() == first
            assert rec.v_final[b].tolist() == v


def test_int8_accuracy_and_size(digits_model, tmp_path):
    model, val = digits_model
    q = Int8CoLaNET.quantise(model)
    float_acc = (model.predict_spiking(val.features).numpy() == val.labels).mean()
    int_acc = (q.predict(val.features).numpy() == val.labels).mean()
    assert int_acc >= float_acc - 0.01, (float_acc, int_acc)
    s = q.save(tmp_path / "m.int8.safetensors")
    J = int(model.active.sum())
    coder_bytes = sum(t.numel() * t.element_size() for t in model.normaliser.tensors().values())  # float rate map
    assert s["network_bytes"] < J * model.n_channels * 1.1 and s["file_bytes"] < 2 * J * model.n_channels + coder_bytes
    back = Int8CoLaNET.load(tmp_path / "m.int8.safetensors")
    assert torch.equal(back.predict(val.features[:50]), q.predict(val.features[:50]))
    assert json.loads((tmp_path / "m.int8.safetensors.json").read_text())["bit_widths"]["weight"] == 8


# --------------------------------------------------------------------------- command line
def _parser():
    parser = argparse.ArgumentParser(prog="spikebridge")
    add_export_command(parser.add_subparsers(dest="command"))
    return parser


def test_export_help_explains_both_formats(capsys):
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["export", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--format" in out and "nir" in out and "int8" in out and "sidecar" in out


def test_export_command_writes_both_formats(digits_model, tmp_path, capsys):
    model, _ = digits_model
    path = tmp_path / "run" / "model.safetensors"
    save_tensors(path, model.tensors(), {"rule": "colanet", "learn_mode": "continuous", **model.metadata()})
    for fmt, out in (("nir", tmp_path / "x.nir"), ("int8", tmp_path / "x.int8.safetensors")):
        args = _parser().parse_args(["export", "--model", str(path), "--format", fmt, "--out", str(out)])
        assert args.func(args) == 0 and out.is_file() and sidecar_path(out).is_file()
    printed = capsys.readouterr().out
    assert "bytes" in printed
    assert "hardware fit" in printed and all(chip in printed for chip in ("Loihi 2", "TrueNorth"))
    args = _parser().parse_args(["export", "--model", str(path)])  # default: nir beside the model
    assert args.func(args) == 0 and (tmp_path / "run" / "model.nir").is_file()


def test_export_command_errors(pixel_digits, tmp_path):
    args = _parser().parse_args(["export", "--model", str(tmp_path / "nope.safetensors")])
    with pytest.raises(SpikebridgeError, match="not found"):
        args.func(args)
    xt, _, yt, _ = pixel_digits
    learner = train(create_learner("rstdp", xt.shape[1], 10), xt[:100], yt[:100], epochs=1, progress=False)[0]
    path = tmp_path / "rstdp.safetensors"
    save_tensors(path, learner.tensors(), learner.metadata())
    args = _parser().parse_args(["export", "--model", str(path), "--format", "int8"])
    with pytest.raises(SpikebridgeError, match="CoLaNET"):
        args.func(args)


@pytest.mark.parametrize("target", ["snntorch", "norse"])
def test_peer_targets_import_back_to_the_same_classifier(digits_model, tmp_path, target):
    model, val = digits_model
    export_nir(model, tmp_path / "p.nir", target=target)
    back = import_nir(tmp_path / "p.nir")
    assert torch.equal(back.predict_spiking(val.features), model.predict_spiking(val.features))


# --------------------------------------------------------------------------- issue 21: outputs never overwrite inputs
@pytest.mark.parametrize("fmt", ["int8", "nir", "akida"])
def test_export_refuses_an_output_that_is_an_input(fmt, pixel_ensemble, tmp_path):
    import importlib.util

    if fmt == "akida" and importlib.util.find_spec("akida") is None:
        pytest.skip("akida not installed")
    model = pixel_ensemble[0]
    path = tmp_path / "run" / "model.safetensors"
    save_tensors(path, model.tensors(), {"rule": "colanet", "learn_mode": "continuous", **model.metadata()})
    before = path.read_bytes()
    for out, expected in ((path, "would overwrite the input"), (tmp_path / "run", "is a folder")):
        args = _parser().parse_args(["export", "--model", str(path), "--format", fmt, "--out", str(out)])
        with pytest.raises(SpikebridgeError, match=expected):
            args.func(args)
    alias = tmp_path / "alias.safetensors"
    alias.symlink_to(path)  # the same file under another name
    args = _parser().parse_args(["export", "--model", str(path), "--format", fmt, "--out", str(alias)])
    with pytest.raises(SpikebridgeError, match="would overwrite the input"):
        args.func(args)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]


def test_export_refuses_an_output_whose_sidecar_is_the_model(pixel_ensemble, tmp_path):
    model = pixel_ensemble[0]
    path = tmp_path / "x.nir.json"  # the sidecar name of x.nir
    save_tensors(path, model.tensors(), {"rule": "colanet", "learn_mode": "continuous", **model.metadata()})
    before = path.read_bytes()
    args = _parser().parse_args(["export", "--model", str(path), "--out", str(tmp_path / "x.nir")])
    with pytest.raises(SpikebridgeError, match=r"would overwrite the input .*x\.nir\.json \(with its sidecar\)"):
        args.func(args)
    assert path.read_bytes() == before and not (tmp_path / "x.nir").exists()
