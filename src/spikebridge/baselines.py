"""Backprop and non-spiking references on the same features as the spiking classifier.

Every reference sees exactly the training features the local rule sees and is scored on
the same val split; any setting it has is chosen on the training split only:

* :func:`tuned_logistic` -- multinomial logistic regression on standardised features,
  ``C`` chosen by stratified k-fold cross-validation on train over a log grid that is
  widened until the choice is not at its edge. This is *the best backprop linear probe*.
* :func:`logistic_baseline` -- the same with a fixed ``C`` (1 by default), for reference.
* :func:`mlp_baseline` -- one hidden ReLU layer trained with backprop (Adam), early stopping
  on a held-out tenth of train.
* :func:`nearest_class_mean` -- the class means of the features (no training).

Each returns ``{"top1", "top5", "train_seconds", ...}``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

#: decades of ``C`` searched first by :func:`tuned_logistic` (widened when the best is at an edge)
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
