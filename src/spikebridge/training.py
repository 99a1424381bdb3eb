"""Training over cached features with local rules only, per-epoch checkpoints and resume.

The loop never builds an autograd graph: it runs under ``torch.no_grad()`` and every
learner keeps plain tensors (``requires_grad=False``). After each epoch the learner's state
(safetensors) and the loop's position (epoch, history; JSON metadata in the same file) are
written atomically to ``<run_dir>/checkpoint.safetensors``; ``resume=True`` continues from
there and reaches the same final weights as an uninterrupted run with the same seed
(all randomness comes from the learner's own seeded generator, saved in the checkpoint).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checks
from .io import load_tensors, save_tensors
from .errors import SpikebridgeError, require_finite

DEFAULT_TRAIN_BATCH = 16


def check_schedule(epochs: int | None, batch_size: int) -> None:
    """``epochs`` (``None``: the learner's default) and ``batch_size`` are integers >= 1: a run
    of 0 epochs or an empty batch never changes a weight."""
    checks.optional_integer("epochs", epochs, 1)
    checks.integer("batch_size", batch_size, 1)


@torch.no_grad()
def train(learner, features: np.ndarray, labels: np.ndarray, *, epochs: int | None = None,
          batch_size: int = DEFAULT_TRAIN_BATCH,
          run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
          stop_after_epoch: int | None = None, on_epoch=None, meta: dict | None = None) -> tuple:
    """Train ``learner`` for ``epochs`` passes over ``features`` (shuffled by its generator).

    Parameters
    ----------
    learner : Learner
        From `create_learner` (or a checkpoint's learner when resuming).
    features : ndarray of shape (n, D)
    labels : ndarray of shape (n,)
        Class indices ``0..C-1``.
    epochs : int, optional
        Passes over the data; ``None`` takes the learner's default for ``n`` examples (CoLaNET:
        [`adaptive_epochs()`][spikebridge.colanet.adaptive_epochs]; the other rules: 4).
        Annealed learners (CoLaNET) get the learning-rate factor
        [`schedule_rate()`][spikebridge.colanet.schedule_rate] of each mini-batch, which decays
        linearly over the whole run.
    batch_size : int
        Examples per plasticity update (1 is the exact online rule).
    run_dir : str or Path, optional
        Write ``checkpoint.safetensors`` there after every epoch; with ``resume`` continue from it.
    progress : bool
        Show a progress bar per epoch.
    stop_after_epoch : int, optional
        Stop after this epoch (simulates an interruption, for tests).
    on_epoch : callable, optional
        ``on_epoch(epoch, learner)`` may return metrics to add to the epoch's record.
    meta : dict, optional
        Added to every checkpoint's metadata (the command line records the class names and the
        encoder, so a checkpoint is checked against a data set as a model is).

    Returns
    -------
    learner : Learner
        The trained learner (a new object after a resume).
    history : dict
        ``{"epochs": [...], "train_seconds": s, "epochs_planned": n}``.

    Notes
    -----
    Inside a ``torch.distributed`` process group of several ranks (``torchrun``), training is
    data-parallel: each rank learns from its slice of every mini-batch and the plasticity
    updates are all-reduced before they are applied (`distributed`), which gives the weights
    of a single process with the same ``batch_size`` and seed. Only rank 0 writes checkpoints;
    every rank resumes from the same checkpoint file.
    """
    from .distributed import PlasticitySync

    check_schedule(epochs, batch_size)
    require_finite(features, "train")
    sync = PlasticitySync.from_environment()
    if sync is not None and not learner.supports_sync:
        raise SpikebridgeError(f"distributed training supports the colanet rule only, not {learner.name!r}")
    ckpt = Path(run_dir) / "checkpoint.safetensors" if run_dir else None
    history: dict = {"epochs": [], "train_seconds": 0.0}
    start = 0
    if resume and ckpt is not None and ckpt.is_file():
        tensors, meta = load_tensors(ckpt)
        learner = type(learner).from_tensors(meta, tensors)
        history, start = meta["history"], meta["epoch"] + 1
    else:
        learner.prepare(features, labels)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    rates = learner.rates(features)
    n, K = len(y), learner.members
    if epochs is None:
        epochs = learner.default_epochs(n)
    history["epochs_planned"] = epochs
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        order = torch.stack([torch.randperm(n, generator=learner.generator) for _ in range(K)])
        updates = 0
        show = progress and (sync is None or sync.rank == 0)
        with tqdm(total=n, desc=f"{learner.name} epoch {epoch + 1}/{epochs}", unit="ex", disable=not show, leave=False) as bar:
            for b in range(0, n, batch_size):
                idx = order[:, b : b + batch_size]
                kw = {"rate": learner.rate_at(epoch * n + b, epochs * n, epochs)} if learner.annealed else {}
                if sync is None:
                    updates += learner.learn(rates[idx], y[idx], **kw)
                else:
                    mine = sync.slice(idx)
                    updates += learner.learn(rates[mine], y[mine], sync=sync, **kw)
                bar.update(idx.shape[1])
        learner.end_epoch(rates, y)
        record = {"epoch": epoch + 1, "plasticity_events": updates, "seconds": time.perf_counter() - t0}
        if on_epoch is not None:
            record.update(on_epoch(epoch, learner) or {})
        history["epochs"].append(record)
        history["train_seconds"] += record["seconds"]
        if ckpt is not None and (sync is None or sync.rank == 0):
            save_tensors(ckpt, learner.tensors(), {**(meta or {}), **learner.metadata(), "epoch": epoch, "history": history})
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    return learner, history

