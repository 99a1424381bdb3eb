"""benchmarks/speed.py compares the same dynamics: its Norse and snnTorch cell configurations
fire exactly the spikes of spikebridge's LIF loop (no lateral inhibition) on the same currents."""

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import speed  # noqa: E402

BETA, THETA, DT = math.exp(-1 / 20), 1.3, 1e-3


def currents(high: float, seed: int = 0) -> torch.Tensor:
    """``[T, B, J]`` currents uniform in ``[-0.5, high) * theta``."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(24, 16, 12, generator=g) * (high + 0.5) - 0.5) * THETA


@torch.no_grad()
@pytest.mark.parametrize("high", [0.4, 0.95, 3.0])
def test_norse_lifbox_fires_our_spikes(high):
    pytest.importorskip("norse")
    cell, gain = speed.norse_lifbox(BETA, THETA, DT)
    assert gain == pytest.approx(1 - BETA, rel=1e-6)
    c = currents(high)
    ours = speed.our_counts(c, BETA, THETA)
    assert ours.sum() > 0
    assert torch.equal(speed.norse_run(cell, c / gain).sum(0), ours)


@torch.no_grad()
@pytest.mark.parametrize("high", [0.4, 0.95])
def test_snntorch_leaky_fires_our_spikes(high):
    # below (2 - beta) theta per step: one spike a step suffices, where snnTorch's reset equals ours
    pytest.importorskip("snntorch")
    c = currents(high, seed=1)
    ours = speed.our_counts(c, BETA, THETA)
    assert ours.sum() > 0
    assert torch.equal(speed.snntorch_run(speed.snntorch_leaky(BETA, THETA), c).sum(0), ours)


def test_stratified_batch_is_seeded_and_balanced():
    import numpy as np

    labels = np.repeat(np.arange(10), 40)
    a, b = speed.stratified_batch(labels, 256, 0), speed.stratified_batch(labels, 256, 0)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 256
    assert set(np.bincount(labels[a]).tolist()) == {25, 26}
