"""Leaky integrate-and-fire (LIF) and integrate-and-fire (IF) neurons in discrete time.

One step of length ``dt`` (seconds) with decay factor ``beta = exp(-dt / tau)``: the
equations are written once, in [`lif_population()`][spikebridge.neurons.lif_population] (integrate, lateral inhibition,
threshold, reset, refractoriness). ``I[t]`` is the synaptic input of step ``t`` in units of
the threshold's (a dimensionless "voltage" per step), so ``v`` is the discretised solution
of ``tau dv/dt = -v + tau * I(t)`` with delta-pulse inputs (IF: ``tau = inf``, ``beta = 1``).
The same parameters map onto NIR's continuous-time ``LIF`` (see `deploy`).

[`lif_population()`][spikebridge.neurons.lif_population] runs ``K`` populations over ``T`` steps with lateral inhibition and
optional refractoriness: the loop every simulation in the package uses (CoLaNET, the other
rules, the NIR reference run).

The int8 model of [`fixed_point`][spikebridge.deploy.fixed_point] has its own integer loop (truncating
decay, saturation).

Closed forms used by the tests: for constant input ``I`` and ``reset="zero"``, the
membrane after ``k`` steps from rest is ``I * (1 - beta**k) / (1 - beta)``; the neuron
fires every ``k*`` steps, ``k*`` the smallest ``k`` reaching the threshold
(``ceil(threshold / I)`` for IF), plus the refractory steps.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

import torch


def _check_refractory(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"refractory must be a whole number of steps >= 0, not {steps!r}")


class PopulationParameters(NamedTuple):
    """Parameters of [`lif_population()`][spikebridge.neurons.lif_population] (``K`` independent populations of ``J`` neurons)."""

    beta: float  # decay per step, exp(-dt / tau)
    threshold: torch.Tensor  # [K] theta of each population
    lateral: float = 0.0  # g: each spike inhibits every other neuron of its population by g * theta
    reset: str = "subtract"  # "subtract" (v -= theta) or "zero" (v = 0)
    strict: bool = False  # spike when v > theta (snnTorch, Norse) instead of v >= theta
    silent: torch.Tensor | None = None  # [K, J] neurons that never fire
    refractory: int = 0  # steps after a spike during which input is ignored and v is held


class PopulationRecord(NamedTuple):
    counts: torch.Tensor  # [K, B, J] spikes per neuron
    first_spike: torch.Tensor  # [K, B, J] 1-based step of the first spike, T + 1 if none
    v_final: torch.Tensor  # [K, B, J]
    spikes: torch.Tensor | None  # [T, K, B, J] all spikes (when asked for)
    refractory_left: torch.Tensor | None = None  # [K, B, J] int32 refractory steps left (p.refractory > 0)


@contextmanager
def single_threaded():
    """Run the body with one intra-op thread; the previous count is restored.

    The element-wise work of one LIF step or one plasticity batch is small (~10^5 values);
    splitting it over OpenMP threads costs more than it saves, and on a shared machine
    (OpenMP's spinning waits) much more. The large operations (GEMM, event gathering) run
    outside and keep every thread."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def lif_population(currents: torch.Tensor, p: PopulationParameters, keep_spikes: bool = False) -> PopulationRecord:
    r"""LIF populations with all-to-all lateral inhibition: the one LIF loop of the package.

    ``currents [K, T, B, J]`` (``K`` independent populations, any strides: a permuted view is
    fine), ``p.threshold [K]``; from rest (``v[0] = 0``, no refractoriness), no spikes before
    the first step; per step
    ``t = 1..T`` and neuron ``j`` of population ``k``, with ``r_j`` its refractory steps left::

        v_j[t] = beta * v_j[t-1] + I_j[t] - g * theta_k * sum_{l != j} s_l[t-1]   if r_j = 0
        v_j[t] = v_j[t-1]                                                        if r_j > 0
        s_j[t] = [v_j[t] >= theta_k] and r_j = 0  (strict: [v_j[t] > theta_k]; never for silent neurons)
        v_j[t] <- v_j[t] - theta_k * s_j[t]       (reset "subtract")
        v_j[t] <- v_j[t] * (1 - s_j[t])           (reset "zero")
        r_j <- p.refractory if s_j[t] else max(r_j - 1, 0)

    Returns spike counts, the 1-based step of each neuron's first spike (``T + 1`` if none),
    the final membrane ``v[T]``, with ``keep_spikes`` every spike ``[T, K, B, J]``, and the
    refractory steps left when refractoriness is in play (``p.refractory > 0``; otherwise ``r``
    stays 0 and is not computed).

    Written with preallocated buffers and in-place operations (float spikes straight from
    the comparison, the first-spike step counted rather than selected), one intra-op thread
    ([`single_threaded()`][spikebridge.neurons.single_threaded]). Its rounding is that of the plain loop of the equations
    above, operation by operation (``tests/test_neurons.py`` checks it bit for bit).
    """
    if p.reset not in ("subtract", "zero"):
        raise ValueError(f"reset must be 'subtract' or 'zero', not {p.reset!r}")
    _check_refractory(p.refractory)
    K, T, B, J = currents.shape
    dtype, device = currents.dtype, currents.device
    like = {"dtype": dtype, "device": device}
    theta = p.threshold.view(K, 1, 1).to(**like)
    g = p.lateral * theta
    # silent neurons compare against +inf (never fire); the reset still uses the finite theta
    theta_cmp = theta.expand(K, 1, J).clone()
    if p.silent is not None:
        theta_cmp.masked_fill_(p.silent.view(K, 1, J).to(device), float("inf"))
    compare = torch.gt if p.strict else torch.ge
    v = torch.zeros(K, B, J, **like)
    left = None  # refractory steps left, tracked only when refractoriness can occur
    if p.refractory > 0:
        left = torch.zeros(K, B, J, dtype=torch.int32, device=device)
    sf = torch.zeros(K, B, J, **like)  # this (then the previous) step's spikes, 0.0 / 1.0
    tmp = torch.empty(K, B, J, **like)
    tot = torch.empty(K, B, 1, **like)
    counts = torch.zeros(K, B, J, **like)
    silent_steps = torch.zeros(K, B, J, **like)  # steps that ended before the first spike
    spikes = torch.empty(T, K, B, J, **like) if keep_spikes else None
    with single_threaded():
        for t in range(T):
            if left is not None:
                held, free = v.clone(), left <= 0
            v.mul_(p.beta).add_(currents[:, t])
            if p.lateral and t > 0:
                torch.sum(sf, -1, keepdim=True, out=tot)
                torch.sub(tot, sf, out=tmp)
                v.sub_(tmp.mul_(g))
            if left is not None:
                v = torch.where(free, v, held)
            compare(v, theta_cmp, out=sf)  # float 0/1 straight from the comparison
            if left is not None:
                sf.mul_(free)
            if p.reset == "subtract":
                v.sub_(torch.mul(sf, theta, out=tmp))  # theta * s
            else:
                v.sub_(torch.mul(v, sf, out=tmp))  # v * (1 - s)
            if left is not None:
                left.sub_(1).clamp_min_(0).masked_fill_(sf.bool(), p.refractory)
            counts.add_(sf)
            silent_steps.add_(torch.eq(counts, 0.0, out=tmp))
            if spikes is not None:
                spikes[t].copy_(sf)
    first = silent_steps.add_(1.0)  # 1-based first-spike step, T + 1 when the neuron never fired
    return PopulationRecord(counts, first, v, spikes, left)

