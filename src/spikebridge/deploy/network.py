"""The deployable network: the inference path of a trained CoLaNET as plain data.

Unrecruited microcolumns (``model.active == False``) are silent and are dropped, so the network
holds ``J' = sum_k (recruited neurons of member k)`` neurons, members stacked one after the other
(block-diagonal population). The effective weights ``W - gamma`` fold in the feedforward
inhibitory interneuron. Its decision is [`readout_scores()`][spikebridge.deploy.network.readout_scores], the one column readout of
[`readout`][spikebridge.readout], applied to the exported neurons.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..colanet import CoLaNET
from ..errors import SpikebridgeError
from ..readout import READOUT_RULE, column_scores

__all__ = ["Network", "READOUT_RULE", "network_of", "readout_scores"]


@dataclass
class Network:
    """The inference path of a CoLaNET with silent neurons dropped (members stacked)."""

    weights: torch.Tensor  # [J', N] float32, W - gamma
    threshold: torch.Tensor  # [K] float32
    lateral: torch.Tensor  # [K] float32, g * theta exactly as lif_population computes it
    member: torch.Tensor  # [J'] int64
    row: torch.Tensor  # [J'] int64, index in the member's J = C * M neurons
    column: torch.Tensor  # [J'] int64
    beta: float
    n_classes: int

    @property
    def size(self) -> int:
        return len(self.member)

    def neuron_threshold(self) -> torch.Tensor:
        return self.threshold[self.member]

    def lateral_matrix(self) -> torch.Tensor:
        """``[J', J']``: ``-g theta_k`` between different neurons of member ``k``, else 0."""
        same = self.member.view(-1, 1) == self.member.view(1, -1)
        w = -self.lateral[self.member].view(-1, 1).expand(-1, self.size)
        return torch.where(same & ~torch.eye(self.size, dtype=torch.bool), w, torch.zeros(())).contiguous()


def network_of(model: CoLaNET) -> Network:
    if not isinstance(model, CoLaNET):
        raise SpikebridgeError(f"export supports CoLaNET models only, not {type(model).__name__}")
    if not bool(model.active.any()) or model.normaliser is None:
        raise SpikebridgeError("the model has no recruited neurons or no rate normaliser (train it first)")
    K, J, N = model.weights.shape
    member, row = model.active.nonzero(as_tuple=True)
    w = model.effective_weights()[member, row].to(torch.float32).contiguous()
    theta = model.threshold.to(torch.float32).contiguous()
    lateral = (model.config.lateral_inhibition * theta.view(K, 1, 1)).view(K)  # same op as lif_population
    return Network(w, theta, lateral, member, row, model.column[row], model.config.beta, model.n_classes)


def first_spike_steps(spikes: torch.Tensor) -> torch.Tensor:
    """1-based step of each neuron's first spike in ``spikes [T, B, J']`` (``T + 1`` if none):
    the ``first`` argument of [`readout_scores()`][spikebridge.deploy.network.readout_scores] for another simulator's output spikes."""
    T = spikes.shape[0]
    steps = torch.arange(1, T + 1, dtype=torch.float64).view(-1, 1, 1)
    return torch.where(spikes > 0, steps, torch.full_like(steps, T + 1.0)).amin(0)


def readout_scores(counts: torch.Tensor, first: torch.Tensor, net: Network, steps: int,
                   v: torch.Tensor | None = None) -> torch.Tensor:
    """Column scores ``[B, C]`` from per-neuron ``counts [B, J']``, 1-based ``first`` spike
    steps (``steps + 1`` if none) and optionally final ``v`` (same units as ``threshold``) of
    the exported neurons: [`column_scores()`][spikebridge.readout.column_scores], the rule of
    `column_scores()`."""
    return column_scores(counts, first, v, net.threshold, net.member, net.column, net.n_classes, steps)
