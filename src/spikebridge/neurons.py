"""Leaky integrate-and-fire (LIF) and integrate-and-fire (IF) neurons in discrete time.

One step of length ``dt`` (seconds) with decay factor ``beta = exp(-dt / tau)``::

    v[t]  = beta * v[t-1] + I[t]                         (integrate; IF: beta = 1)
    s[t]  = 1 if v[t] >= threshold and not refractory else 0
    v[t] <- v[t] - threshold * s[t]                      (reset="subtract")
    v[t] <- v[t] * (1 - s[t])                            (reset="zero")
    refractory for ``refractory`` steps after a spike: input ignored, v held at its reset value

``I[t]`` is the synaptic input of step ``t`` in units of the threshold's (a dimensionless
"voltage" per step), so ``v`` is the discretised solution of ``tau dv/dt = -v + tau * I(t)``
with delta-pulse inputs. The same parameters map onto NIR's continuous-time ``LIF``
(see :mod:`spikebridge.export`).

Closed forms used by the tests: for constant input ``I`` and ``reset="zero"``, the
membrane after ``k`` steps from rest is ``I * (1 - beta**k) / (1 - beta)``; the neuron
fires every ``k*`` steps, ``k*`` the smallest ``k`` reaching the threshold
(``ceil(threshold / I)`` for IF), plus the refractory steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch


@dataclass(frozen=True)
class LIFParameters:
    """Explicit discrete-time parameters. ``tau = inf`` (``beta = 1``) gives an IF neuron."""

    dt: float = 1e-3
    tau: float = 20e-3
    threshold: float = 1.0
    reset: str = "subtract"  # or "zero"
    refractory: int = 0

    def __post_init__(self):
        if self.reset not in ("subtract", "zero"):
            raise ValueError(f"reset must be 'subtract' or 'zero', not {self.reset!r}")
        if self.dt <= 0 or self.tau <= 0 or self.threshold <= 0:
            raise ValueError("dt, tau and threshold must be positive")

    @property
    def beta(self) -> float:
        return 0.0 if self.tau == 0 else math.exp(-self.dt / self.tau)

    @classmethod
    def integrate_and_fire(cls, **kw) -> "LIFParameters":
        return cls(tau=math.inf, **kw)


class LIFState(NamedTuple):
    v: torch.Tensor  # membrane potential
    refractory_left: torch.Tensor  # int steps left in refractoriness


def initial_state(shape, device=None, dtype=torch.float32) -> LIFState:
    return LIFState(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=torch.int32))


def lif_step(current: torch.Tensor, state: LIFState, p: LIFParameters) -> tuple[torch.Tensor, LIFState]:
    """One step: input current -> (spikes, new state). Pure function, no autograd needed."""
    free = state.refractory_left <= 0
    v = torch.where(free, p.beta * state.v + current, state.v)
    spikes = (v >= p.threshold) & free
    if p.reset == "subtract":
        v = v - p.threshold * spikes
    else:
        v = v.masked_fill(spikes, 0.0)
    refractory_left = torch.where(spikes, torch.full_like(state.refractory_left, p.refractory), state.refractory_left - 1)
    return spikes.to(current.dtype), LIFState(v, refractory_left.clamp_min_(0))


def lif_run(currents: torch.Tensor, p: LIFParameters, state: LIFState | None = None) -> tuple[torch.Tensor, LIFState]:
    """Run ``currents [T, ...]`` through LIF neurons; returns spikes ``[T, ...]`` and the final state."""
    state = state or initial_state(currents.shape[1:], currents.device, currents.dtype)
    out = torch.empty_like(currents)
    for t in range(currents.shape[0]):
        out[t], state = lif_step(currents[t], state, p)
    return out, state


class LIF(torch.nn.Module):
    """Thin stateful wrapper: ``layer(current)`` advances one step and returns spikes."""

    def __init__(self, params: LIFParameters = LIFParameters()):
        super().__init__()
        self.params, self.state = params, None

    def reset_state(self) -> None:
        self.state = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.state is None:
            self.state = initial_state(current.shape, current.device, current.dtype)
        spikes, self.state = lif_step(current, self.state, self.params)
        return spikes


class PopulationRecord(NamedTuple):
    counts: torch.Tensor  # [K, B, J] spikes per neuron
    first_spike: torch.Tensor  # [K, B, J] 1-based step of the first spike, T + 1 if none
    v_final: torch.Tensor  # [K, B, J]
    spikes: torch.Tensor | None  # [T, K, B, J] all spikes (when asked for)


@torch.no_grad()
def run_population(currents: torch.Tensor, beta: float, threshold: torch.Tensor, lateral: float = 0.0,
                   silent: torch.Tensor | None = None, keep_spikes: bool = False) -> PopulationRecord:
    """LIF population with subtractive reset and all-to-all lateral inhibition, vectorised.

    ``currents [K, T, B, J]`` (K independent populations), ``threshold [K]``; each spike
    inhibits every *other* neuron of its population by ``lateral * threshold`` on the next
    step. ``silent [K, J]`` neurons never fire. The one place this dynamic is written.
    """
    K, T, B, J = currents.shape
    theta = threshold.view(K, 1, 1).to(currents.dtype)
    g = lateral * theta
    blocked = torch.zeros(K, 1, J, dtype=torch.bool) if silent is None else silent.view(K, 1, J)
    v = torch.zeros(K, B, J, dtype=currents.dtype)
    counts = torch.zeros_like(v)
    first = torch.full_like(v, float(T + 1))
    prev = torch.zeros_like(v)
    spikes = torch.zeros(T, K, B, J, dtype=currents.dtype) if keep_spikes else None
    for t in range(T):
        v = beta * v + currents[:, t]
        if lateral:
            v = v - g * (prev.sum(-1, keepdim=True) - prev)
        s = (v >= theta) & ~blocked
        sf = s.to(v.dtype)
        v = v - theta * sf
        counts += sf
        first = torch.where(s & (first > T), torch.full_like(first, t + 1.0), first)
        prev = sf
        if spikes is not None:
            spikes[t] = sf
    return PopulationRecord(counts, first, v, spikes)
