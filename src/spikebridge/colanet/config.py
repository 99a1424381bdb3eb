"""CoLaNET's settings: [`CoLaNETConfig`][spikebridge.colanet.CoLaNETConfig], the sizes and epochs chosen
from the training data, and the learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .. import checks
from ..errors import SpikebridgeError

MAX_MICROCOLUMNS = 7
EXAMPLES_PER_MICROCOLUMN = 200  # adaptive_config: one prototype per this many training examples of a class
PRESENTATIONS = 60_000  # adaptive_epochs: examples presented in a run (within [10, 30] epochs)
REFERENCE_EPOCHS = 10  # eta_plus / eta_minus are the starting rates of a run of this many epochs
CALIBRATION_WINDOW = 4096  # theta is calibrated on (at most) this many of the most recent training examples
DRIVE_MEDIAN_STEP = 0.02  # partial_fit: the running median of the winner's drive moves by 2 % per example


def adaptive_config(config: "CoLaNETConfig", n_examples: int, n_classes: int) -> "CoLaNETConfig":
    """A copy of ``config`` with ``microcolumns=None`` resolved from the training data:
    ``M = clip(round(n_examples / (n_classes * EXAMPLES_PER_MICROCOLUMN)), 1, 7)``.

    A prototype needs enough examples of its kind: on splits of train, one microcolumn per
    class was as accurate as seven on digits, Imagenette and imagenet64 and 2.9 points better
    with 50 examples per class (``benchmarks/results/rule_study.json``)."""
    if config.microcolumns is not None:
        return replace(config)
    per_class = n_examples / max(1, n_classes)
    return replace(config, microcolumns=int(np.clip(round(per_class / EXAMPLES_PER_MICROCOLUMN), 1, MAX_MICROCOLUMNS)))


def adaptive_epochs(n_examples: int) -> int:
    """Epochs of a default run: ``clip(ceil(PRESENTATIONS / n), 10, 30)``, so small data sets get
    as many plasticity events as large ones (digits 30, Imagenette and imagenet64 10)."""
    return int(np.clip(math.ceil(PRESENTATIONS / max(1, n_examples)), REFERENCE_EPOCHS, 30))


def schedule_rate(seen: int, total: int, epochs: int, anneal: bool = True) -> float:
    r"""Learning-rate factor ``s`` of the example at position ``seen`` of a run of ``total``:

        s = (REFERENCE_EPOCHS / epochs)^0.7 (if epochs < REFERENCE_EPOCHS, else 1) * (1 - seen / total)

    Linear annealing to zero over the run; shorter runs (a single pass) start higher so that
    they learn as far as a full run (the exponent was chosen on splits of imagenet64 train)."""
    boost = (REFERENCE_EPOCHS / epochs) ** 0.7 if epochs < REFERENCE_EPOCHS else 1.0
    return boost * (1.0 - seen / max(1, total)) if anneal else 1.0


@dataclass
class CoLaNETConfig:
    """Settings of CoLaNET, validated once on construction (one-line errors naming the setting).

    Defaults are shared by every data set (no per-data-set tuning): the rates and margin come from
    an earlier Optuna search; ON/OFF coding, signed weights, annealing and the adaptive
    microcolumns/epochs from the study in ``benchmarks/rule_study.py`` (splits of train only);
    class-balanced replay from ``benchmarks/continual_study.py``.

    Parameters
    ----------
    microcolumns : int | None
        M: prototypes per class column; None: from the data (adaptive_config). Default ``None``.
    eta_plus : float
        Dopamine-modulated potentiation rate (at the start of the schedule). Default ``0.039``.
    eta_minus : float
        Anti-Hebbian depression rate (at the start of the schedule). Default ``0.045``.
    margin : float
        Error when a wrong column comes within margin * w_max * sum(r). Default ``0.091``.
    w_max : float
        Upper weight bound. Default ``1.0``.
    w_min : float
        Lower weight bound; signed weights as in the authors' toolchain (0 = excitatory only). Default ``-1.0``.
    normalisation : str
        Rate coding of features: "onoff" (standardised ON/OFF channels) or "percentile". Default ``"onoff"``.
    saturation : float
        Onoff: a channel saturates at |z| = saturation standard deviations. Default ``3.0``.
    anneal : bool
        Learning rates decay linearly over a training run (schedule_rate). Default ``True``.
    steps : int
        T: time steps per example. Default ``32``.
    coder : str
        "regular" (deterministic) or "bernoulli". Default ``"regular"``.
    dt : float
        Simulation time step (s). Default ``1e-3``.
    tau : float
        Membrane time constant (s); beta = exp(-dt/tau). Default ``20e-3``.
    lateral_inhibition : float
        G, in units of theta. Default ``10.0``.
    first_spike_step : float
        Threshold calibration target. Default ``4.0``.
    percentile : float
        Percentile normalisation: the feature value coded as rate 1. Default ``99.85``.
    ensemble : int
        K independently seeded members. Default ``1``.
    seed : int
        Seed of every random draw (member initialisation, bagging, replay). Default ``0``.
    replay : int
        Class-incremental: replayed examples of frozen classes per new example (balanced: per old/new class ratio 1). Default ``2``.
    balanced_replay : bool
        Replay in proportion to the old / new classes seen (StreamStatistics.replay_count) ... Default ``True``.
    replay_cap : int
        ... at most replay_cap * replay per new example. Default ``4``.
    replay_noise : float
        Replayed features: class mean + replay_noise * class sd * N(0, 1). Default ``1.0``.
    replay_rank : int
        Replay's shared within-class correlations: this many directions (0: independent features). Default ``64``.
    stream_boost : float
        Partial_fit: a column's learning-rate factor for its first examples. Default ``5.0``.
    stream_halflife : float
        Partial_fit: ... halved after this many examples of its class (per column). Default ``50.0``.
    stream_centred : bool
        Partial_fit with frozen columns: covariance form (presynaptic term r - mean rate). Default ``True``.
    """

    microcolumns: int | None = None
    eta_plus: float = 0.039
    eta_minus: float = 0.045
    margin: float = 0.091
    w_max: float = 1.0
    w_min: float = -1.0
    normalisation: str = "onoff"
    saturation: float = 3.0
    anneal: bool = True
    steps: int = 32
    coder: str = "regular"
    dt: float = 1e-3
    tau: float = 20e-3
    lateral_inhibition: float = 10.0
    first_spike_step: float = 4.0
    percentile: float = 99.85
    ensemble: int = 1
    seed: int = 0
    replay: int = 2
    balanced_replay: bool = True
    replay_cap: int = 4
    replay_noise: float = 1.0
    replay_rank: int = 64
    stream_boost: float = 5.0
    stream_halflife: float = 50.0
    stream_centred: bool = True

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Refuse values that make a useless or broken model (one line naming the setting);
        run on every construction, so the API, ``--config`` files and flags share it."""
        checks.optional_integer("microcolumns", self.microcolumns, 1)
        for name in ("eta_plus", "eta_minus", "margin", "lateral_inhibition"):
            checks.number(name, getattr(self, name), 0.0)
        checks.number("w_max", self.w_max, above=0.0)
        checks.number("w_min", self.w_min)
        if not self.w_min < self.w_max:
            raise SpikebridgeError(f"w_min must be < w_max (got w_min {self.w_min}, w_max {self.w_max})")
        checks.choice("normalisation", self.normalisation, ("onoff", "percentile"))
        for name in ("saturation", "dt", "tau", "first_spike_step"):
            checks.number(name, getattr(self, name), above=0.0)
        checks.boolean("anneal", self.anneal)
        checks.steps("steps", self.steps)
        checks.choice("coder", self.coder, ("regular", "bernoulli"))
        checks.number("percentile", self.percentile, maximum=100.0, above=0.0)
        checks.integer("ensemble", self.ensemble, 1)
        checks.seed("seed", self.seed)
        checks.integer("replay", self.replay, 0)
        checks.boolean("balanced_replay", self.balanced_replay)
        checks.integer("replay_cap", self.replay_cap, 1)
        checks.number("replay_noise", self.replay_noise, 0.0)
        checks.integer("replay_rank", self.replay_rank, 0)
        checks.number("stream_boost", self.stream_boost, above=0.0)
        checks.number("stream_halflife", self.stream_halflife, above=0.0)
        checks.boolean("stream_centred", self.stream_centred)

    @property
    def beta(self) -> float:
        return math.exp(-self.dt / self.tau)
