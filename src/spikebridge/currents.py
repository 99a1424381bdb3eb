r"""Synaptic currents of binary input spikes, dense or event-driven.

For input spikes ``x[t, b] in {0, 1}^N`` and weights ``W_k [J, N]`` of population ``k``::

    I_k[t, b, j] = sum_i W_k[j, i] x_i[t, b]

* ``"dense"``: one GEMM over all ``T x B`` rows (every synapse, spiking or not).
* ``"event"`` (event-driven, AER-style): only the weight rows of the inputs that spiked are
  touched, ``torch.nn.functional.embedding_bag`` over the address list of the spikes. It
  does ``density x`` the arithmetic of the dense GEMM but gathers rows instead of streaming
  them; it sums in another order, so currents differ from the GEMM's by float rounding
  (~1e-6 relative) and a neuron sitting exactly on its threshold may flip.
* ``"auto"``: event below :data:`EVENT_DENSITY_CROSSOVER` input spike density, else dense
  (``benchmarks/speed.py`` measures the crossover on the machine it runs on).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Above this input spike density the dense GEMM is faster than gathering weight rows.
# Measured with benchmarks/speed.py (1280 -> 640, B = 256, T = 32, AMD EPYC, 2 vCPUs, AVX2):
# the crossover measured 21-26 % across runs; 0.2 keeps the event path where it clearly wins.
EVENT_DENSITY_CROSSOVER = 0.2
METHODS = ("auto", "dense", "event")


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


def _method(spikes: torch.Tensor, method: str, density: float | None) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be 'auto', 'dense' or 'event', not {method!r}")
    if method == "auto":
        density = spike_density(spikes) if density is None else density
        return "event" if density < EVENT_DENSITY_CROSSOVER else "dense"
    return method


@torch.no_grad()
def spike_currents(spikes: torch.Tensor, weights: torch.Tensor, method: str = "auto",
                   density: float | None = None) -> torch.Tensor:
    """Currents ``[K, T, B, J]`` of binary spikes ``[T, B, N]`` through ``weights [K, J, N]``
    (``density`` skips counting for ``"auto"``)."""
    return synaptic_currents(spikes, weights, method, density)[0]


@torch.no_grad()
def synaptic_currents(spikes: torch.Tensor, weights: torch.Tensor, method: str = "auto",
                      density: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Currents ``[K, T, B, J]`` and input spikes per example ``[B]`` (float32) of binary
    ``spikes [T, B, N]`` (the same input to every population) or ``[T, K, B, N]`` (one input
    per population; the count is then averaged over populations) through ``weights [K, J, N]``."""
    if spikes.dim() not in (3, 4):
        raise ValueError(f"spikes must be [T, B, N] or [T, K, B, N], got shape {tuple(spikes.shape)}")
    method = _method(spikes, method, density)
    K, J, N = weights.shape
    if method == "dense":
        x = spikes.to(torch.float32)
        if x.dim() == 3:
            T, B, _ = x.shape
            currents = torch.einsum("mn,kjn->kmj", x.reshape(T * B, N), weights).view(K, T, B, J)
            return currents, x.sum(dim=(0, -1))
        return torch.einsum("tkbn,kjn->ktbj", x, weights), x.sum(dim=(0, -1)).mean(0)
    if spikes.dim() == 4:  # one input per population: gather each population's own rows
        parts = [_event_currents(spikes[:, k], weights[k : k + 1]) for k in range(K)]
        return torch.cat([c for c, _ in parts]), torch.stack([n for _, n in parts]).mean(0)
    return _event_currents(spikes, weights)


def _event_currents(spikes: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    T, B, N = spikes.shape
    K, J, _ = weights.shape
    cols, offsets, per_row = _events(spikes)
    table = weights.permute(2, 0, 1).reshape(N, K * J)  # row i: every neuron's weight from input i
    out = F.embedding_bag(cols, table.contiguous(), offsets, mode="sum")  # [T*B, K*J]
    return out.view(T, B, K, J).permute(2, 0, 1, 3), per_row.to(torch.float32).view(T, B).sum(0)
