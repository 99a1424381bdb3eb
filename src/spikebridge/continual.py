r"""Continual-learning protocols on cached features: streaming, class-incremental, few-shot.

Every protocol drives an *online learner*: any object with ``partial_fit(X, y)`` (each call
learns its examples once, in order; labels are the data set's class ids, which may be new),
``predict(X)`` (labels) and ``state_bytes()`` (what it keeps between calls). The spiking
classifier (`SpikingClassifier`, whose ``partial_fit`` appends a column for
each new class) and the references of [`baselines`][spikebridge.baselines] (streaming LDA, nearest
class mean, online softmax) all are. The protocols only ever pass training examples to
``partial_fit``; the val split is used for scoring alone.

Protocols (``seed`` fixes the class order and the stream order)
----------------------------------------------------------------
* [`streaming()`][spikebridge.continual.streaming] -- every training example once, shuffled, in calls of ``batch`` examples.
* [`class_incremental()`][spikebridge.continual.class_incremental] -- the classes in a seeded order, cut into ``tasks`` equal groups;
  each task's examples (shuffled) stream once; after each task the learner is scored on the
  val examples of every class seen so far (no task id at test).
* [`few_shot()`][spikebridge.continual.few_shot] -- a base session of ``round(base_fraction * C)`` classes with all their
  training examples, then sessions of ``ways`` new classes with ``shots`` examples each
  (the first ``shots`` of each class in a seeded order), scored after every session.

Metrics (per-class accuracies ``A[t, c]`` after task ``t``, classes seen by then)::

    final top-1              = accuracy on the val examples of all classes after the last task
    average incremental acc. = mean_t (accuracy on the val examples of the classes seen at t)
    forgetting               = mean over classes c not in the last task of
                               max_{t < last} A[t, c] - A[last, c]
    few-shot: base = accuracy on the base classes, novel = on the session classes,
              harmonic = 2 base novel / (base + novel), all after the last session
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .errors import SpikebridgeError


# ------------------------------------------------------------------ orders and splits
def class_order(classes, seed: int) -> np.ndarray:
    """The classes in a seeded random order."""
    return np.random.default_rng(seed).permutation(np.asarray(classes))


def split_tasks(order: np.ndarray, tasks: int) -> list[np.ndarray]:
    """``order`` cut into ``tasks`` consecutive groups of equal size (the first ones one larger if needed)."""
    if not 1 <= tasks <= len(order):
        raise SpikebridgeError(f"tasks must be between 1 and the number of classes ({len(order)}), not {tasks}")
    return [np.asarray(t) for t in np.array_split(order, tasks)]


def stream_indices(labels: np.ndarray, classes, rng: np.random.Generator) -> np.ndarray:
    """Indices of the examples of ``classes``, shuffled."""
    idx = np.flatnonzero(np.isin(labels, classes))
    return idx[rng.permutation(len(idx))]


@dataclass
class History:
    """Per-class val accuracy after each task (NaN for classes not yet seen).

    Attributes
    ----------
    classes : np.ndarray
        The class labels, in column order.
    per_class : list[np.ndarray]
        [tasks][C].
    overall : list[float]
        Accuracy on the classes seen so far.
    """

    classes: np.ndarray
    per_class: list[np.ndarray] = field(default_factory=list)
    overall: list[float] = field(default_factory=list)

    def record(self, predictions: np.ndarray, labels: np.ndarray, seen: np.ndarray) -> None:
        row = np.full(len(self.classes), np.nan)
        for i, c in enumerate(self.classes):
            if c in seen:
                row[i] = float((predictions[labels == c] == c).mean()) if (labels == c).any() else np.nan
        self.per_class.append(row)
        mask = np.isin(labels, seen)
        self.overall.append(float((predictions[mask] == labels[mask]).mean()))

    def forgetting(self, last_task_classes) -> float:
        """Mean over the classes not learned in the last task of (best earlier accuracy - final accuracy)."""
        table = np.stack(self.per_class)  # [tasks, C]
        old = ~np.isin(self.classes, last_task_classes)
        if len(table) < 2 or not old.any():
            return 0.0
        drops = np.nanmax(table[:-1, old], axis=0) - table[-1, old]
        return float(np.nanmean(drops))


def _score(learner, val_x, val_y, seen) -> tuple[np.ndarray, np.ndarray]:
    mask = np.isin(val_y, seen)
    return np.asarray(learner.predict(val_x[mask])), val_y[mask]


def _feed(learner, x, y, batch: int) -> int:
    """``x, y`` to ``learner.partial_fit`` in calls of ``batch`` examples, in order; returns how many."""
    for b in range(0, len(y), batch):
        learner.partial_fit(x[b : b + batch], y[b : b + batch])
    return len(y)


def _begin(learner, classes, first: bool, x, y) -> None:
    """Announce the classes of a new task (a training-time boundary; no task id at test):
    the first task's classes go to the first ``partial_fit`` call (scikit-learn's ``classes=``,
    with one example), later ones to ``add_classes``."""
    if first:
        learner.partial_fit(x[:1], y[:1], classes=np.asarray(classes))
    else:
        learner.add_classes(np.asarray(classes))


# ------------------------------------------------------------------ protocols
def streaming(learner, train_x, train_y, val_x, val_y, seed: int = 0, batch: int = 1) -> dict:
    """Every training example once, shuffled, ``batch`` per call; top-1 on the whole val split."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_y))
    t0 = time.perf_counter()
    _begin(learner, np.unique(train_y), True, train_x[order], train_y[order])
    _feed(learner, train_x[order[1:]], train_y[order[1:]], batch)
    seconds = time.perf_counter() - t0
    pred = np.asarray(learner.predict(val_x))
    return {"top1": float((pred == val_y).mean()), "examples": int(len(order)), "train_seconds": seconds,
            "state_bytes": int(learner.state_bytes()), "order_head": order[:5].tolist()}


def class_incremental(learner, train_x, train_y, val_x, val_y, tasks: int, seed: int = 0, batch: int = 1) -> dict:
    """Classes in ``tasks`` groups (seeded order), one pass over each group's examples, scored
    after every task on all classes seen so far."""
    rng = np.random.default_rng(seed)
    order = class_order(np.unique(train_y), seed)
    groups = split_tasks(order, tasks)
    history = History(order)
    seen: list = []
    t0, n = time.perf_counter(), 0
    for t, group in enumerate(groups):
        idx = stream_indices(train_y, group, rng)
        _begin(learner, group, t == 0, train_x[idx], train_y[idx])
        n += _feed(learner, train_x[idx[t == 0 :]], train_y[idx[t == 0 :]], batch) + (t == 0)
        seen.extend(group.tolist())
        history.record(*_score(learner, val_x, val_y, np.asarray(seen)), np.asarray(seen))
    seconds = time.perf_counter() - t0
    return {"final_top1": history.overall[-1], "average_incremental": float(np.mean(history.overall)),
            "forgetting": history.forgetting(groups[-1]), "task_top1": history.overall,
            "per_class": [r.tolist() for r in history.per_class], "class_order": order.tolist(),
            "examples": n, "train_seconds": seconds, "state_bytes": int(learner.state_bytes())}


def few_shot_plan(train_y: np.ndarray, seed: int, base_fraction: float = 0.6, ways: int = 3,
                  shots: int = 5, sessions: int | None = None) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """``(base_classes, [(session_classes, example_indices), ...])`` of the few-shot protocol."""
    classes = np.unique(train_y)
    order = class_order(classes, seed)
    n_base = int(round(base_fraction * len(classes)))
    possible = (len(classes) - n_base) // ways
    sessions = possible if sessions is None else sessions
    if not 1 <= n_base < len(classes) or not 1 <= sessions <= possible:
        raise SpikebridgeError(f"few-shot: {len(classes)} classes do not make a base of {n_base} and "
                               f"{sessions} sessions of {ways} new classes")
    rng = np.random.default_rng(seed + 1)
    plan = []
    for s in range(sessions):
        group = order[n_base + s * ways : n_base + (s + 1) * ways]
        idx = []
        for c in group:
            members = np.flatnonzero(train_y == c)
            if len(members) < shots:
                raise SpikebridgeError(f"few-shot: class {c} has {len(members)} training examples, fewer than {shots} shots")
            idx.extend(rng.permutation(members)[:shots].tolist())
        plan.append((group, rng.permutation(np.asarray(idx))))
    return order[:n_base], plan


def few_shot(learner, train_x, train_y, val_x, val_y, seed: int = 0, base_fraction: float = 0.6, ways: int = 3,
             shots: int = 5, sessions: int | None = None, batch: int = 1, base_learner_fit=None) -> dict:
    """Base session (all examples of the base classes, one pass; or ``base_learner_fit(x, y)``
    for an offline base model), then few-shot sessions; base / novel / harmonic / last-session accuracy."""
    base, plan = few_shot_plan(train_y, seed, base_fraction, ways, shots, sessions)
    rng = np.random.default_rng(seed)
    history = History(np.concatenate([base, *[g for g, _ in plan]]))
    idx = stream_indices(train_y, base, rng)
    t0 = time.perf_counter()
    if base_learner_fit is not None:
        base_learner_fit(train_x[idx], train_y[idx])
    else:
        _begin(learner, base, True, train_x[idx], train_y[idx])
        _feed(learner, train_x[idx[1:]], train_y[idx[1:]], batch)
    base_seconds = time.perf_counter() - t0
    seen = list(base)
    history.record(*_score(learner, val_x, val_y, np.asarray(seen)), np.asarray(seen))
    used = len(idx)
    for group, session in plan:
        _begin(learner, group, False, None, None)
        used += _feed(learner, train_x[session], train_y[session], batch)
        seen.extend(group.tolist())
        history.record(*_score(learner, val_x, val_y, np.asarray(seen)), np.asarray(seen))
    pred = np.asarray(learner.predict(val_x[np.isin(val_y, seen)]))
    truth = val_y[np.isin(val_y, seen)]
    is_base = np.isin(truth, base)
    base_acc = float((pred[is_base] == truth[is_base]).mean())
    novel_acc = float((pred[~is_base] == truth[~is_base]).mean())
    harmonic = 0.0 if base_acc + novel_acc == 0 else 2 * base_acc * novel_acc / (base_acc + novel_acc)
    return {"last_session": history.overall[-1], "base": base_acc, "novel": novel_acc, "harmonic": harmonic,
            "session_top1": history.overall, "base_session_top1": history.overall[0],
            "forgetting": history.forgetting(plan[-1][0]), "base_classes": base.tolist(),
            "session_classes": [g.tolist() for g, _ in plan], "examples": used, "base_seconds": base_seconds,
            "state_bytes": int(learner.state_bytes())}

