"""A scikit-learn classifier around any registered local rule: ``SpikingClassifier``.

::

    from sklearn.pipeline import make_pipeline
    from sklearn.model_selection import GridSearchCV
    from spikebridge import SpikingClassifier

    clf = SpikingClassifier(rule="colanet", seed=0).fit(X_train, y_train)
    clf.predict(X_val); clf.predict_proba(X_val); clf.score(X_val, y_val)
    GridSearchCV(make_pipeline(SpikingClassifier()), {"spikingclassifier__eta_plus": [0.02, 0.04]}).fit(X, y)

Labels may be any values (``classes_`` holds them; the rules see ``0..C-1``). Every keyword
other than ``rule``, ``epochs``, ``batch_size`` and ``progress`` is a setting of the rule
([`rule_settings()`][spikebridge.learner.rule_settings]: its config fields, e.g. ``seed``, ``steps``,
``eta_plus``, and options such as CoLaNET's ``learn_mode``), visible to ``get_params`` and
``set_params``, so grid searches reach them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .errors import SpikebridgeError
from .learner import create_learner, load_learner, rule_settings



class SpikingClassifier(ClassifierMixin, BaseEstimator):
    """Spiking classifier trained with the local rule ``rule`` (see [`list_rules()`][spikebridge.learner.list_rules]).

    Parameters
    ----------
    rule : str
        Registered rule name: ``"colanet"`` (default), ``"rstdp"``, ``"sstdp"``, ``"diehl-cook"``.
    epochs : int or None
        Passes over the data in [`fit()`][spikebridge.estimator.SpikingClassifier.fit]; ``None`` takes the rule's default (CoLaNET adapts
        it to the data size, the other rules use 4).
    batch_size : int
        Examples per plasticity update (1 is the exact online rule).
    progress : bool
        Show a progress bar while training.
    **settings
        Settings of the rule (config fields and options), e.g. ``seed=3``, ``steps=16``,
        ``eta_plus=0.05`` (CoLaNET), ``eta=0.02`` (the STDP rules).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels, in the order of the columns of [`predict_proba()`][spikebridge.estimator.SpikingClassifier.predict_proba].
    learner_ : Learner
        The trained spiking network (e.g. [`CoLaNETLearner`][spikebridge.colanet.CoLaNETLearner]).
    n_features_in_ : int
    """

    def __init__(self, rule: str = "colanet", *, epochs: int | None = None, batch_size: int = 16,
                 progress: bool = False, **settings):
        self.rule = rule
        self.epochs = epochs
        self.batch_size = batch_size
        self.progress = progress
        self._settings = dict(settings)  # the rule's settings, read as attributes (clf.seed) and params

    def __getattr__(self, name: str):
        settings = self.__dict__.get("_settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep: bool = True) -> dict:
        params = super().get_params(deep)
        params.update(self._settings)
        return params

    def set_params(self, **params) -> "SpikingClassifier":
        own = set(super().get_params(deep=False))
        if "rule" in params:
            self.rule = params.pop("rule")
        try:
            accepted = set(rule_settings(self.rule))
        except (SpikebridgeError, TypeError):  # a bad rule is reported by fit (sklearn: set_params does not raise)
            accepted = None
        for name, value in params.items():
            if name in own:
                setattr(self, name, value)
            elif accepted is None or name in accepted:
                self._settings[name] = value
            else:
                raise ValueError(f"Invalid parameter {name!r} for SpikingClassifier(rule={self.rule!r}); "
                                 f"valid: {sorted(own)} and the rule's settings {sorted(accepted)}")
        return self

    def _check_params(self) -> None:
        """The checks of the rule's config type and of [`train()`][spikebridge.training.train], run
        first by [`fit()`][spikebridge.estimator.SpikingClassifier.fit] and [`partial_fit()`][spikebridge.estimator.SpikingClassifier.partial_fit] (``set_params`` does not raise, as
        scikit-learn asks): a bad value is one `SpikebridgeError`
        (a ``ValueError``) naming it, before any work."""
        import dataclasses

        from .learner import rule_class
        from .training import check_schedule

        check_schedule(self.epochs, self.batch_size)
        config_class = rule_class(self.rule).config_class
        fields = {f.name for f in dataclasses.fields(config_class)}
        config_class(**{k: v for k, v in self._settings.items() if k in fields})

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.classifier_tags.poor_score = True  # sklearn's synthetic checks are not what a spiking rule is tuned for
        return tags

    def _new_learner(self, n_inputs: int, n_classes: int):
        return create_learner(self.rule, n_inputs, n_classes, **self._settings)

    # ------------------------------------------------------------------ training
    def fit(self, X, y) -> "SpikingClassifier":
        """Train a new network on ``X [n, D]`` and labels ``y [n]`` (any hashable values)."""
        from .training import train

        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        learner = self._new_learner(X.shape[1], len(self.classes_))
        self.learner_, self.history_ = train(learner, X, codes, epochs=self.epochs, batch_size=self.batch_size,
                                             progress=self.progress)
        return self

    def partial_fit(self, X, y, classes=None) -> "SpikingClassifier":
        """Learn each example of ``X, y`` once, as it comes (online learning), ``batch_size`` at a time.

        The first call creates the network for ``classes`` (default: the labels of ``y``).
        Labels not seen before are added with [`add_classes()`][spikebridge.estimator.SpikingClassifier.add_classes] (CoLaNET appends a column per
        class and freezes the existing ones; the other rules need every class in the first
        call's ``classes``). CoLaNET keeps running statistics instead of examples
        ([`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit]); for the other rules, thresholds (and
        Diehl & Cook's neuron labels) are recalibrated on a running window of recent examples.
        """
        first = not hasattr(self, "learner_")
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float32, reset=first)
        check_classification_targets(y)
        if first:
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
            self.learner_ = self._new_learner(X.shape[1], len(self.classes_))
        new = np.setdiff1d(np.unique(y), self.classes_)
        if len(new):
            self.add_classes(new)
        order = {c: i for i, c in enumerate(self.classes_.tolist())}
        codes = np.array([order[c] for c in y.tolist()], dtype=np.int64)
        self.learner_.partial_fit(X, codes, batch_size=self.batch_size)
        return self

    def add_classes(self, classes) -> "SpikingClassifier":
        """Make room for new labels ``classes`` (class-incremental learning; CoLaNET only).

        Each new class gets an empty column; the existing columns are frozen, so the decisions
        on inputs of the old classes stay as they were until examples of the new classes are
        learned ([`add_classes()`][spikebridge.colanet.CoLaNET.add_classes])."""
        check_is_fitted(self, "learner_")
        new = np.asarray(classes)
        if new.ndim != 1 or len(new) == 0:
            raise SpikebridgeError(f"add_classes takes a non-empty list of labels, not {classes!r}")
        known = np.intersect1d(new, self.classes_)
        if len(known):
            raise SpikebridgeError(f"add_classes: labels {known.tolist()} are classes already")
        if len(np.unique(new)) != len(new):
            raise SpikebridgeError(f"add_classes: labels {new.tolist()} repeat a label")
        try:
            self.learner_.add_classes(len(new))
        except SpikebridgeError as exc:
            raise SpikebridgeError(f"labels {new.tolist()} were not in the first partial_fit call's classes; {exc} "
                                   f"(pass classes= on the first call)") from None
        self.classes_ = np.concatenate([self.classes_, new])
        return self

    def state_bytes(self) -> int:
        """Bytes of the state the network keeps between examples (what a device would hold)."""
        check_is_fitted(self, "learner_")
        return self.learner_.state_bytes()

    # ------------------------------------------------------------------ inference
    def _counts(self, X):
        check_is_fitted(self, "learner_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        scores, stats = self.learner_.scores(X)
        return scores, stats["class_spikes"]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities from spike counts: each class's share of the output spikes
        (``stats["class_spikes"]`` of `scores()`), smoothed by a small constant so
        that a silent network gives uniform rows; rows sum to 1 and their argmax is the rule's
        decision (its tie-breaks by first spike / membrane potential included)."""
        import torch

        scores, counts = self._counts(X)
        eps = 1e-3
        p = counts.double() + eps * (1.0 + torch.nn.functional.one_hot(scores.argmax(1), counts.shape[1]).double())
        return (p / p.sum(1, keepdim=True)).numpy()

    def predict(self, X) -> np.ndarray:
        """The label of the class with the most output spikes (the spiking simulation's decision)."""
        check_is_fitted(self, "learner_")
        return self.classes_[self.predict_proba(X).argmax(1)]

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> Path:
        """Write the trained network, ``classes_`` and parameters to one safetensors file."""
        from .io import save_tensors

        check_is_fitted(self, "learner_")
        path = Path(path)
        meta = {**self.learner_.metadata(), "classes": self.classes_.tolist(),
                "estimator": {"params": self.get_params(deep=False), "n_features_in": int(self.n_features_in_)}}
        save_tensors(path, self.learner_.tensors(), meta)
        return path

    @classmethod
    def load(cls, path) -> "SpikingClassifier":
        """The classifier [`save()`][spikebridge.estimator.SpikingClassifier.save] wrote (ready to predict or to continue with partial_fit)."""
        learner, meta = load_learner(path)
        saved = meta.get("estimator")
        if saved is None:  # a model written by ``spikebridge train``: classes are its class names
            saved = {"params": {"rule": meta["rule"]}, "n_features_in": meta["n_inputs"]}
        clf = cls(**saved["params"])
        clf.learner_, clf.n_features_in_ = learner, saved["n_features_in"]
        clf.classes_ = np.asarray(meta.get("classes") or np.arange(meta["n_classes"]))
        if len(clf.classes_) != meta["n_classes"]:
            raise SpikebridgeError(f"{path}: {len(clf.classes_)} class labels for {meta['n_classes']} classes")
        return clf
