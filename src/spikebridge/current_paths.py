"""The two paths to synaptic currents of binary spikes -- one dense GEMM, or an event-driven
gather of the weight rows of the inputs that spiked -- and spike densities."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


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
    rows, n = flat.shape
    if flat.device.type == "cpu":
        # one pass: the flat positions of the spikes (NumPy's flatnonzero is ~3x torch.nonzero's 2-D
        # form here); a row's first event is where its first position would be inserted
        flat_np = flat.contiguous().numpy()
        where = torch.from_numpy(np.flatnonzero(flat_np))
        starts = torch.arange(rows + 1, dtype=torch.int64) * n
        bounds = torch.searchsorted(where, starts)
        return where.remainder_(n), bounds[:-1], bounds[1:] - bounds[:-1]
    nz = flat.nonzero()
    per_row = torch.bincount(nz[:, 0], minlength=rows)
    offsets = torch.cumsum(per_row, 0) - per_row
    return nz[:, 1], offsets, per_row


def spike_density(spikes: torch.Tensor) -> float:
    return float(torch.count_nonzero(spikes)) / max(1, spikes.numel())


#: ``auto`` counts the spikes of at most this many rows (time step x example) to choose a path:
#: counting every spike of a large input costs ~15 % of a simulation, a sample of 512 rows x
#: 2560 inputs estimates a density to ~1e-3 (which only matters within that of the crossover,
#: where both paths take the same time)
DENSITY_SAMPLE_ROWS = 512


def estimated_density(spikes: torch.Tensor) -> float:
    """Spike density of ``spikes [..., N]`` from evenly spaced rows (all rows when few)."""
    rows = spikes.reshape(-1, spikes.shape[-1]) if spikes.dim() > 1 else spikes.reshape(1, -1)
    step = max(1, len(rows) // DENSITY_SAMPLE_ROWS)
    return spike_density(rows[::step])


@torch.no_grad()
def currents_by_path(spikes: torch.Tensor, weights: torch.Tensor, method: str, bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """[`synaptic_currents()`][spikebridge.currents.synaptic_currents] on the path ``method`` (``"dense"`` or ``"event"``)."""
    K = weights.shape[0]
    out_dtype = torch.float32 if bf16 else weights.dtype
    w = weights.to(torch.bfloat16) if bf16 else weights
    if method == "dense" and spikes.dim() == 3:
        currents, in_spikes = _dense_currents(spikes, w)
    elif method == "dense":
        x = spikes.to(w.dtype)
        in_spikes = x.sum(-1, dtype=torch.float32).sum(0)  # [K, B]; exact integers
        currents = torch.einsum("tkbn,kjn->ktbj", x, w)
    elif spikes.dim() == 4:  # one input per population: gather each population's own rows
        parts = [_event_currents(spikes[:, k], w[k : k + 1]) for k in range(K)]
        currents, in_spikes = torch.cat([c for c, _ in parts]), torch.stack([n for _, n in parts])
    else:
        currents, in_spikes = _event_currents(spikes, w)
    if spikes.dim() == 4:
        in_spikes = in_spikes.mean(0)
    return currents.to(out_dtype), in_spikes


#: rows (time steps x examples) of spikes converted and multiplied at a time by the dense path:
#: a 512 x N float block stays in cache and its buffer is reused, where converting all T x B
#: rows at once writes (and page-faults) a buffer the size of the whole input
DENSE_CHUNK_ROWS = 512


def _dense_currents(spikes: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[T, B, N]`` spikes (shared by all populations) -> currents ``[K, T, B, J]`` (a view) and
    input spikes per example ``[B]``: one GEMM against all ``K J`` neurons, block by block."""
    T, B, N = spikes.shape
    K, J, _ = weights.shape
    x = spikes.reshape(T * B, N)
    w_t = weights.reshape(K * J, N).t()
    out = torch.empty(T * B, K * J, dtype=weights.dtype, device=weights.device)
    per_row = torch.empty(T * B, dtype=torch.float32, device=weights.device)
    block = torch.empty(min(DENSE_CHUNK_ROWS, T * B), N, dtype=weights.dtype, device=weights.device)
    for r0 in range(0, T * B, len(block)):
        b = block[: min(len(block), T * B - r0)]
        b.copy_(x[r0 : r0 + len(b)])
        torch.mm(b, w_t, out=out[r0 : r0 + len(b)])
        torch.sum(b, -1, dtype=torch.float32, out=per_row[r0 : r0 + len(b)])  # exact integers
    return out.view(T, B, K, J).permute(2, 0, 1, 3), per_row.view(T, B).sum(0)


def _event_currents(spikes: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    T, B, N = spikes.shape
    K, J, _ = weights.shape
    cols, offsets, per_row = _events(spikes)
    table = weights.permute(2, 0, 1).reshape(N, K * J)  # row i: every neuron's weight from input i
    out = F.embedding_bag(cols, table.contiguous(), offsets, mode="sum")  # [T*B, K*J]
    return out.view(T, B, K, J).permute(2, 0, 1, 3), per_row.to(torch.float32).view(T, B).sum(0)
