"""Fast CPU paths for the spiking simulation: in-place LIF population and event-driven currents.

Two independent pieces, each a drop-in replacement for a step of :meth:`CoLaNET.simulate`:

* :func:`run_population_fast` -- the dynamics of :func:`spikebridge.neurons.run_population`
  (same arguments, same :class:`~spikebridge.neurons.PopulationRecord`, bit-identical
  results) written with preallocated buffers and in-place operations: twelve element-wise
  passes per step (nine without lateral inhibition) instead of about seventeen allocating
  ones, float spikes straight from the comparison (``torch.ge(..., out=float)``; bool
  tensors are slow on the CPU), and the first-spike step counted rather than selected.
  About 3-4x faster than ``run_population`` at 1,280 -> 640, B = 256, T = 32.
* :func:`spike_currents` -- synaptic currents ``I[k, t, b] = W_k x[t, b]`` of binary input
  spikes, either ``"dense"`` (one GEMM over all ``T x B`` rows, as ``simulate`` does) or
  ``"event"`` (event-driven: only the weight rows of the inputs that spiked are touched,
  ``torch.nn.functional.embedding_bag`` over the address list of the spikes, AER-style).
  The event path does ``density x`` the arithmetic of the dense one but gathers rows
  instead of streaming a GEMM; ``"auto"`` picks it below :data:`EVENT_DENSITY_CROSSOVER`
  (see ``benchmarks/speed.py``, which measures the crossover on the machine it runs on).
  The event path sums in another order, so currents differ from the GEMM's by float
  rounding (~1e-6 relative) and a neuron sitting exactly on its threshold may flip.

:func:`simulate_fast` combines them for a :class:`~spikebridge.colanet.CoLaNET` and returns
the same :class:`~spikebridge.colanet.SpikeRecord` as ``model.simulate``.

:meth:`CoLaNET.simulate` uses :func:`run_population_fast`; the event-driven currents stay
opt-in (``simulate_fast(model, spikes, "auto")``) because they round differently.

**Threads.** The element-wise work of one LIF step or one plasticity batch is small
(~10^5 values); splitting it over OpenMP threads costs more than it saves, and on a shared
machine (OpenMP's default spinning waits) much more. Those loops therefore run with one
intra-op thread (:func:`single_threaded`, restored afterwards); the large operations
(GEMM, event gathering) keep every thread.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from .neurons import PopulationRecord

# Above this input spike density the dense GEMM is faster than gathering weight rows.
# Measured with benchmarks/speed.py (1280 -> 640, B = 256, T = 32, AMD EPYC, 2 vCPUs, AVX2):
# the crossover measured 21-26 % across runs; 0.2 keeps the event path where it clearly wins.
EVENT_DENSITY_CROSSOVER = 0.2


@contextmanager
def single_threaded():
    """Run the body with one intra-op thread; the previous count is restored."""
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
def run_population_fast(currents: torch.Tensor, beta: float, threshold: torch.Tensor, lateral: float = 0.0,
                        silent: torch.Tensor | None = None, keep_spikes: bool = False) -> PopulationRecord:
    """Same contract and results as :func:`spikebridge.neurons.run_population`.

    ``currents [K, T, B, J]`` (any strides; a permuted view is fine), ``threshold [K]``,
    ``silent [K, J]``. Per step: ``v = beta v + I``; lateral inhibition
    ``v -= g theta (sum_l s_l - s_j)`` from the previous step's spikes; ``s = v >= theta``
    (never for silent neurons); ``v -= theta s``.
    """
    K, T, B, J = currents.shape
    dtype = currents.dtype
    theta = threshold.view(K, 1, 1).to(dtype)
    g = lateral * theta
    # silent neurons compare against +inf (never fire); the reset still uses the finite theta
    theta_cmp = theta.expand(K, 1, J).clone()
    if silent is not None:
        theta_cmp.masked_fill_(silent.view(K, 1, J), float("inf"))
    v = torch.zeros(K, B, J, dtype=dtype)
    sf = torch.zeros(K, B, J, dtype=dtype)  # this (then the previous) step's spikes, 0.0 / 1.0
    tmp = torch.empty(K, B, J, dtype=dtype)
    tot = torch.empty(K, B, 1, dtype=dtype)
    counts = torch.zeros(K, B, J, dtype=dtype)
    silent_steps = torch.zeros(K, B, J, dtype=dtype)  # steps that ended before the first spike
    spikes = torch.empty(T, K, B, J, dtype=dtype) if keep_spikes else None
    with single_threaded():
        for t in range(T):
            v.mul_(beta).add_(currents[:, t])
            if lateral and t > 0:
                torch.sum(sf, -1, keepdim=True, out=tot)
                torch.sub(tot, sf, out=tmp)
                v.sub_(tmp.mul_(g))
            torch.ge(v, theta_cmp, out=sf)  # float 0/1 straight from the comparison
            v.sub_(torch.mul(sf, theta, out=tmp))  # theta * s, the reference's rounding
            counts.add_(sf)
            silent_steps.add_(torch.eq(counts, 0.0, out=tmp))
            if spikes is not None:
                spikes[t].copy_(sf)
    first = silent_steps.add_(1.0)  # 1-based first-spike step, T + 1 when the neuron never fired
    return PopulationRecord(counts, first, v, spikes)


def event_lists(spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Address-event form of binary spikes ``[..., N]``: (input index of every spike, offset
    of each row's first event), rows in C order of the leading dimensions."""
    return _events(spikes)[:2]


def _events(spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    flat = spikes.reshape(-1, spikes.shape[-1])
    if flat.dtype == torch.uint8:
        flat = flat.view(torch.bool)  # binary spikes: reinterpret, no pass over the data
    elif flat.dtype != torch.bool:
        flat = flat != 0
    nz = flat.nonzero()
    per_row = torch.bincount(nz[:, 0], minlength=flat.shape[0])
    offsets = torch.cumsum(per_row, 0) - per_row
    return nz[:, 1], offsets, per_row


def spike_density(spikes: torch.Tensor) -> float:
    return float(torch.count_nonzero(spikes)) / max(1, spikes.numel())


@torch.no_grad()
def spike_currents(spikes: torch.Tensor, weights: torch.Tensor, method: str = "auto",
                   density: float | None = None) -> torch.Tensor:
    """Currents ``[K, T, B, J]`` of binary spikes ``[T, B, N]`` through ``weights [K, J, N]``.

    ``method``: ``"dense"`` (one GEMM over the ``T*B`` rows, identical to
    ``CoLaNET.simulate``), ``"event"`` (gather-and-sum of the weight rows of active inputs),
    or ``"auto"`` (event below :data:`EVENT_DENSITY_CROSSOVER`; ``density`` skips counting).
    """
    return _currents_and_counts(spikes, weights, method, density)[0]


def _currents_and_counts(spikes: torch.Tensor, weights: torch.Tensor, method: str = "auto",
                         density: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Currents ``[K, T, B, J]`` and input spikes per row ``[T, B]`` (float32), each path
    counting where it is cheapest (summing a uint8 tensor in torch is slow)."""
    if spikes.dim() != 3:
        raise ValueError(f"spikes must be [T, B, N], got shape {tuple(spikes.shape)}")
    T, B, N = spikes.shape
    K, J, _ = weights.shape
    if method == "auto":
        density = spike_density(spikes) if density is None else density
        method = "event" if density < EVENT_DENSITY_CROSSOVER else "dense"
    if method == "dense":
        x = spikes.to(torch.float32).reshape(T * B, N)
        currents = torch.einsum("mn,kjn->kmj", x, weights).view(K, T, B, J)
        return currents, x.sum(-1).view(T, B)
    if method != "event":
        raise ValueError(f"method must be 'auto', 'dense' or 'event', not {method!r}")
    cols, offsets, per_row = _events(spikes)
    table = weights.permute(2, 0, 1).reshape(N, K * J)  # row i: every neuron's weight from input i
    out = F.embedding_bag(cols, table.contiguous(), offsets, mode="sum")  # [T*B, K*J]
    return out.view(T, B, K, J).permute(2, 0, 1, 3), per_row.to(torch.float32).view(T, B)


@torch.no_grad()
def simulate_fast(model, input_spikes: torch.Tensor, method: str = "auto", record_raster: bool = False):
    """:meth:`CoLaNET.simulate` with the fast paths; returns the same ``SpikeRecord``.

    With ``method="dense"`` the record is bit-identical to ``model.simulate``'s.
    """
    from .colanet import NEG, SpikeRecord

    cfg = model.config
    K, J, N = model.weights.shape
    weights = model.effective_weights()
    T = input_spikes.shape[0]
    if input_spikes.dim() == 3:
        currents, per_row = _currents_and_counts(input_spikes, weights, method)
        in_spikes = per_row.sum(0)
    else:  # [T, K, B, N]: one input per member
        parts = [_currents_and_counts(input_spikes[:, k], weights[k : k + 1], method) for k in range(K)]
        currents = torch.cat([c for c, _ in parts])
        in_spikes = torch.stack([n.sum(0) for _, n in parts]).mean(0)
    rec = run_population_fast(currents, cfg.beta, model.threshold, cfg.lateral_inhibition, ~model.active, record_raster)
    raster = rec.spikes[:, 0, 0] if record_raster else None
    v = rec.v_final.masked_fill(~model.active.view(K, 1, J), NEG)
    return SpikeRecord(rec.counts, rec.first_spike, v, in_spikes, T, raster)
