import math

import pytest
import torch

from spikebridge.neurons import LIF, LIFParameters, initial_state, lif_run, lif_step, run_population


def test_zero_input_decays_exactly():
    p = LIFParameters(tau=10e-3, dt=1e-3)
    state = initial_state((1,))._replace(v=torch.tensor([0.8]))
    for k in range(1, 6):
        _, state = lif_step(torch.zeros(1), state, p)
        assert state.v.item() == pytest.approx(0.8 * math.exp(-k * 0.1), rel=1e-6)


@pytest.mark.parametrize("current", [0.07, 0.13, 0.3, 0.55])
def test_constant_input_fires_at_analytic_rate(current):
    p = LIFParameters(tau=20e-3, dt=1e-3, reset="zero")
    beta = p.beta
    # steps to reach threshold from rest: smallest k with I (1 - beta^k) / (1 - beta) >= 1
    k_star = math.ceil(math.log(1 - (1 - beta) / current) / math.log(beta))
    spikes, _ = lif_run(torch.full((200, 1), current), p)
    times = torch.nonzero(spikes[:, 0]).squeeze(1) + 1
    assert times[0].item() == k_star
    assert set(torch.diff(times).tolist()) == {k_star}


def test_if_neuron_subtract_reset_keeps_residue_and_rate():
    p = LIFParameters.integrate_and_fire(threshold=1.0, reset="subtract")
    spikes, state = lif_run(torch.full((100, 1), 0.3), p)
    assert spikes.sum().item() == 30  # floor(100 * 0.3)
    assert state.v.item() == pytest.approx(100 * 0.3 - 30, abs=1e-4)


def test_reset_modes_and_refractory():
    zero = LIFParameters(tau=math.inf, reset="zero")
    sub = LIFParameters(tau=math.inf, reset="subtract")
    s, st = lif_step(torch.tensor([1.5]), initial_state((1,)), zero)
    assert s.item() == 1 and st.v.item() == 0.0
    s, st = lif_step(torch.tensor([1.5]), initial_state((1,)), sub)
    assert s.item() == 1 and st.v.item() == pytest.approx(0.5)
    refr = LIFParameters(tau=math.inf, reset="zero", refractory=2)
    spikes, _ = lif_run(torch.full((9, 1), 1.0), refr)
    assert spikes[:, 0].tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0]


def test_bad_parameters():
    with pytest.raises(ValueError):
        LIFParameters(reset="hold")
    with pytest.raises(ValueError):
        LIFParameters(threshold=0)


def test_module_wrapper_matches_pure_function():
    p = LIFParameters()
    currents = torch.rand(30, 4, generator=torch.Generator().manual_seed(0))
    layer = LIF(p)
    out = torch.stack([layer(c) for c in currents])
    ref, _ = lif_run(currents, p)
    assert torch.equal(out, ref)


def test_population_matches_single_neuron_without_inhibition_and_gates_with_it():
    currents = torch.rand(1, 25, 3, 5, generator=torch.Generator().manual_seed(1)) * 0.5
    beta = math.exp(-1 / 20)
    rec = run_population(currents, beta, torch.ones(1))
    ref, _ = lif_run(currents[0], LIFParameters(tau=20e-3, dt=1e-3, reset="subtract"))
    assert torch.equal(rec.counts[0], ref.sum(0))
    gated = run_population(currents, beta, torch.ones(1), lateral=10.0)
    assert gated.counts.sum() < rec.counts.sum()
