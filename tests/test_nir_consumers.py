"""NIR consumers beyond snnTorch/Norse: Rockpool (main environment) and Sinabs (its own
environment, ``/work/venvs/sinabs`` or ``$SPIKEBRIDGE_SINABS_PYTHON``, built by ``.ci/sinabs-env``;
skipped without it, failed without it under CI=true, where .ci/run builds it)."""

import os

import pytest
import torch

from spikebridge import create_learner, train
from spikebridge.deploy.network import network_of
from spikebridge.colanet import CoLaNETConfig
from spikebridge.deploy import nir_consumers as nc

nir = pytest.importorskip("nir")


@pytest.fixture(scope="module")
def ensemble(pixel_digits):
    """A trained 2-member ensemble (different thresholds, lateral inhibition) and val input spikes."""
    xt, xv, yt, yv = pixel_digits
    learner = create_learner("colanet", xt.shape[1], 10, config=CoLaNETConfig(ensemble=2, microcolumns=3))
    model = train(learner, xt, yt, epochs=2, batch_size=32, progress=False)[0].model
    assert model.threshold[0] != model.threshold[1]
    return model, model.spikes_for(xv[:120], 32)


def test_reference_of_the_recurrent_graph_is_our_simulation(ensemble):
    model, spikes = ensemble
    net = network_of(model)
    out, v = nc.reference_spikes(net, spikes, "recurrent", model.config.lateral_inhibition)
    rec = model.simulate(spikes, method="dense")
    assert torch.equal(out.sum(0), rec.counts[net.member, :, net.row].T)
    assert torch.equal(nc.decide(net, out, 32, v), model.column_decision(rec))


def test_feedforward_inhibition_reference_by_hand(ensemble):
    """The output population's currents are the input's minus g theta times the other neurons'
    spikes of the uninhibited copy in the same step (one member at a time)."""
    model, spikes = ensemble
    net = network_of(model)
    g = model.config.lateral_inhibition
    drive, _ = nc.reference_spikes(net, spikes, "no_lateral", g)
    out, _ = nc.reference_spikes(net, spikes, "feedforward_inhibition", g)
    lateral = net.lateral_matrix()
    j = int(torch.nonzero(net.member == 1)[0])
    others = (net.member == 1) & (torch.arange(net.size) != j)
    assert torch.all(lateral[j, others] == -g * net.threshold[1]) and torch.all(lateral[j, ~others] == 0)
    assert out.sum() < drive.sum()  # inhibition removes spikes


@pytest.mark.slow  # importing Rockpool takes ~10 s
def test_rockpool_runs_the_exported_dynamics(ensemble, tmp_path):
    pytest.importorskip("rockpool")
    pytest.importorskip("nirtorch")
    model, spikes = ensemble
    net = network_of(model)
    path = tmp_path / "rockpool.nir"
    nir.write(str(path), nc.variant_graph(net, model.config.dt, "rockpool"))
    out, v = nc.run_rockpool(path, spikes, single_spike=True, batch=50)
    ref, ref_v = nc.reference_spikes(net, spikes, "recurrent", model.config.lateral_inhibition)
    assert torch.equal(out.sum(0), ref.sum(0))  # LIFTorch with has_rec: our neuron, one step late inhibition
    assert torch.allclose(v, ref_v, rtol=1e-4, atol=1e-4 * float(net.threshold.max()))
    ours = model.column_decision(model.simulate(spikes))
    assert float((nc.decide(net, out, 32, v) == ours).double().mean()) >= 0.99


@pytest.mark.slow  # a second Python with torch and Sinabs
def test_sinabs_reads_the_feedforward_graphs(ensemble, tmp_path):
    python = nc.sinabs_python(None)
    if python is None:
        missing = (f"no Sinabs environment (${nc.SINABS_ENV} or {nc.SINABS_PYTHON}); build one with "
                   ".ci/sinabs-env and set $SPIKEBRIDGE_SINABS_PYTHON to the python it prints")
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI=true: .ci/run builds it, so this test must run)")
        pytest.skip(missing)
    model, spikes = ensemble
    net = network_of(model)
    g = model.config.lateral_inhibition
    jobs = []
    for variant in ("no_lateral", "feedforward_inhibition"):
        path = tmp_path / f"{variant}.nir"
        nir.write(str(path), nc.variant_graph(net, model.config.dt, variant))
        assert nc.without_v_reset(path)  # NIR 1.0.4 (Sinabs' pin) refuses the field
        jobs.append({"name": variant, "graph": str(path), "single_spike": True, "readout": "lif", "batch": 60})
    report = nc.run_sinabs(python, jobs, spikes.numpy(), tmp_path, timeout=600)
    assert report["versions"]["sinabs"] and report["versions"]["nir"]  # read in the Sinabs environment
    for job, entry in zip(jobs, report["runs"]):
        assert entry["status"] == "ran", entry
        ref, ref_v = nc.reference_spikes(net, spikes, job["name"], g)
        counts = torch.from_numpy(entry["spikes"]).sum(0)
        assert float((counts == ref.sum(0)).double().mean()) >= 0.999, job["name"]
        close = torch.isclose(torch.from_numpy(entry["v"]), ref_v, rtol=1e-4, atol=1e-4 * float(net.threshold.max()))
        assert float(close.double().mean()) >= 0.999, job["name"]  # the final membrane, for the last tie-break
