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

from .checkpoints import load_tensors, save_tensors
from .colanet import CoLaNET, CoLaNETConfig, adaptive_config, adaptive_epochs, schedule_rate
from .errors import SpikebridgeError, require_finite
from .rules import RULES, RuleConfig

RULE_NAMES = ["colanet", *RULES]
DEFAULT_EPOCHS = 4  # the other rules' default; CoLaNET adapts its epochs to the data (adaptive_epochs)
DEFAULT_TRAIN_BATCH = 16


class CoLaNETLearner:
    """Adapter giving :class:`CoLaNET` the learner interface shared with :mod:`rules`."""

    name = "colanet"
    annealed = True  # learn() takes the schedule's rate factor

    def __init__(self, n_inputs: int, n_classes: int, config: CoLaNETConfig, learn_mode: str = "continuous"):
        if learn_mode not in ("continuous", "spiking"):
            raise SpikebridgeError(f"learn mode must be 'continuous' or 'spiking', not {learn_mode!r}")
        self.requested = config  # microcolumns=None: chosen from the training data in prepare()
        self.model = CoLaNET(n_inputs, n_classes, config)
        self.learn_mode = learn_mode

    def default_epochs(self, n_examples: int) -> int:
        return adaptive_epochs(n_examples)

    def rate_at(self, seen: int, total: int, epochs: int) -> float:
        return schedule_rate(seen, total, epochs, self.model.config.anneal)

    @property
    def members(self) -> int:
        return self.model.config.ensemble

    @property
    def generator(self) -> torch.Generator:
        return self.model.generator

    def prepare(self, features, labels=None) -> None:
        if self.requested.microcolumns is None and labels is not None:
            config = adaptive_config(self.requested, len(features), self.model.n_classes)
            self.model = CoLaNET(self.model.n_inputs, self.model.n_classes, config)
        self.model.fit_normaliser(features)

    def rates(self, features) -> torch.Tensor:
        return self.model.rates(features)

    def learn(self, rates: torch.Tensor, labels: torch.Tensor, sync=None, rate: float = 1.0) -> int:
        if self.learn_mode == "spiking" and self.model.active.any():
            seed = int(torch.randint(1 << 30, (1,), generator=self.model.generator))
            pre, post = self.model.spiking_activity(rates, seed=seed)
            return self.model.learn(pre, labels, post, sync=sync, rate=rate)
        return self.model.learn(rates, labels, sync=sync, rate=rate)

    def end_epoch(self, rates: torch.Tensor, labels: torch.Tensor) -> None:
        self.model.calibrate(rates[:4096])

    def scores(self, features, steps: int | None = None):
        return self.model.scores_spiking(features, steps)

    def synaptic_fan_out(self) -> tuple[float, float]:
        return self.model.synaptic_fan_out()

    def predict_continuous(self, features):
        return self.model.predict_continuous(features)

    def tensors(self) -> dict:
        return self.model.tensors()

    def metadata(self) -> dict:
        return {"rule": "colanet", "learn_mode": self.learn_mode, **self.model.metadata()}

    @classmethod
    def from_tensors(cls, meta: dict, tensors: dict) -> "CoLaNETLearner":
        obj = cls.__new__(cls)
        obj.model = CoLaNET.from_tensors(meta, tensors)
        obj.learn_mode = meta.get("learn_mode", "continuous")
        return obj


def make_learner(rule: str, n_inputs: int, n_classes: int, *, seed: int = 0, steps: int | None = None,
                 colanet: CoLaNETConfig | None = None, learn_mode: str = "continuous", **rule_kw):
    """A learner for ``rule``; ``steps=None`` keeps the rule's default time steps
    (``colanet.steps`` for CoLaNET, 32 for the other rules)."""
    if rule == "colanet":
        cfg = colanet or CoLaNETConfig()
        cfg.seed = seed
        if steps is not None:
            cfg.steps = steps
        return CoLaNETLearner(n_inputs, n_classes, cfg, learn_mode)
    if rule not in RULES:
        raise SpikebridgeError(f"unknown rule {rule!r}; choose one of {RULE_NAMES}")
    return RULES[rule](n_inputs, n_classes, RuleConfig(seed=seed, steps=steps or RuleConfig.steps, **rule_kw))


def load_learner(path: str | Path):
    tensors, meta = load_tensors(path)
    rule = meta.get("rule")
    if rule == "colanet":
        return CoLaNETLearner.from_tensors(meta, tensors), meta
    if rule in RULES:
        return RULES[rule].from_tensors(meta, tensors), meta
    raise SpikebridgeError(f"{path} is not a spikebridge model (rule {rule!r})")


def spiking_tensors(learner) -> list[torch.Tensor]:
    return [t for t in learner.tensors().values() if isinstance(t, torch.Tensor)]


@torch.no_grad()
def train(learner, features: np.ndarray, labels: np.ndarray, *, epochs: int | None = None,
          batch_size: int = DEFAULT_TRAIN_BATCH,
          run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
          stop_after_epoch: int | None = None, on_epoch=None) -> tuple:
    """Train ``learner`` for ``epochs`` passes over ``features`` (shuffled by its generator).

    ``epochs=None`` takes the learner's default for this many examples (CoLaNET:
    :func:`spikebridge.colanet.adaptive_epochs`; the other rules: 4). Annealed learners
    (CoLaNET) get the learning-rate factor :func:`spikebridge.colanet.schedule_rate` of each
    mini-batch, which decays linearly over the whole run.

    Returns ``(learner, history)`` (the learner is a new object after a resume), history
    ``{"epochs": [...], "train_seconds": s}``. ``stop_after_epoch`` simulates an
    interruption (for tests); ``on_epoch(epoch, learner)`` may add metrics.

    Inside a ``torch.distributed`` process group of several ranks (``torchrun``), training is
    data-parallel: each rank learns from its slice of every mini-batch and the plasticity
    updates are all-reduced before they are applied (:mod:`spikebridge.distributed`), which
    gives the weights of a single process with the same ``batch_size`` and seed. Only rank 0
    writes checkpoints; every rank resumes from the same checkpoint file.
    """
    from .distributed import PlasticitySync

    require_finite(features, "train")
    sync = PlasticitySync.from_environment()
    if sync is not None and not isinstance(learner, CoLaNETLearner):
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
        epochs = learner.default_epochs(n) if hasattr(learner, "default_epochs") else DEFAULT_EPOCHS
    annealed = getattr(learner, "annealed", False)
    history["epochs_planned"] = epochs
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        order = torch.stack([torch.randperm(n, generator=learner.generator) for _ in range(K)])
        updates = 0
        show = progress and (sync is None or sync.rank == 0)
        with tqdm(total=n, desc=f"{learner.name} epoch {epoch + 1}/{epochs}", unit="ex", disable=not show, leave=False) as bar:
            for b in range(0, n, batch_size):
                idx = order[:, b : b + batch_size]
                kw = {"rate": learner.rate_at(epoch * n + b, epochs * n, epochs)} if annealed else {}
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
            save_tensors(ckpt, learner.tensors(), {**learner.metadata(), "epoch": epoch, "history": history})
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    return learner, history

