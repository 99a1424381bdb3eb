"""Backprop and non-spiking references on the same features as the spiking classifier.

Every reference sees exactly the training features the local rule sees and is scored on
the same val split; any setting it has is chosen on the training split only:

* [`tuned_logistic()`][spikebridge.baselines.tuned_logistic] -- multinomial logistic regression on standardised features,
  ``C`` chosen by stratified k-fold cross-validation on train over a log grid that is
  widened until the choice is not at its edge. This is *the best backprop linear probe*.
* `logistic_baseline()` -- the same with a fixed ``C`` (1 by default), for reference.
* `mlp_baseline()` -- one hidden ReLU layer trained with backprop (Adam), early stopping
  on a held-out tenth of train.
* `nearest_class_mean()` -- the class means of the features (no training).

Each returns ``{"top1", "top5", "train_seconds", ...}``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

#: decades of ``C`` searched first by [`tuned_logistic()`][spikebridge.baselines.tuned_logistic] (widened when the best is at an edge)
C_GRID = tuple(10.0 ** e for e in range(-4, 2))


def topk_accuracy(scores: torch.Tensor, labels: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    top = torch.as_tensor(scores).topk(k, dim=1).indices.numpy()
    return float((top == np.asarray(labels)[:, None]).any(1).mean())


def _scores(proba, val_y) -> dict:
    proba = torch.as_tensor(np.asarray(proba))
    return {"top1": topk_accuracy(proba, val_y, 1), "top5": topk_accuracy(proba, val_y, 5)}


def _fit_logistic(x, y, C: float):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is generous; the CV score says enough
        return LogisticRegression(max_iter=1000, C=C, tol=1e-3).fit(x, y)


def logistic_baseline(train_x, train_y, val_x, val_y, C: float = 1.0) -> dict:
    """Multinomial logistic regression with a fixed ``C`` on standardised features."""
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    scaler = StandardScaler().fit(train_x)
    clf = _fit_logistic(scaler.transform(train_x), train_y, C)
    out = _scores(clf.predict_proba(scaler.transform(val_x)), val_y)
    return {**out, "C": C, "train_seconds": time.perf_counter() - t0, "macs": int(np.prod(clf.coef_.shape))}


def choose_logistic_c(train_x, train_y, folds: int = 3, seed: int = 0, grid=C_GRID) -> tuple[float, dict]:
    """``C`` with the best mean stratified ``folds``-fold CV accuracy on the training split.

    The grid (decades) is extended by one decade whenever the best value sits at its edge,
    then refined with half-decade neighbours of the best. Returns ``(C, {C: cv accuracy})``.
    """
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(train_x, dtype=np.float32), np.asarray(train_y)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    prepared = []
    for tr, te in splits:
        scaler = StandardScaler().fit(x[tr])
        prepared.append((scaler.transform(x[tr]), y[tr], scaler.transform(x[te]), y[te]))
    cv: dict[float, float] = {}

    def score(C: float) -> float:
        C = float(f"{C:.3g}")
        if C not in cv:
            cv[C] = float(np.mean([(_fit_logistic(a, b, C).predict(c) == d).mean() for a, b, c, d in prepared]))
        return cv[C]

    for C in grid:
        score(C)
    while True:
        best = max(cv, key=cv.get)
        if best == min(cv):
            score(best / 10)
        elif best == max(cv):
            score(best * 10)
        else:
            break
        if max(cv, key=cv.get) == best:
            break
    best = max(cv, key=cv.get)
    for C in (best / 10**0.5, best * 10**0.5):
        score(C)
    best = max(cv, key=cv.get)
    return best, dict(sorted(cv.items()))


def tuned_logistic(train_x, train_y, val_x, val_y, folds: int = 3, seed: int = 0) -> dict:
    """Logistic regression with ``C`` chosen by cross-validation on train (never on val)."""
    t0 = time.perf_counter()
    C, cv = choose_logistic_c(train_x, train_y, folds, seed)
    out = logistic_baseline(train_x, train_y, val_x, val_y, C)
    return {**out, "cv_accuracy": {f"{c:g}": a for c, a in cv.items()}, "folds": folds,
            "train_seconds": time.perf_counter() - t0}


def mlp_baseline(train_x, train_y, val_x, val_y, hidden: int = 512, seed: int = 0) -> dict:
    """One hidden ReLU layer, Adam, early stopping on a held-out 10 % of train (patience 10)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    scaler = StandardScaler().fit(train_x)
    clf = MLPClassifier(hidden_layer_sizes=(hidden,), early_stopping=True, validation_fraction=0.1,
                        n_iter_no_change=10, max_iter=200, random_state=seed).fit(scaler.transform(train_x), train_y)
    out = _scores(clf.predict_proba(scaler.transform(val_x)), val_y)
    return {**out, "hidden": hidden, "epochs": int(clf.n_iter_), "train_seconds": time.perf_counter() - t0}


def nearest_class_mean(train_x, train_y, val_x, val_y) -> dict:
    """Nearest class mean (Euclidean) on the raw features."""
    t0 = time.perf_counter()
    classes = np.unique(train_y)
    mu = np.stack([train_x[train_y == c].mean(0) for c in classes])
    scores = torch.as_tensor(val_x @ mu.T - 0.5 * (mu**2).sum(1))
    return {**_scores(scores, val_y), "train_seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------ online (streaming) references
class _OnlineReference:
    """Labels in, labels out: class ids are given rows in the order they first appear."""

    def __init__(self):
        self.classes_: list = []
        self._index: dict = {}
        self._dim = 0

    def add_classes(self, classes) -> "_OnlineReference":
        """Rows for new labels before their examples come (a class-incremental task's classes)."""
        self._rows(classes)
        return self

    def _rows(self, y) -> np.ndarray:
        for c in np.asarray(y).tolist():
            if c not in self._index:
                self._index[c] = len(self.classes_)
                self.classes_.append(c)
                self._grow()
        return np.array([self._index[c] for c in np.asarray(y).tolist()], dtype=np.int64)

    def _grow(self):
        self.means = np.vstack([self.means.reshape(-1, self._dim), np.zeros((1, self._dim))])
        self.counts = np.append(self.counts, 0.0)

    def predict(self, x) -> np.ndarray:
        return np.asarray(self.classes_)[self.scores(np.asarray(x, dtype=np.float64)).argmax(1)]


class StreamingNCM(_OnlineReference):
    """Nearest class mean with running means: ``mu_c += (x - mu_c) / n_c``; Euclidean decision."""

    def __init__(self):
        super().__init__()
        self.means, self.counts = np.zeros((0, 0)), np.zeros(0)

    def partial_fit(self, x, y, classes=None) -> "StreamingNCM":
        x = np.asarray(x, dtype=np.float64)
        self._dim = x.shape[1]
        self._rows([] if classes is None else classes)
        for row, xi in zip(self._rows(y), x):
            self.counts[row] += 1
            self.means[row] += (xi - self.means[row]) / self.counts[row]
        return self

    def scores(self, x) -> np.ndarray:
        return x @ self.means.T - 0.5 * (self.means**2).sum(1)

    def state_bytes(self) -> int:
        return 4 * (self.means.size + self.counts.size)  # as float32 / int32 on a device


class StreamingLDA(_OnlineReference):
    """Streaming linear discriminant analysis (Hayes & Kanan, CVPR-W 2020): running class means
    and one running shared covariance, updated example by example::

        Sigma <- (t Sigma + t/(t+1) (x - mu_y)(x - mu_y)^T) / (t + 1),  then  mu_y += (x - mu_y) / n_y
        scores = x^T L mu_c - mu_c^T L mu_c / 2,   L = ((1 - eps) Sigma + eps I)^-1   (eps = shrinkage)

    ``t`` counts all examples seen. Kept as the scatter ``S = t Sigma``: ``S += t/(t+1) d d^T``
    per example, where ``d`` depends on the class means only, so the rank-1 terms are buffered
    and added as one matrix product every ``BUFFER`` examples (the same sum); the precision
    matrix is recomputed when scores are asked for after an update.

    Parameters
    ----------
    shrinkage : float
        ``eps`` above.
    """

    BUFFER = 256

    def __init__(self, shrinkage: float = 1e-4):
        super().__init__()
        self.shrinkage = shrinkage
        self.means, self.counts = np.zeros((0, 0)), np.zeros(0)
        self.scatter = None
        self._pending: list = []  # sqrt(t/(t+1)) d of the examples not yet added to the scatter
        self.t = 0
        self._precision = None

    def partial_fit(self, x, y, classes=None) -> "StreamingLDA":
        x = np.asarray(x, dtype=np.float64)
        self._dim = x.shape[1]
        self._rows([] if classes is None else classes)
        if self.scatter is None:
            self.scatter = np.zeros((self._dim, self._dim))
        for row, xi in zip(self._rows(y), x):
            delta = xi - self.means[row]
            self._pending.append(np.sqrt(self.t / (self.t + 1)) * delta)
            self.counts[row] += 1
            self.means[row] += delta / self.counts[row]
            self.t += 1
            if len(self._pending) >= self.BUFFER:
                self._flush()
        self._precision = None
        return self

    def _flush(self) -> None:
        if self._pending:
            d = np.stack(self._pending)
            self.scatter += d.T @ d
            self._pending = []

    @property
    def covariance(self) -> np.ndarray:
        self._flush()
        return self.scatter / max(1, self.t)

    def scores(self, x) -> np.ndarray:
        if self._precision is None:
            d = self._dim
            self._precision = np.linalg.inv((1 - self.shrinkage) * self.covariance + self.shrinkage * np.eye(d))
        w = self.means @ self._precision
        return x @ w.T - 0.5 * (w * self.means).sum(1)

    def state_bytes(self) -> int:
        return 4 * (self.scatter.size + self.means.size + self.counts.size)


class OnlineSoftmax(_OnlineReference):
    """The backprop reference: a softmax layer trained by SGD on each example once (cross-entropy,
    learning rate ``lr``), inputs standardised by running statistics; a new class adds an output.

    Parameters
    ----------
    lr : float
        The SGD learning rate (`benchmarks/continual.py` chooses it on an i.i.d. stream of train).
    """

    def __init__(self, lr: float = 0.01):
        super().__init__()
        self.lr = lr
        self.weight = None
        self.bias = np.zeros(0)
        self.n, self.mean, self.m2 = 0, None, None

    def _grow(self):
        row = np.zeros((1, self._dim))
        self.weight = row if self.weight is None else np.vstack([self.weight, row])
        self.bias = np.append(self.bias, 0.0)

    def _standardise(self, x):
        sd = np.sqrt(self.m2 / max(1, self.n - 1)) if self.n > 1 else np.ones_like(self.mean)
        return (x - self.mean) / np.maximum(sd, 1e-6)

    def partial_fit(self, x, y, classes=None) -> "OnlineSoftmax":
        x = np.asarray(x, dtype=np.float64)
        self._dim = x.shape[1]
        self._rows([] if classes is None else classes)
        if self.mean is None:
            self.mean, self.m2 = np.zeros(self._dim), np.zeros(self._dim)
        rows = self._rows(y)
        for xi in x:  # running statistics (Welford)
            self.n += 1
            d = xi - self.mean
            self.mean += d / self.n
            self.m2 += d * (xi - self.mean)
        z = self._standardise(x)
        for zi, row in zip(z, rows):
            logits = self.weight @ zi + self.bias
            p = np.exp(logits - logits.max())
            p /= p.sum()
            p[row] -= 1.0  # d(cross-entropy)/d(logits)
            self.weight -= self.lr * np.outer(p, zi)
            self.bias -= self.lr * p
        return self

    def scores(self, x) -> np.ndarray:
        return self._standardise(x) @ self.weight.T + self.bias

    def state_bytes(self) -> int:
        return 4 * (self.weight.size + self.bias.size + 2 * self.mean.size)
