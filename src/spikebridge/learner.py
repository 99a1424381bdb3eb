"""The interface every local learning rule offers, and the registry that names them.

A rule is a class implementing [`Learner`][spikebridge.learner.Learner], registered under a name with
[`register_rule()`][spikebridge.learner.register_rule]; users create one with [`create_learner()`][spikebridge.learner.create_learner] (the names are the
user-facing contract, as ``timm.create_model``'s are). The built-in rules are
``colanet`` ([`colanet`][spikebridge.colanet]) and ``rstdp``, ``sstdp``, ``diehl-cook``
([`rules`][spikebridge.rules]); they are registered when their module is first imported, so
[`list_rules()`][spikebridge.learner.list_rules] (and ``spikebridge --help``) does not import torch.

Example::

    from spikebridge import create_learner, train
    from spikebridge.learner import list_rules

    list_rules()                                  # ['colanet', 'rstdp', 'sstdp', 'diehl-cook']
    learner = create_learner("diehl-cook", n_inputs=64, n_classes=10, eta=0.02, seed=3)
    learner, history = train(learner, x_train, y_train)
"""

from __future__ import annotations

import dataclasses
from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import SpikebridgeError

if TYPE_CHECKING:
    import torch

#: rules shipped with spikebridge -> the module that registers them on import
_BUILTIN = {"colanet": "spikebridge.colanet", "rstdp": "spikebridge.rules", "sstdp": "spikebridge.rules",
            "diehl-cook": "spikebridge.rules"}
_REGISTRY: dict[str, type] = {}


DEFAULT_EPOCHS = 4  # epochs of train(epochs=None) for rules without their own default
ONLINE_WINDOW = 4096  # Learner.partial_fit: thresholds are recalibrated on this many recent examples


class Learner:
    """Base class of a spiking classifier trained by a local rule, as [`train()`][spikebridge.training.train]
    and [`SpikingClassifier`][spikebridge.estimator.SpikingClassifier] drive it.

    A rule subclasses it, sets ``config_class`` (a dataclass of its settings, validated on
    construction; ``config`` is the instance in use) and implements the methods that raise
    ``NotImplementedError`` here. The others have defaults a rule may override.

    Attributes
    ----------
    name : str
        The registry name (set by [`register_rule()`][spikebridge.learner.register_rule]).
    config_class : type
        The dataclass of the rule's settings.
    options : tuple of str
        Constructor keywords that are not config fields (e.g. CoLaNET's ``learn_mode``).
    members : int
        Ensemble members learning in parallel (1 for a single network).
    annealed : bool
        ``True`` if [`learn()`][spikebridge.learner.Learner.learn] takes the schedule's ``rate=`` (from [`rate_at()`][spikebridge.learner.Learner.rate_at]).
    supports_sync : bool
        ``True`` if [`learn()`][spikebridge.learner.Learner.learn] takes ``sync=`` (data-parallel training).
    prepared : bool
        ``True`` once [`prepare()`][spikebridge.learner.Learner.prepare] ran (or the state was loaded): set by the rule.
    generator : torch.Generator
        The seeded generator all the rule's randomness comes from.
    """

    name: str = ""
    config_class: type
    options: tuple = ()
    members: int = 1
    annealed: bool = False
    supports_sync: bool = False
    prepared: bool = False
    _window = None  # partial_fit's most recent examples (rates, labels)

    # ------------------------------------------------------------------ what every rule implements
    def prepare(self, features, labels) -> None:
        """Fit what depends on the training data (rate normaliser, thresholds, sizes) before
        the first epoch; ``features [n, D]``, ``labels [n]``."""
        raise NotImplementedError

    def rates(self, features) -> "torch.Tensor":
        """Firing rates in ``[0, 1]`` of the input channels, ``[n, N]``."""
        raise NotImplementedError

    def learn(self, rates: "torch.Tensor", labels: "torch.Tensor", **kw) -> int:
        """One mini-batch of plasticity on ``rates [K, B, N]`` and ``labels [K, B]``; returns the
        number of plasticity events."""
        raise NotImplementedError

    def end_epoch(self, rates: "torch.Tensor", labels: "torch.Tensor") -> None:
        """Work done once per pass over the data (threshold calibration, neuron labels)."""
        raise NotImplementedError

    def scores(self, features, steps: int | None = None) -> tuple["torch.Tensor", dict]:
        """Spiking simulation: ``(scores [B, C], stats)``; ``scores.argmax(1)`` is the decision,
        ``stats`` holds ``input_spikes`` and ``output_spikes`` (mean per example) and
        ``class_spikes [B, C]`` (each class's spike count as the decision counts it)."""
        raise NotImplementedError

    def synaptic_fan_out(self) -> tuple[float, float]:
        """(synapses reached by one input spike, by one output spike), for SynOps counting."""
        raise NotImplementedError

    def n_neurons(self) -> int:
        """Neurons simulated per example (CoLaNET: the recruited ones), for the membrane-update count."""
        raise NotImplementedError

    def tensors(self) -> dict:
        """The complete state as tensors (with [`metadata()`][spikebridge.learner.Learner.metadata], a checkpoint)."""
        raise NotImplementedError

    def metadata(self) -> dict:
        """JSON-able description: ``rule``, sizes and config."""
        raise NotImplementedError

    @classmethod
    def from_tensors(cls, meta: dict, tensors: dict) -> "Learner":
        """Rebuild a learner from [`metadata()`][spikebridge.learner.Learner.metadata] and [`tensors()`][spikebridge.learner.Learner.tensors]."""
        raise NotImplementedError

    # ------------------------------------------------------------------ defaults
    def default_epochs(self, n_examples: int) -> int:
        """Epochs of ``train(epochs=None)`` on ``n_examples``."""
        return DEFAULT_EPOCHS

    def rate_at(self, seen: int, total: int, epochs: int) -> float:
        """The schedule's learning-rate factor at example ``seen`` of ``total`` (used if ``annealed``)."""
        return 1.0

    def predict_continuous(self, features) -> "torch.Tensor | None":
        """Decisions of a continuous approximation of the network, or None if the rule has none."""
        return None

    def partial_fit(self, features, labels, batch_size: int = 1) -> "Learner":
        """Learn each example once, as it comes (labels are class indices), ``batch_size`` at a time.

        The default runs [`learn()`][spikebridge.learner.Learner.learn] on each mini-batch and then [`end_epoch()`][spikebridge.learner.Learner.end_epoch] on the
        ``ONLINE_WINDOW`` most recent examples (thresholds, neuron labels); the first call
        runs [`prepare()`][spikebridge.learner.Learner.prepare] on its examples if the learner was never prepared. CoLaNET overrides it with its own online
        rule (running statistics, no example kept)."""
        import torch

        import numpy as np
        import torch

        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if not self.prepared:
            self.prepare(features, labels)
        rates = self.rates(features)
        for b in range(0, len(labels), batch_size):
            self.learn(rates[None, b : b + batch_size], labels[None, b : b + batch_size])
        window = (rates, labels) if self._window is None else (torch.cat([self._window[0], rates]),
                                                              torch.cat([self._window[1], labels]))
        self._window = (window[0][-ONLINE_WINDOW:], window[1][-ONLINE_WINDOW:])
        self.end_epoch(*self._window)
        return self

    def add_classes(self, count: int = 1) -> "Learner":
        """Append ``count`` classes (class-incremental learning). Rules whose output layer is
        fixed at construction refuse."""
        raise SpikebridgeError(f"rule {self.name!r} cannot add classes (give every class when it is created)")

    def state_bytes(self) -> int:
        """Bytes of the state kept between examples (what a device would hold): by default every
        tensor of [`tensors()`][spikebridge.learner.Learner.tensors] but the generator's state."""
        return int(sum(t.numel() * t.element_size() for k, t in self.tensors().items() if k != "rng_state"))


def config_from_metadata(config_class: type, meta: dict):
    """The ``config_class`` instance a model file recorded (one-line error on unknown fields)."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    recorded = meta.get("config", {})
    unknown = sorted(set(recorded) - fields)
    if unknown:
        raise SpikebridgeError(f"rule {meta.get('rule')!r} has no setting {', '.join(unknown)} "
                               f"(the file was written for another rule or version)")
    return config_class(**recorded)


def register_rule(name: str):
    """Class decorator: make a [`Learner`][spikebridge.learner.Learner] class available as ``create_learner(name, ...)``.

    The class is built as ``cls(n_inputs, n_classes, config, **options)`` where ``config`` is
    an instance of its ``config_class`` dataclass."""

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, Learner)):
            raise TypeError(f"rule {name!r}: {getattr(cls, '__name__', cls)} must subclass spikebridge.learner.Learner")
        if not dataclasses.is_dataclass(getattr(cls, "config_class", None)):
            raise TypeError(f"rule {name!r}: {cls.__name__}.config_class must be a dataclass of its settings")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return decorate


def list_rules() -> list[str]:
    """Names accepted by [`create_learner()`][spikebridge.learner.create_learner]: the built-in rules, then registered ones."""
    return [*_BUILTIN, *(n for n in _REGISTRY if n not in _BUILTIN)]


def rule_class(name: str) -> type:
    """The class registered as ``name`` (importing the built-in module that defines it)."""
    if name not in _REGISTRY and name in _BUILTIN:
        import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise SpikebridgeError(f"unknown rule {name!r}; choose one of {list_rules()}")
    return _REGISTRY[name]


def rule_settings(name: str) -> list[str]:
    """Every keyword [`create_learner()`][spikebridge.learner.create_learner] accepts for ``name``: config fields, then options."""
    cls = rule_class(name)
    return [f.name for f in dataclasses.fields(cls.config_class)] + list(getattr(cls, "options", ()))


def create_learner(name: str, n_inputs: int, n_classes: int, config: Any = None, **settings) -> Learner:
    """A new, untrained learner of rule ``name`` for ``n_inputs`` features and ``n_classes``.

    Parameters
    ----------
    name : str
        A registered rule: ``"colanet"``, ``"rstdp"``, ``"sstdp"``, ``"diehl-cook"`` or one added
        with `register_rule` (see `list_rules`).
    n_inputs, n_classes : int
        Feature size and number of classes.
    config : dataclass, optional
        An instance of the rule's ``config_class`` (default: its defaults); never modified.
    **settings
        Config fields applied to a copy (``seed=3``, ``steps=16``, ``eta=0.02``...) or the
        rule's ``options`` (CoLaNET's ``learn_mode``). A name the rule does not have is refused.

    Returns
    -------
    Learner
        Train it with `spikebridge.train` or use it through `SpikingClassifier`.
    """
    cls = rule_class(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    options = set(getattr(cls, "options", ()))
    unknown = sorted(set(settings) - fields - options)
    if unknown:
        raise SpikebridgeError(f"rule {name!r} has no setting {', '.join(unknown)}; "
                               f"it accepts {', '.join(rule_settings(name))}")
    if config is None:
        config = cls.config_class()
    elif not isinstance(config, cls.config_class):
        raise SpikebridgeError(f"rule {name!r} takes a {cls.config_class.__name__}, not a {type(config).__name__}")
    config = dataclasses.replace(config, **{k: v for k, v in settings.items() if k in fields})
    return cls(n_inputs, n_classes, config, **{k: v for k, v in settings.items() if k in options})


def check_recorded_shape(name: str, tensors: dict, expected: tuple, meta: dict) -> None:
    """The tensor ``name`` has the shape the recorded sizes (``n_inputs``, ``n_classes``, config)
    give: a file whose metadata and tensors disagree is refused when it is read, not deep in a
    later matrix product."""
    if name not in tensors:
        raise SpikebridgeError(f"the model lacks its {name!r} tensor")
    got = tuple(tensors[name].shape)
    if got != tuple(expected):
        raise SpikebridgeError(f"its {name} are {list(got)} but its recorded sizes (n_inputs {meta.get('n_inputs')}, "
                               f"n_classes {meta.get('n_classes')}) give {list(expected)}: the file is damaged or was edited")


def load_learner(path) -> tuple[Learner, dict]:
    """``(learner, metadata)`` of a model or checkpoint file written by spikebridge."""
    from .io import load_tensors

    tensors, meta = load_tensors(path)
    rule = meta.get("rule")
    if rule not in list_rules():
        raise SpikebridgeError(f"{path} is not a spikebridge model (rule {rule!r})")
    try:
        return rule_class(rule).from_tensors(meta, tensors), meta
    except SpikebridgeError as exc:  # bad recorded settings or sizes: say which file
        raise SpikebridgeError(f"{path}: {exc}") from exc
    except KeyError as exc:
        raise SpikebridgeError(f"{path} is not a complete spikebridge model: it lacks {exc}") from exc
