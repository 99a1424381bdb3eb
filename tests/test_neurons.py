import math

import pytest
import torch

from spikebridge.neurons import (LIF, LIFParameters, PopulationParameters, initial_state, lif_population, lif_run,
                                  lif_step, run_population)


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


def _reference_step(current, state, p):
    """A stand-alone LIF step (refractoriness written beside the update): the reference the
    delegating entry points must reproduce bit for bit."""
    free = state.refractory_left <= 0
    v = torch.where(free, p.beta * state.v + current, state.v)
    spikes = (v >= p.threshold) & free
    # (the bool spikes multiply the threshold in v's dtype)
    v = v - p.threshold * spikes.to(v.dtype) if p.reset == "subtract" else v.masked_fill(spikes, 0.0)
    left = torch.where(spikes, torch.full_like(state.refractory_left, p.refractory), state.refractory_left - 1)
    return spikes.to(current.dtype), type(state)(v, left.clamp_min(0))


@pytest.mark.parametrize("refractory", [0, 1, 3])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lif_run_and_step_equal_the_plain_refractory_loop(refractory, reset, dtype):
    p = LIFParameters(tau=15e-3, dt=1e-3, threshold=0.7, reset=reset, refractory=refractory)
    currents = (torch.rand(40, 3, 4, generator=torch.Generator().manual_seed(2)) * 0.6).to(dtype)
    state = initial_state((3, 4), dtype=dtype)
    ref = []
    for c in currents:
        s, state = _reference_step(c, state, p)
        ref.append(s)
    out, final = lif_run(currents[:25], p)  # then continue from the state it returns
    step_spikes, final = lif_step(currents[25], final, p)
    rest, final = lif_run(currents[26:], p, final)
    assert torch.equal(torch.cat([out, step_spikes[None], rest]), torch.stack(ref))
    assert torch.equal(final.v, state.v) and torch.equal(final.refractory_left, state.refractory_left.to(torch.int32))
    assert torch.stack(ref).sum() > 5


def test_population_refractory_option_and_its_checks():
    currents = torch.full((1, 9, 1, 2), 1.0)
    rec = lif_population(currents, PopulationParameters(1.0, torch.ones(1), reset="zero", refractory=2), keep_spikes=True)
    assert rec.spikes[:, 0, 0, 0].tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0] and rec.counts[0, 0].tolist() == [3, 3]
    assert rec.refractory_left[0, 0].tolist() == [0, 0]  # last spike at step 7: refractory for steps 8, 9
    after8 = lif_population(currents[:, :8], PopulationParameters(1.0, torch.ones(1), reset="zero", refractory=2))
    assert after8.refractory_left[0, 0].tolist() == [1, 1]
    assert lif_population(currents, PopulationParameters(1.0, torch.ones(1))).refractory_left is None  # not tracked
    with pytest.raises(ValueError, match="refractory must be a whole number of steps >= 0, not -1"):
        lif_population(currents, PopulationParameters(1.0, torch.ones(1), refractory=-1))
    with pytest.raises(ValueError, match="refractory"):
        LIFParameters(refractory=1.5)
    state = initial_state((1, 1, 2))
    with pytest.raises(ValueError, match="lateral inhibition"):
        lif_population(currents, PopulationParameters(1.0, torch.ones(1), lateral=1.0), state=state)
