"""Data-parallel runs on ``torch.distributed`` (launched by ``torchrun``).

``torchrun --nproc-per-node N -m spikebridge <command> ...`` starts ``N`` copies of the
command with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set; `init_from_environment()`
joins them into one process group (gloo for the CPU tensors of the spiking classifier;
``cpu:gloo,cuda:nccl`` when CUDA is present, so encoders on GPUs use NCCL).

* **Extraction** (`extract_distributed()`): shard ``i`` of a cache
  entry belongs to rank ``i % world_size``; every rank writes its shards into the shared
  cache folder, waits for the others, and rank 0 writes the manifest. A rerun skips every
  shard that is already complete, whichever rank (or run) wrote it.
* **Training** (`PlasticitySync`): every rank holds the same weights and the same
  shuffled order (same seed); each takes a contiguous slice of every mini-batch, computes the
  postsynaptic activity and its plasticity updates on that slice, and the updates are summed
  over ranks (all-reduce) before anyone applies them. Recruitment of new microcolumns is
  decided from the all-gathered per-example outcomes in global batch order, so every rank
  recruits the same prototypes as a single process would.

The cache and the run directory must be on a filesystem all ranks see (one machine: any
folder; several machines: a shared mount such as NFS).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import SpikebridgeError

DEFAULT_TIMEOUT_S = 12 * 3600  # ranks may wait this long for the slowest at a barrier


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_environment() -> bool:
    """Join the process group described by torchrun's environment; ``False`` when not launched
    with several processes. The barrier timeout is ``$SPIKEBRIDGE_DIST_TIMEOUT`` seconds."""
    if not launched_by_torchrun():
        return False
    if dist.is_initialized():
        return True
    if not dist.is_available():
        raise SpikebridgeError("this PyTorch build has no torch.distributed; run without torchrun")
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    timeout = timedelta(seconds=float(os.environ.get("SPIKEBRIDGE_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
    dist.init_process_group(backend=backend, timeout=timeout)
    return True


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_device(device: str) -> str:
    """``auto``/``cuda`` under torchrun -> this rank's GPU (``cuda:$LOCAL_RANK``)."""
    if launched_by_torchrun() and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return device


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class PlasticitySync:
    """Collectives of one data-parallel plasticity step (see the module docstring)."""

    def __init__(self, group=None):
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)

    @classmethod
    def from_environment(cls) -> "PlasticitySync | None":
        return cls() if rank_and_world()[1] > 1 else None

    def slice(self, batch: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's contiguous part of a global mini-batch (ranks in order = batch order)."""
        return batch.tensor_split(self.world_size, dim=dim)[self.rank]

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t

    def gather_batch(self, t: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Concatenate every rank's ``t [K, b_rank, ...]`` along dim 1 in rank order; also
        return where this rank's slice starts in the result."""
        sizes = torch.zeros(self.world_size, dtype=torch.int64)
        sizes[self.rank] = t.shape[1]
        self.all_reduce_sum(sizes)
        width = int(sizes.max())
        padded = t.new_zeros((t.shape[0], width, *t.shape[2:]))
        padded[:, : t.shape[1]] = t
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded, group=self.group)
        out = torch.cat([p[:, : int(s)] for p, s in zip(parts, sizes)], dim=1)
        return out, int(sizes[: self.rank].sum())
