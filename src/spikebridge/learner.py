"""The interface every local learning rule offers, and the registry that names them.

A rule is a class implementing :class:`Learner`, registered under a name with
:func:`register_rule`; users create one with :func:`create_learner` (the names are the
user-facing contract, as ``timm.create_model``'s are). The built-in rules are
``colanet`` (:mod:`spikebridge.colanet`) and ``rstdp``, ``sstdp``, ``diehl-cook``
(:mod:`spikebridge.rules`); they are registered when their module is first imported, so
:func:`list_rules` (and ``spikebridge --help``) does not import torch.

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
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import SpikebridgeError

if TYPE_CHECKING:
    import torch

#: rules shipped with spikebridge -> the module that registers them on import
_BUILTIN = {"colanet": "spikebridge.colanet", "rstdp": "spikebridge.rules", "sstdp": "spikebridge.rules",
            "diehl-cook": "spikebridge.rules"}
_REGISTRY: dict[str, type] = {}


@runtime_checkable
class Learner(Protocol):
    """A spiking classifier trained by a local rule, as :func:`spikebridge.training.train` drives it.

    Attributes: ``name`` (the registry name), ``config_class`` (a dataclass of the rule's
    settings; ``config`` is the instance in use), ``members`` (ensemble members learning in
    parallel; 1 for single networks) and ``generator`` (the seeded ``torch.Generator`` all
    the rule's randomness comes from). Optional: ``annealed = True`` with ``rate_at(seen,
    total, epochs)`` (the loop then passes ``rate=`` to :meth:`learn`), ``default_epochs(n)``,
    ``supports_sync = True`` (data-parallel training) and ``options`` (constructor keywords
    that are not config fields, e.g. CoLaNET's ``learn_mode``).
    """

    name: str
    members: int

    def prepare(self, features, labels) -> None:
        """Fit what depends on the training data (rate normaliser, thresholds, sizes)
        before the first epoch; ``features [n, D]``, ``labels [n]``."""

    def rates(self, features) -> "torch.Tensor":
        """Firing rates in ``[0, 1]`` of the input channels, ``[n, N]``."""

    def learn(self, rates: "torch.Tensor", labels: "torch.Tensor", **kw) -> int:
        """One mini-batch of plasticity on ``rates [K, B, N]`` and ``labels [K, B]``;
        returns the number of plasticity events."""

    def end_epoch(self, rates: "torch.Tensor", labels: "torch.Tensor") -> None:
        """Work done once per pass over the data (threshold calibration, neuron labels)."""

    def scores(self, features, steps: int | None = None) -> tuple["torch.Tensor", dict]:
        """Spiking simulation: ``(scores [B, C], stats)``; ``scores.argmax(1)`` is the
        decision, ``stats`` holds ``input_spikes`` and ``output_spikes`` (mean per example)
        and ``class_spikes [B, C]`` (each class's spike count as the decision counts it)."""

    def synaptic_fan_out(self) -> tuple[float, float]:
        """(synapses reached by one input spike, by one output spike) for SynOps counting."""

    def tensors(self) -> dict:
        """The complete state as tensors (with :meth:`metadata`, a checkpoint)."""

    def metadata(self) -> dict:
        """JSON-able description: ``rule``, sizes and config."""

    @classmethod
    def from_tensors(cls, meta: dict, tensors: dict) -> "Learner":
        """Rebuild a learner from :meth:`metadata` and :meth:`tensors`."""


def register_rule(name: str):
    """Class decorator: make a :class:`Learner` class available as ``create_learner(name, ...)``.

    The class is built as ``cls(n_inputs, n_classes, config, **options)`` where ``config`` is
    an instance of its ``config_class`` dataclass."""

    def decorate(cls):
        if not dataclasses.is_dataclass(getattr(cls, "config_class", None)):
            raise TypeError(f"rule {name!r}: {cls.__name__}.config_class must be a dataclass of its settings")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return decorate


def list_rules() -> list[str]:
    """Names accepted by :func:`create_learner`: the built-in rules, then registered ones."""
    return [*_BUILTIN, *(n for n in _REGISTRY if n not in _BUILTIN)]


def rule_class(name: str) -> type:
    """The class registered as ``name`` (importing the built-in module that defines it)."""
    if name not in _REGISTRY and name in _BUILTIN:
        import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise SpikebridgeError(f"unknown rule {name!r}; choose one of {list_rules()}")
    return _REGISTRY[name]


def rule_settings(name: str) -> list[str]:
    """Every keyword :func:`create_learner` accepts for ``name``: config fields, then options."""
    cls = rule_class(name)
    return [f.name for f in dataclasses.fields(cls.config_class)] + list(getattr(cls, "options", ()))


def create_learner(name: str, n_inputs: int, n_classes: int, config: Any = None, **settings) -> Learner:
    """A new, untrained learner of rule ``name`` for ``n_inputs`` features and ``n_classes``.

    ``config`` (an instance of the rule's ``config_class``; default: its defaults) is never
    modified: ``settings`` that name config fields (``seed=3``, ``steps=16``, ``eta=0.02``...)
    are applied to a copy; the others must be the rule's ``options``. Unknown names are refused.
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
