"""benchmarks/speed.py compares the same dynamics: the Norse and snnTorch cell configurations of
spikebridge.peer_cells fire exactly the spikes of spikebridge's LIF loop (no lateral inhibition)
on the same currents; its val batch is spikebridge.energy.balanced_sample."""

import math

import pytest
import torch

from spikebridge import peer_cells
from spikebridge.energy import balanced_sample
from spikebridge.neurons import PopulationParameters, lif_population

BETA, THETA, DT = math.exp(-1 / 20), 1.3, 1e-3


def currents(high: float, seed: int = 0) -> torch.Tensor:
    """``[T, B, J]`` currents uniform in ``[-0.5, high) * theta``."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(24, 16, 12, generator=g) * (high + 0.5) - 0.5) * THETA


def our_counts(currents: torch.Tensor) -> torch.Tensor:
    """Spike counts ``[B, J]`` of spikebridge's LIF loop without lateral inhibition."""
    return lif_population(currents.unsqueeze(0), PopulationParameters(BETA, torch.tensor([THETA]), 0.0)).counts[0]


@torch.no_grad()
@pytest.mark.parametrize("high", [0.4, 0.95, 3.0])
def test_norse_lifbox_fires_our_spikes(high):
    pytest.importorskip("norse")
    cell, gain = peer_cells.norse_lifbox(BETA, THETA, DT)
    assert gain == pytest.approx(1 - BETA, rel=1e-6)
    c = currents(high)
    ours = our_counts(c)
    assert ours.sum() > 0
    assert torch.equal(peer_cells.norse_run(cell, c / gain).sum(0), ours)


@torch.no_grad()
@pytest.mark.parametrize("high", [0.4, 0.95])
def test_snntorch_leaky_fires_our_spikes(high):
    # below (2 - beta) theta per step: one spike a step suffices, where snnTorch's reset equals ours
    pytest.importorskip("snntorch")
    c = currents(high, seed=1)
    ours = our_counts(c)
    assert ours.sum() > 0
    assert torch.equal(peer_cells.snntorch_run(peer_cells.snntorch_leaky(BETA, THETA), c).sum(0), ours)


def test_balanced_sample_is_seeded_and_balanced():
    import numpy as np

    labels = np.repeat(np.arange(10), 40)
    a, b = balanced_sample(labels, 256, 0), balanced_sample(labels, 256, 0)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 256
    assert set(np.bincount(labels[a]).tolist()) == {25, 26}
