"""Proposed tests/test_fastsim.py: the fast paths reproduce CoLaNET.simulate / run_population."""
import numpy as np
import pytest
import torch

from spikebridge.coding import encode
from spikebridge.colanet import CoLaNET, CoLaNETConfig
from spikebridge.fastsim import event_lists, run_population_fast, simulate_fast, spike_currents
from spikebridge.neurons import run_population


@pytest.mark.parametrize("lateral", [0.0, 2.0])
@pytest.mark.parametrize("with_silent", [False, True])
def test_population_bit_identical(lateral, with_silent):
    g = torch.Generator().manual_seed(0)
    currents = torch.randn(2, 20, 7, 9, generator=g)
    theta = torch.tensor([0.7, 1.3])
    silent = (torch.rand(2, 9, generator=g) < 0.3) if with_silent else None
    ref = run_population(currents, 0.9, theta, lateral, silent, True)
    fast = run_population_fast(currents, 0.9, theta, lateral, silent, True)
    for a, b in zip(ref, fast):
        assert torch.equal(a, b)


@pytest.mark.parametrize("ensemble", [1, 3])
@pytest.mark.parametrize("per_member", [False, True])
def test_simulate_fast_matches_simulate(pixel_digits, ensemble, per_member):
    xtr, xva, ytr, _ = pixel_digits
    model = CoLaNET(64, 10, CoLaNETConfig(microcolumns=6, ensemble=ensemble, coder="bernoulli"))
    model.fit_normaliser(xtr)
    r = model.rates(xtr)
    y = torch.as_tensor(ytr)
    for b in range(0, len(r), 16):
        model.learn(r[b : b + 16], y[b : b + 16])
    model.calibrate(r)
    if per_member:
        spikes = encode(model.rates(xva[:200]).unsqueeze(0).expand(ensemble, -1, -1), 24, "bernoulli", seed=1)
    else:
        spikes = model.spikes_for(xva[:200], 24, seed=1)
    ref = model.simulate(spikes, record_raster=True)
    dense = simulate_fast(model, spikes, "dense", record_raster=True)
    for name in ("counts", "first_spike", "v_final", "input_spikes", "raster"):
        assert torch.equal(getattr(ref, name), getattr(dense, name)), name
    event = simulate_fast(model, spikes, "event")
    assert torch.equal(model.column_decision(ref), model.column_decision(event))
    assert torch.allclose(ref.v_final, event.v_final, atol=1e-4)


def test_event_currents_equal_dense_and_event_lists():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(5, 6, 50, generator=g) < 0.1).to(torch.uint8)
    w = torch.rand(2, 7, 50, generator=g)
    assert torch.allclose(spike_currents(x, w, "dense"), spike_currents(x, w, "event"), atol=1e-5)
    cols, offsets = event_lists(x)
    assert len(cols) == int(x.sum()) and offsets.shape == (30,)
    with pytest.raises(ValueError):
        spike_currents(x, w, "sparse")
