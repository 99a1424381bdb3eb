r"""Other local learning rules on a single LIF output layer, each a registered
[`Learner`][spikebridge.learner.Learner] (``create_learner("rstdp" | "sstdp" | "diehl-cook", ...)``),
so one training loop ([`train()`][spikebridge.training.train]) drives them and CoLaNET alike.

All three simulate ``J`` LIF neurons ([`lif_population()`][spikebridge.neurons.lif_population]: subtractive reset, decay
``beta``) on the input spikes ``x[t]`` of ``T`` steps, with traces
``x~[t] = lambda x~[t-1] + x[t]`` (presynaptic) and ``s~[t]`` (postsynaptic),
``lambda = exp(-dt / tau_trace)``, and keep ``W`` in ``[0, w_max]`` with each neuron's total
synaptic resource ``sum_i W[j,i]`` rescaled to its initial value after each update.

* **R-STDP** (reward-modulated STDP, Izhikevich 2007; Fremaux & Gerstner 2016):
  eligibility ``e[j,i] = sum_t (s_j[t] x~_i[t] - a_minus x_i[t] s~_j[t])``; reward
  ``R = +1`` if the decision (most spikes) is right else ``-1``, minus its running mean
  (reward-prediction error); ``dW = eta * R * e``. One neuron per class, with lateral
  inhibition (winner-take-all) so the reward is credited to the neuron that decided, and
  the adaptive thresholds described for Diehl & Cook so that no neuron monopolises winning.
* **Supervised STDP** (teacher forcing, as in Legenstein et al. 2005): the target neuron
  receives a teacher current that makes it fire every ``teacher_period`` steps; STDP on
  the teacher spikes potentiates ``dW[y,i] = eta * sum_t s^teach_y[t] x~_i[t]``, and every
  other neuron that fired is depressed ``dW[j,i] = -eta * sum_t s_j[t] x~_i[t]``.
* **Diehl & Cook (2015)**: ``J = C * neurons_per_class`` unlabelled neurons with all-to-all
  lateral inhibition (winner-take-all) and adaptive thresholds, example by example
  ``theta_j <- theta_decay * theta_j + theta_plus * (spikes of j)`` (the same for any
  training batch size); unsupervised STDP
  ``dW[j,i] = eta * sum_t s_j[t] (x~_i[t] - x_tar)``. After each epoch every neuron is
  labelled with the class it responds to most; the prediction is the class whose neurons
  fire most on average.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import checks
from .coding import RateNormaliser, encode
from .errors import SpikebridgeError, require_finite
from .learner import Learner, check_recorded_shape, config_from_metadata, register_rule
from .neurons import PopulationParameters, lif_population


CALIBRATION_EXAMPLES = 2048  # thresholds are calibrated on (at most) this many training examples
LABEL_BATCH = 1024  # Diehl & Cook: examples simulated at once while labelling the neurons
REWARD_BASELINE_DECAY = 0.99  # R-STDP: the running mean reward moves by 1 % per batch


@dataclass
class SingleLayerConfig:
    """Settings every single-layer rule shares (validated on construction).

    Parameters
    ----------
    steps, seed : int
        Time steps per example; the seed of every random draw.
    coder : str
        ``"regular"`` (deterministic) or ``"bernoulli"`` spikes.
    dt, tau, tau_trace : float
        Time step, membrane and trace time constants (s).
    eta, w_max : float
        Learning rate; upper weight bound (weights stay in ``[0, w_max]``).
    first_spike_step, percentile : float
        Threshold calibration target (the most driven neuron first fires near this step); the
        percentile of the training features coded as rate 1.
    """

    steps: int = 32
    coder: str = "regular"
    dt: float = 1e-3
    tau: float = 20e-3
    tau_trace: float = 20e-3
    eta: float = 0.01
    w_max: float = 1.0
    first_spike_step: float = 4.0
    percentile: float = 99.0
    seed: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Refuse values that make a useless or broken model (one line naming the setting);
        run on every construction, so the API, ``--config`` files and flags share it."""
        checks.steps("steps", self.steps)
        checks.choice("coder", self.coder, ("regular", "bernoulli"))
        for name in ("dt", "tau", "tau_trace", "w_max", "first_spike_step"):
            checks.number(name, getattr(self, name), above=0.0)
        checks.number("eta", self.eta, 0.0)
        checks.number("percentile", self.percentile, maximum=100.0, above=0.0)
        checks.seed("seed", self.seed)


@dataclass
class CompetitionConfig(SingleLayerConfig):
    """Winner-take-all and adaptive thresholds (R-STDP, Diehl & Cook), beside `SingleLayerConfig`'s.

    Parameters
    ----------
    theta_plus, theta_decay : float
        Adaptive threshold step per spike (fraction of theta); its per-example decay.
    lateral_inhibition : float
        Lateral inhibition, in units of theta.
    """

    theta_plus: float = 0.05  # adaptive threshold step (fraction of theta)
    theta_decay: float = 0.999
    lateral_inhibition: float = 10.0

    def validate(self) -> None:
        super().validate()
        for name in ("theta_plus", "lateral_inhibition"):
            checks.number(name, getattr(self, name), 0.0)
        checks.number("theta_decay", self.theta_decay, 0.0, 1.0)


@dataclass
class RSTDPConfig(CompetitionConfig):
    """R-STDP's settings: `CompetitionConfig`'s and ``a_minus``, the weight of the post-before-pre
    (depression) term of the eligibility."""

    a_minus: float = 0.5  # weight of the post-before-pre (depression) term of the eligibility

    def validate(self) -> None:
        super().validate()
        checks.number("a_minus", self.a_minus, 0.0)


@dataclass
class SupervisedSTDPConfig(SingleLayerConfig):
    """Supervised STDP's settings: `SingleLayerConfig`'s and ``teacher_period``, the teacher
    making the target neuron fire every ``teacher_period`` steps."""

    teacher_period: int = 2  # the teacher makes the target neuron fire every teacher_period steps

    def validate(self) -> None:
        super().validate()
        checks.integer("teacher_period", self.teacher_period, 1)


@dataclass
class DiehlCookConfig(CompetitionConfig):
    """Diehl & Cook's settings: `CompetitionConfig`'s, ``neurons_per_class`` (unlabelled neurons
    per class) and ``x_tar`` (the presynaptic target trace of the STDP rule)."""

    neurons_per_class: int = 10
    x_tar: float = 0.4  # presynaptic target trace

    def validate(self) -> None:
        super().validate()
        checks.integer("neurons_per_class", self.neurons_per_class, 1)
        checks.number("x_tar", self.x_tar, 0.0)


class SingleLayerLearner(Learner):
    """Shared machinery: rates, one LIF layer, resource normalisation, spike-count decision.

    Parameters
    ----------
    n_inputs, n_classes : int
        Features per example and classes.
    config : SingleLayerConfig, optional
        An instance of the rule's ``config_class`` (default: its defaults).
    """

    config_class = SingleLayerConfig

    def __init__(self, n_inputs: int, n_classes: int, config: SingleLayerConfig | None = None):
        self.n_inputs, self.n_classes = n_inputs, n_classes
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise SpikebridgeError(f"rule {self.name!r} takes a {self.config_class.__name__}, "
                                   f"not a {type(self.config).__name__}")
        self._build()

    def _build(self) -> None:
        self.generator = torch.Generator().manual_seed(self.config.seed)
        J = self.n_neurons()
        self.weights = 0.1 + 0.2 * torch.rand(J, self.n_inputs, generator=self.generator)
        self.resource = self.weights.sum(1).mean()
        self.threshold = torch.ones(1)
        self.adaptive = torch.zeros(J)  # Diehl & Cook only
        self.neuron_label = torch.arange(J) % self.n_classes
        self.normaliser: RateNormaliser | None = None
        self.reward_baseline = torch.zeros(1)

    def n_neurons(self) -> int:
        return self.n_classes

    @property
    def lateral(self) -> float:
        return 0.0

    def prepare(self, features, labels=None) -> None:
        self.normaliser = RateNormaliser.fit(features, "percentile", percentile=self.config.percentile)
        self.calibrate(self.rates(features[:CALIBRATION_EXAMPLES]))
        self.prepared = True

    def rates(self, features) -> torch.Tensor:
        return self.normaliser(features)

    def _beta(self, tau: float) -> float:
        return math.exp(-self.config.dt / tau)

    def _spikes(self, rates: torch.Tensor, steps: int | None = None, seed: int = 0) -> torch.Tensor:
        c = self.config
        return encode(rates, steps or c.steps, c.coder, seed=seed, dt=c.dt, max_rate=1.0 / c.dt).float()

    def _run(self, x: torch.Tensor, keep_spikes: bool = False):
        """``x [T, B, N]`` -> population record of the layer. Per-neuron thresholds
        (adaptive in Diehl & Cook) are applied by scaling each neuron's current instead."""
        thr = self.threshold * (1 + self.adaptive)  # [J]
        currents = torch.einsum("tbn,jn->tbj", x, self.weights) / thr
        params = PopulationParameters(self._beta(self.config.tau), torch.ones(1), self.lateral)
        return lif_population(currents.unsqueeze(0), params, keep_spikes)

    def _traces(self, seq: torch.Tensor) -> torch.Tensor:
        lam = self._beta(self.config.tau_trace)
        out, tr = torch.empty_like(seq), torch.zeros_like(seq[0])
        for t in range(seq.shape[0]):
            tr = lam * tr + seq[t]
            out[t] = tr
        return out

    def _post_spikes(self, x: torch.Tensor) -> torch.Tensor:
        """Spike trains ``[T, B, J]`` of the layer."""
        return self._run(x, keep_spikes=True).spikes[:, 0]

    def _homeostasis(self, post: torch.Tensor) -> None:
        """Adaptive thresholds, example by example: ``a_j <- theta_decay * a_j + theta_plus * n_j``
        (``n_j`` the spikes of neuron ``j`` on the example). For the ``B`` examples of a batch,
        in order: ``a <- d^B a + theta_plus * sum_b d^(B-1-b) n_b``, so the thresholds do not
        depend on the batch size."""
        per_example = post.sum(0)  # [B, J]
        d = self.config.theta_decay
        weights = d ** torch.arange(per_example.shape[0] - 1, -1, -1, dtype=torch.float32)
        self.adaptive = self.adaptive * d ** per_example.shape[0] + self.config.theta_plus * (weights @ per_example)

    def _normalise(self) -> None:
        self.weights.clamp_(0, self.config.w_max)
        self.weights.mul_(self.resource / self.weights.sum(1, keepdim=True).clamp_min(1e-9))
        self.weights.clamp_(0, self.config.w_max)

    def class_spikes(self, counts: torch.Tensor) -> torch.Tensor:
        """Mean spikes of each class's neurons ``[B, C]`` from neuron spike counts ``[B, J]``."""
        onehot = torch.nn.functional.one_hot(self.neuron_label, self.n_classes).float()
        return counts @ onehot / onehot.sum(0).clamp_min(1)

    def class_scores(self, rec) -> torch.Tensor:
        """Class scores ``[B, C]``: spike counts, ties broken by the final potential."""
        return self.class_spikes(rec.counts[0] + 1e-3 * torch.tanh(rec.v_final[0]))

    @torch.no_grad()
    def scores(self, features, steps: int | None = None, batch_size: int = 512):
        """Spiking class scores ``[B, C]`` and ``stats``: mean input / output spikes per example
        and ``class_spikes [B, C]`` (mean spikes of each class's neurons)."""
        out, counts, n_in, n_out = [], [], 0.0, 0.0
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        require_finite(features, "input")
        batch_size = checks.simulation_batch(batch_size, steps or self.config.steps, self.n_inputs, self.n_neurons())
        for b in range(0, len(features), batch_size):
            x = self._spikes(self.rates(features[b : b + batch_size]), steps, seed=b)
            rec = self._run(x)
            out.append(self.class_scores(rec))
            counts.append(self.class_spikes(rec.counts[0]))
            n_in += x.sum().item()
            n_out += rec.counts.sum().item()
        n = max(1, len(features))
        empty = torch.zeros(0, self.n_classes)
        return (torch.cat(out) if out else empty,
                {"input_spikes": n_in / n, "output_spikes": n_out / n, "class_spikes": torch.cat(counts) if counts else empty})

    def synaptic_fan_out(self) -> tuple[float, float]:
        J = float(self.n_neurons())
        return J, (J - 1) if self.lateral else 0.0

    @torch.no_grad()
    def calibrate(self, rates: torch.Tensor) -> None:
        """Set the threshold so the most driven neuron first fires near ``first_spike_step``."""
        drive = rates[:CALIBRATION_EXAMPLES] @ self.weights.T
        self.threshold = (self.config.first_spike_step * drive.max(1).values.median()).clamp_min(1e-6).view(1)

    def end_epoch(self, rates: torch.Tensor, labels: torch.Tensor) -> None:
        self.calibrate(rates)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights, "threshold": self.threshold, "adaptive": self.adaptive,
                "neuron_label": self.neuron_label, **self.normaliser.tensors(),
                "reward_baseline": self.reward_baseline, "rng_state": self.generator.get_state()}

    def metadata(self) -> dict:
        return {"rule": self.name, "n_inputs": self.n_inputs, "n_classes": self.n_classes, "config": asdict(self.config)}

    @classmethod
    def from_tensors(cls, meta: dict, tensors: dict[str, torch.Tensor]):
        obj = cls(meta["n_inputs"], meta["n_classes"], config_from_metadata(cls.config_class, meta))
        check_recorded_shape("weights", tensors, obj.weights.shape, meta)
        for k in ("weights", "threshold", "adaptive", "neuron_label", "reward_baseline"):
            setattr(obj, k, tensors[k].clone())
        obj.normaliser = RateNormaliser.from_tensors(tensors, {"kind": "percentile", "parameter": obj.config.percentile})
        obj.generator.set_state(tensors["rng_state"])
        obj.prepared = True
        return obj


@register_rule("rstdp")
class RSTDP(SingleLayerLearner):
    """Reward-modulated STDP (module docstring); settings `RSTDPConfig`."""

    name = "rstdp"
    config_class = RSTDPConfig

    @property
    def lateral(self) -> float:  # winner-take-all, so the reward is credited to the winner (Mozafari et al. 2018)
        return self.config.lateral_inhibition

    @torch.no_grad()
    def learn(self, rates: torch.Tensor, labels: torch.Tensor) -> int:
        r, y = rates.reshape(-1, rates.shape[-1]), labels.reshape(-1)
        x = self._spikes(r, seed=int(torch.randint(1 << 30, (1,), generator=self.generator)))
        post = self._post_spikes(x)
        pre_tr, post_tr = self._traces(x), self._traces(post)
        elig = torch.einsum("tbj,tbn->bjn", post, pre_tr) - self.config.a_minus * torch.einsum("tbj,tbn->bjn", post_tr, x)
        counts = post.sum(0)
        correct = (counts.argmax(1) == y).float() * (counts.max(1).values > 0)
        reward = 2 * correct - 1 - self.reward_baseline
        d = REWARD_BASELINE_DECAY
        self.reward_baseline = d * self.reward_baseline + (1 - d) * (2 * correct.mean() - 1)
        # silent layer: no eligibility; nudge the target neuron so learning can start
        self.weights += self.config.eta * torch.einsum("b,bjn->jn", reward, elig) / len(y)
        silent = counts.sum(1) == 0
        if silent.any():
            self.weights.index_add_(0, y[silent], self.config.eta * r[silent])
        self._normalise()
        self._homeostasis(post)
        return int((correct == 0).sum())


@register_rule("sstdp")
class SupervisedSTDP(SingleLayerLearner):
    """Supervised STDP with a teacher current (module docstring); settings `SupervisedSTDPConfig`."""

    name = "sstdp"
    config_class = SupervisedSTDPConfig

    @torch.no_grad()
    def learn(self, rates: torch.Tensor, labels: torch.Tensor) -> int:
        r, y = rates.reshape(-1, rates.shape[-1]), labels.reshape(-1)
        x = self._spikes(r, seed=int(torch.randint(1 << 30, (1,), generator=self.generator)))
        T, B = x.shape[:2]
        post = self._post_spikes(x)
        teach = torch.zeros(T, B, self.n_classes)
        teach[self.config.teacher_period - 1 :: self.config.teacher_period, torch.arange(B), y] = 1.0
        pre_tr = self._traces(x)
        wrong = post * (1 - torch.nn.functional.one_hot(y, self.n_classes).float())
        delta = torch.einsum("tbj,tbn->jn", teach, pre_tr) - torch.einsum("tbj,tbn->jn", wrong, pre_tr)
        self.weights += self.config.eta * delta / (B * T)
        self._normalise()
        return int((wrong.sum(0).sum(1) > 0).sum())


@register_rule("diehl-cook")
class DiehlCook(SingleLayerLearner):
    """Diehl & Cook's unsupervised STDP (module docstring); settings `DiehlCookConfig`."""

    name = "diehl-cook"
    config_class = DiehlCookConfig

    def n_neurons(self) -> int:
        return self.n_classes * self.config.neurons_per_class

    @property
    def lateral(self) -> float:
        return self.config.lateral_inhibition

    @torch.no_grad()
    def learn(self, rates: torch.Tensor, labels: torch.Tensor) -> int:
        r = rates.reshape(-1, rates.shape[-1])
        x = self._spikes(r, seed=int(torch.randint(1 << 30, (1,), generator=self.generator)))
        post = self._post_spikes(x)
        pre_tr = self._traces(x)
        delta = torch.einsum("tbj,tbn->jn", post, pre_tr - self.config.x_tar)
        self.weights += self.config.eta * delta / len(r)
        self._normalise()
        self._homeostasis(post)
        return int(len(r))

    @torch.no_grad()
    def end_epoch(self, rates: torch.Tensor, labels: torch.Tensor) -> None:
        super().end_epoch(rates, labels)
        counts = torch.zeros(self.n_neurons(), self.n_classes)
        for b in range(0, len(rates), LABEL_BATCH):
            rec = self._run(self._spikes(rates[b : b + LABEL_BATCH], seed=b))
            resp = rec.counts[0] + 1e-3 * torch.tanh(rec.v_final[0])
            counts.index_add_(1, labels[b : b + LABEL_BATCH], resp.T)
        per_class = torch.bincount(labels, minlength=self.n_classes).clamp_min(1)
        self.neuron_label = (counts / per_class).argmax(1)

