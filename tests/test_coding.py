import numpy as np
import pytest
import torch

from spikebridge.coding import RateNormaliser, bernoulli_spikes, encode, regular_spikes


def test_normaliser_maps_percentile_to_one_and_clips():
    x = np.random.default_rng(0).gamma(2.0, 1.0, size=(5000, 7)).astype(np.float32)
    norm = RateNormaliser.fit(x, "percentile", percentile=99.0)
    r = norm(x)
    assert r.min() >= 0 and r.max() <= 1
    assert torch.allclose((r >= 1).float().mean(0), torch.full((7,), 0.01), atol=0.005)


def test_regular_coder_counts_are_rounded_rates_and_evenly_spaced():
    rates = torch.tensor([[0.0, 0.1, 0.25, 0.5, 0.73, 1.0]])
    s = regular_spikes(rates, 40)
    assert s.shape == (40, 1, 6) and s.dtype == torch.uint8
    assert s.sum(0).squeeze().tolist() == [0, 4, 10, 20, 29, 40]
    gaps = torch.diff(torch.nonzero(s[:, 0, 2]).squeeze())
    assert set(gaps.tolist()) == {4}


def test_bernoulli_counts_converge_to_rates_and_are_seeded():
    rates = torch.tensor([[0.05, 0.3, 0.8]])
    s = encode(rates, 20000, "bernoulli", seed=3)
    assert torch.allclose(s.float().mean(0), rates, atol=0.01)
    assert torch.equal(s, encode(rates, 20000, "bernoulli", seed=3))
    assert not torch.equal(s, encode(rates, 20000, "bernoulli", seed=4))


def test_max_rate_and_dt_scale_probability():
    rates = torch.full((1, 1), 0.5)
    s = bernoulli_spikes(rates, 20000, max_rate=200.0, dt=1e-3, generator=torch.Generator().manual_seed(0))
    assert abs(s.float().mean().item() - 0.1) < 0.01


def test_unknown_coder():
    with pytest.raises(ValueError, match="unknown coder"):
        encode(torch.zeros(1, 1), 4, "latency")


def test_onoff_channels_code_both_signs_and_saturate():
    x = np.random.default_rng(0).normal(5.0, 2.0, size=(4000, 3)).astype(np.float32)
    norm = RateNormaliser.fit(x, "onoff", saturation=3.0)
    assert norm.n_channels == 6
    probe = torch.tensor([[5.0, 11.0, -1.0]])  # z = 0, +3, -3 (approximately)
    r = norm(probe)[0]
    assert r[0] < 0.02 and r[3] < 0.02  # at the mean both channels are (nearly) silent
    assert r[1] > 0.97 and r[4] == 0  # far above the mean: ON saturates, OFF silent
    assert r[5] > 0.97 and r[2] == 0  # far below: OFF saturates, ON silent
