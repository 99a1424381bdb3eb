"""The int8 model with ``dynamics="loihi"`` run in Intel's Lava (its own Python 3.10 environment,
``$SPIKEBRIDGE_LAVA_PYTHON``, built by ``.ci/lava-env``; skipped without it, failed without it
under CI=true, where .ci/run builds it) gives the spikes of our own simulation, bit for bit."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from spikebridge.colanet import CoLaNETConfig
from spikebridge.errors import SpikebridgeError
from spikebridge.deploy.fixed_point import ACT_SHIFT, Int8CoLaNET, wrap24_loihi
from spikebridge.deploy.lava_host import LAVA_ENV, copies_for, lava_python, run_lava
from spikebridge.learner import create_learner
from spikebridge.training import train


@pytest.fixture(scope="module")
def pixel_models(pixel_digits):
    """CoLaNET trained on raw 64-pixel digits, one member and an ensemble of two."""
    xtr, xva, ytr, yva = pixel_digits
    out = {}
    for ensemble in (1, 2):
        learner = create_learner("colanet", xtr.shape[1], 10, seed=0, steps=32, config=CoLaNETConfig(ensemble=ensemble))
        learner, _ = train(learner, xtr, ytr, epochs=2, progress=False)
        out[ensemble] = learner.model
    return out, xva, yva


def require_lava():
    python = lava_python()
    if python is None or not python.exists():
        missing = (f"no Lava environment (${LAVA_ENV}); build one with .ci/lava-env and set ${LAVA_ENV} to the "
                   "python it prints")
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI=true: .ci/run builds it, so this test must run)")
        pytest.skip(missing)
    return python


def test_loihi_step_arithmetic():
    """Lava's LIF, written down: 6-bit aligned input, one 24-bit wrap, clip, strict threshold, reset to 0."""
    m = 1 << 23
    x = torch.tensor([m, m + 1, -m, -m + 1, 3 * m], dtype=torch.int64)
    assert wrap24_loihi(x).tolist() == [m, m + 1 - 2 * m, m, -m + 1, m]  # Lava's single wrap, as written
    q = Int8CoLaNET(torch.ones(3, 1, dtype=torch.int8), 0, torch.tensor([10], dtype=torch.int32),
                    torch.tensor([0], dtype=torch.int32), 0, torch.zeros(3, dtype=torch.long), torch.arange(3),
                    torch.arange(3), 3, None, dynamics="loihi", reset="zero")
    theta = torch.full((3,), 10, dtype=torch.int64)
    v, s = q.step_loihi(torch.zeros(3, dtype=torch.int64), torch.tensor([10, 11, -(1 << 20)]), theta)
    assert s.tolist() == [False, True, False]  # v = 10 * 2**6 equals the threshold: no spike (strict)
    assert v.tolist() == [10 << ACT_SHIFT, 0, -(m - 1)]  # reset to zero; clipped at -(2**23 - 1)


def test_loihi_quantisation_fits_lava_registers(pixel_models):
    models, xva, yva = pixel_models
    for model in models.values():
        q = Int8CoLaNET.quantise(model, dynamics="loihi")
        assert q.reset == "zero" and int(q.threshold.max()) < 1 << 17  # Lava's 17-bit vth
        assert 3 * int(q.lateral.max()) < 1 << 17  # three simultaneous inhibitions fit the 24-bit current
        top = float((q.predict(xva) == torch.as_tensor(yva)).double().mean())
        base = float((Int8CoLaNET.quantise(model).predict(xva) == torch.as_tensor(yva)).double().mean())
        assert top >= base - 0.02, (top, base)
    with pytest.raises(SpikebridgeError, match="unknown dynamics"):
        Int8CoLaNET.quantise(models[1], dynamics="truenorth")


def test_loihi_model_round_trip(pixel_models, tmp_path):
    models, xva, _ = pixel_models
    q = Int8CoLaNET.quantise(models[2], dynamics="loihi")
    summary = q.save(tmp_path / "m.int8.safetensors")
    assert "Loihi CUBA LIF" in summary["dynamics"] and summary["dynamics_kind"] == "loihi"
    back = Int8CoLaNET.load(tmp_path / "m.int8.safetensors")
    assert back.dynamics == "loihi" and torch.equal(back.predict(xva[:50]), q.predict(xva[:50]))


def test_run_lava_refuses_the_default_dynamics(pixel_models):
    models, xva, _ = pixel_models
    q = Int8CoLaNET.quantise(models[1])
    assert copies_for(q) == 8  # a small network: the most copies side by side
    with pytest.raises(SpikebridgeError, match="dynamics 'loihi' only"):
        run_lava(q, q.spikes_for(xva[:2]), python=__file__)  # any existing file: refused before it is run


@pytest.mark.slow  # a second Python running Lava
@pytest.mark.parametrize("ensemble", [1, 2])
def test_lava_spikes_equal_ours(pixel_models, ensemble):
    python = require_lava()
    models, xva, _ = pixel_models
    q = Int8CoLaNET.quantise(models[ensemble], dynamics="loihi")
    assert int(q.lateral.max()) >= 128  # the lateral weight spans several base-128 Dense digits
    x = q.spikes_for(xva[:20])
    ours = q.simulate(x)
    lava, report = run_lava(q, x, python, chunk=12, copies=3)  # 2 Lava runs, a padded last slot
    assert report["versions"]["lava-nc"] == "0.10.0" and report["python"].startswith("3.10")
    assert int(ours.counts.sum()) > 20 and bool((ours.counts.sum(0) > 0).sum() > 1)  # real spiking, several neurons
    assert torch.equal(lava.counts, ours.counts)
    assert torch.equal(lava.first_spike, ours.first_spike)
    assert torch.equal(lava.v_final, ours.v_final)
    assert report["gap_spikes"] == 0
    assert torch.equal(q.scores(lava).argmax(1), q.scores(ours).argmax(1))


@pytest.mark.parametrize("argv, message", [
    (["--format", "nir", "--dynamics", "loihi"], "--dynamics does not apply to --format nir; leave it out"),
    (["--format", "int8", "--dynamics", "loihi", "--reset", "subtract"],
     "--dynamics loihi resets to zero (Lava's LIF); leave out --reset subtract"),
])
def test_export_command_refuses_bad_dynamics_options(tmp_path, argv, message):
    import argparse

    from spikebridge.cli.export import add_export_command

    parser = argparse.ArgumentParser()
    add_export_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "--model", str(tmp_path / "absent.safetensors"), *argv])
    with pytest.raises(SpikebridgeError) as err:
        args.func(args)
    assert str(err.value) == message


def test_export_command_writes_the_loihi_model(pixel_models, tmp_path, capsys):
    import argparse

    from spikebridge.cli.export import add_export_command
    from spikebridge.io import save_tensors

    models, xva, _ = pixel_models
    model = models[1]
    path = tmp_path / "model.safetensors"
    save_tensors(path, model.tensors(), {"rule": "colanet", "learn_mode": "continuous", **model.metadata()})
    parser = argparse.ArgumentParser()
    add_export_command(parser.add_subparsers(dest="command"))
    out = tmp_path / "m.int8.safetensors"
    args = parser.parse_args(["export", "--model", str(path), "--format", "int8", "--dynamics", "loihi", "--out", str(out)])
    assert args.func(args) == 0 and "int8 model" in capsys.readouterr().out
    back = Int8CoLaNET.load(out)
    assert back.dynamics == "loihi" and back.reset == "zero"
    assert torch.equal(back.predict(xva), Int8CoLaNET.quantise(model, dynamics="loihi").predict(xva))
