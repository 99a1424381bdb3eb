import math

import pytest
import torch

from conftest import reference_population
from spikebridge.neurons import PopulationParameters, lif_population


def _one_neuron(currents, beta, threshold=1.0, **kw):
    """``currents [T]`` through one neuron of :func:`lif_population` (no lateral inhibition)."""
    params = PopulationParameters(beta, torch.tensor([threshold]), **kw)
    return lif_population(currents.view(1, -1, 1, 1), params, keep_spikes=True)


def test_zero_input_decays_exactly():
    beta = math.exp(-1e-3 / 10e-3)
    for k in range(1, 6):
        currents = torch.zeros(k + 1)
        currents[0] = 0.8
        rec = _one_neuron(currents, beta)
        assert rec.counts.sum() == 0
        assert rec.v_final.item() == pytest.approx(0.8 * math.exp(-k * 0.1), rel=1e-6)


@pytest.mark.parametrize("current", [0.07, 0.13, 0.3, 0.55])
def test_constant_input_fires_at_analytic_rate(current):
    beta = math.exp(-1e-3 / 20e-3)
    # steps to reach threshold from rest: smallest k with I (1 - beta^k) / (1 - beta) >= 1
    k_star = math.ceil(math.log(1 - (1 - beta) / current) / math.log(beta))
    spikes = _one_neuron(torch.full((200,), current), beta, reset="zero").spikes
    times = torch.nonzero(spikes.view(-1)).squeeze(1) + 1
    assert times[0].item() == k_star
    assert set(torch.diff(times).tolist()) == {k_star}


def test_if_neuron_subtract_reset_keeps_residue_and_rate():
    rec = _one_neuron(torch.full((100,), 0.3), 1.0, reset="subtract")  # integrate-and-fire: beta = 1
    assert rec.counts.sum().item() == 30  # floor(100 * 0.3)
    assert rec.v_final.item() == pytest.approx(100 * 0.3 - 30, abs=1e-4)


def test_reset_modes():
    zero = _one_neuron(torch.tensor([1.5]), 1.0, reset="zero")
    assert zero.counts.item() == 1 and zero.v_final.item() == 0.0
    sub = _one_neuron(torch.tensor([1.5]), 1.0, reset="subtract")
    assert sub.counts.item() == 1 and sub.v_final.item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="reset must be 'subtract' or 'zero', not 'hold'"):
        _one_neuron(torch.tensor([1.5]), 1.0, reset="hold")


def test_lateral_inhibition_gates_the_population():
    currents = torch.rand(1, 25, 3, 5, generator=torch.Generator().manual_seed(1)) * 0.5
    beta = math.exp(-1 / 20)
    free = lif_population(currents, PopulationParameters(beta, torch.ones(1)))
    gated = lif_population(currents, PopulationParameters(beta, torch.ones(1), lateral=10.0))
    assert gated.counts.sum() < free.counts.sum()


def _reference_step(current, v, left, beta, threshold, reset, refractory):
    """A stand-alone LIF step (refractoriness written beside the update): the reference
    :func:`lif_population` must reproduce bit for bit."""
    free = left <= 0
    v = torch.where(free, beta * v + current, v)
    spikes = (v >= threshold) & free
    # (the bool spikes multiply the threshold in v's dtype)
    v = v - threshold * spikes.to(v.dtype) if reset == "subtract" else v.masked_fill(spikes, 0.0)
    left = torch.where(spikes, torch.full_like(left, refractory), left - 1)
    return spikes.to(current.dtype), v, left.clamp_min(0)


@pytest.mark.parametrize("refractory", [0, 1, 3])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_population_equals_the_plain_refractory_loop(refractory, reset, dtype):
    beta, threshold = math.exp(-1e-3 / 15e-3), 0.7
    currents = (torch.rand(40, 3, 4, generator=torch.Generator().manual_seed(2)) * 0.6).to(dtype)
    v, left = torch.zeros(3, 4, dtype=dtype), torch.zeros(3, 4, dtype=torch.int32)
    ref = []
    for c in currents:
        s, v, left = _reference_step(c, v, left, beta, torch.tensor(threshold, dtype=dtype), reset, refractory)
        ref.append(s)
    params = PopulationParameters(beta, torch.tensor([threshold], dtype=dtype), reset=reset, refractory=refractory)
    rec = lif_population(currents.reshape(1, 40, 1, 12), params, keep_spikes=True)
    assert torch.equal(rec.spikes.reshape(40, 3, 4), torch.stack(ref))
    assert torch.equal(rec.v_final.reshape(3, 4), v)
    if refractory:
        assert torch.equal(rec.refractory_left.reshape(3, 4), left)
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
        lif_population(currents, PopulationParameters(1.0, torch.ones(1), refractory=1.5))


@pytest.mark.parametrize("lateral", [0.0, 2.0])
@pytest.mark.parametrize("with_silent", [False, True])
@pytest.mark.parametrize("reset,strict", [("subtract", False), ("zero", True)])
def test_population_bit_identical(lateral, with_silent, reset, strict):
    g = torch.Generator().manual_seed(0)
    currents = torch.randn(2, 20, 7, 9, generator=g)
    theta = torch.tensor([0.7, 1.3])
    silent = (torch.rand(2, 9, generator=g) < 0.3) if with_silent else None
    ref = reference_population(currents, 0.9, theta, lateral, silent, reset, strict)
    rec = lif_population(currents, PopulationParameters(0.9, theta, lateral, reset, strict, silent), keep_spikes=True)
    for a, b in zip(ref, rec):
        assert torch.equal(a, b)
