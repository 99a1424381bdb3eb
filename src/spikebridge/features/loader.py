"""The extraction input pipeline: loader workers that decode images to ``uint8`` pixels, how many of
them, and the allocator setting that keeps batch buffers mapped."""

from __future__ import annotations

import ctypes
import os
import platform

import torch

from ..data import ImageDataset, UnreadableImage
from ..encoders.encoder import Encoder


_allocator_tuned = False


def tune_allocator() -> None:
    """Keep glibc from returning large buffers to the OS between batches.

    With glibc's defaults, every CNN batch on the CPU maps and unmaps its ~50 MB activation
    buffers, page-faulting them in again: measured 18 img/s for Lite0 at batch 32 on 2 cores
    vs 74 img/s after ``M_MMAP_MAX=0`` + a 1 GiB trim threshold (90 with channels_last, on a
    par with jemalloc). No-op off glibc or with ``SPIKEBRIDGE_NO_MALLOPT=1``.
    """
    global _allocator_tuned
    if _allocator_tuned or os.environ.get("SPIKEBRIDGE_NO_MALLOPT") or platform.system() != "Linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: serve large blocks from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of freed heap
    except (OSError, AttributeError):
        pass
    _allocator_tuned = True


class _Decoded(torch.utils.data.Dataset):
    """Rows of a data set as ``uint8 [H, W, 3]`` pixels (`pixels()`); unreadable
    files come back as reasons. Normalisation to float happens on whole batches in the main
    process (`__call__()`), so workers only decode, resize and crop."""

    def __init__(self, dataset: ImageDataset, preprocess):
        self.dataset, self.preprocess = dataset, preprocess

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, row: int):
        try:
            image = self.dataset.open(row, draft_to=self.preprocess.draft_target)
        except UnreadableImage as exc:
            return None, row, str(exc)
        return self.preprocess.pixels(image), row, ""


def _collate(items):
    good = [(x, row) for x, row, _ in items if x is not None]
    bad = [(row, reason) for x, row, reason in items if x is None]
    # uint8 [B, H, W, 3]; in a worker, default_collate stacks straight into shared memory (no extra copy)
    images = torch.utils.data.default_collate([x for x, _ in good]) if good else None
    return images, [row for _, row in good], bad


def _worker_init(worker_id: int) -> None:
    """A loader worker decodes with one thread: the cores belong to the forward pass."""
    torch.set_num_threads(1)


def pixel_loader(dataset: ImageDataset, encoder: Encoder, batch_sampler, workers: int) -> torch.utils.data.DataLoader:
    """The extraction loader: batches of ``(uint8 [B, H, W, 3] pixels or None, kept rows,
    [(row, reason), ...] unreadable)`` for the row lists ``batch_sampler`` yields, decoded by
    ``workers`` one-thread processes (0: in this process)."""
    return torch.utils.data.DataLoader(_Decoded(dataset, encoder.preprocess()), batch_sampler=batch_sampler,
                                       num_workers=workers, collate_fn=_collate,
                                       worker_init_fn=_worker_init if workers else None,
                                       pin_memory=encoder.device.type == "cuda")


def default_workers(device: torch.device | str = "cpu") -> int:
    """Loader worker processes for extraction on ``device``.

    On the CPU the forward pass keeps every core (torch's intra-op threads) and decoding
    (JPEG decode, resize, crop: ~1-1.5 ms of one core per image at 224 px) is a small share of
    it (Lite0: ~8-20 core-ms per image), so one worker per 8 cores overlaps decoding with the
    forward without taking cores from it; more workers only preempt the forward's threads.
    With 2 cores or fewer, none: a worker process then preempts the forward and adds the
    copy through shared memory, and decoding in the main process between batches measured
    faster end to end (``benchmarks/extract.py`` worker sweep on 2 cores: 186 vs 169 img/s on
    Imagenette, 207 vs 189 on the 64-class set). On a GPU the CPU does nothing but decode: up
    to 8 workers.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.device(device).type == "cpu":
        return 0 if cores <= 2 else max(1, cores // 8)
    return max(1, min(8, cores))
