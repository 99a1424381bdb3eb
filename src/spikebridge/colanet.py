r"""CoLaNET: a columnar spiking classifier trained with local, dopamine-modulated plasticity.

Structure (per ensemble member ``k``; ``K`` members are simulated as one batched tensor)
-------------------------------------------------------------------------------------
* One **column** per class ``c``; each holds up to ``M`` **microcolumns**, one plastic LIF
  neuron each (``J = C * M`` neurons), a prototype of one kind of instance of the class.
  Microcolumns are *recruited* on demand (see below); unrecruited ones are silent.
* Input channels ``i`` carry rate-coded features (`coding`; by default each
  standardised feature has an ON and an OFF channel).
* Plastic synapses ``W[j, i]`` in ``[w_min, w_max]`` (signed: ``w_min = -w_max`` by default)
  from input channel ``i`` to neuron ``j``.
* A global **feedforward inhibitory** interneuron relays every input spike to every plastic
  neuron with the fixed weight ``-gamma`` (``gamma`` = mean recruited weight), so the net
  drive measures how much *more* a prototype matches than an average synapse would.
* **Lateral gating**: each spike of a plastic neuron inhibits every other plastic neuron of
  its member by ``g * theta`` on the next step (winner-take-all).
* A **target node** per class delivers the label as a spike to its own column only, as a
  dopamine (reward) signal; the **output** population counts each column's spikes.

Dynamics (discrete time, ``dt``; ``beta = exp(-dt/tau)``; input spikes ``x[t] in {0,1}^N``)::

    I_j[t] = sum_i (W[j,i] - gamma) x_i[t]  -  g * theta * (sum_{l != j} s_l[t-1])
    v_j[t] = beta * v_j[t-1] + I_j[t];  s_j[t] = [v_j[t] >= theta];  v_j[t] -= theta * s_j[t]

Decision: the column whose neurons fire most (spike counts summed over the column and over
ensemble members); ties broken by the earliest first spike, then by the highest final
membrane potential. ``theta`` is calibrated after training so that the median winning
neuron on the training set first fires at step ``first_spike_step``.

Plasticity (local; applied under ``torch.no_grad()``; ``r`` = presynaptic trace = input
spike count / ``T``, i.e. the rate; ``a_j`` = postsynaptic activity of neuron ``j``: its net
integrated input per step, ``(theta * n_j + v_j[T]) / T`` in the spiking mode and its
expected value ``(W_j - gamma) . r`` in the continuous mode; ``y`` the label)::

    j+ = argmax_{j in column y} a_j          (winning microcolumn of the target column)
    j- = argmax_{j not in column y} a_j      (strongest neuron of a wrong column)
    error = [ a_{j-} + margin * w_max * sum_i r_i  >=  a_{j+} ]
    dopamine-modulated potentiation:  W[j+, i] += s * eta_plus  * w_max * r_i * error
    anti-Hebbian depression:          W[j-, i] -= s * eta_minus * w_max * r_i * error
    bounded resources:                W <- clip(W, w_min, w_max)
    annealing:                        s = 1 - t / t_total  (t counts the presented examples)
    recruitment: if column y has no recruited microcolumn, or a wrong column won
                 (a_{j-} > a_{j+}) and column y has a free one, that free microcolumn is
                 recruited with W[j_new, :] = w_max * r instead of potentiating j+.

The continuous approximation (arXiv 2503.17111) replaces spike counts by their
expectations: ``a = (W - gamma) r`` and the decision is the column of ``argmax_j a_j``.
Both modes share one set of weights; training uses either, evaluation defaults to spiking.

Mini-batch plasticity: the updates of a batch are computed with the same weights, summed
(in float64, over the touched rows only), then applied (recruitment fills free slots in
batch order). ``batch_size=1`` is the exact online rule; larger batches are faster and were
measured to change accuracy by well under a point (see the tests). Data-parallel training
splits a batch over ranks and sums their updates before applying them (``sync``), which gives
the single-process result.

Class-incremental learning: [`add_classes()`][spikebridge.colanet.CoLaNET.add_classes] appends empty columns and freezes the
existing ones (no potentiation, depression or recruitment in a frozen column);
[`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit] then interleaves replayed prototypes of the frozen columns
(drawn from running class statistics, [`StreamStatistics`][spikebridge.streaming.StreamStatistics]) with the new examples, so that new columns are
depressed where they would answer to an old class. By default the replay is class-balanced: ``replay``
replayed examples per new example times the ratio of old to new classes, at most ``replay_cap`` times
``replay`` ([`replay_count()`][spikebridge.streaming.StreamStatistics.replay_count]), so an old class is rehearsed
about as often as a new one is learned.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import checks
from .coding import RateNormaliser, channel_count, encode
from .currents import default_bf16, synaptic_currents
from .errors import SpikebridgeError, require_finite
from .learner import Learner, check_recorded_shape, config_from_metadata, register_rule
from .neurons import PopulationParameters, lif_population, single_threaded
from .readout import NEG, column_scores, continuous_column_scores
from .streaming import StreamStatistics

if TYPE_CHECKING:
    from .distributed import PlasticitySync

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
    # Defaults shared by every data set (no per-data-set tuning): the rates and margin come from
    # an earlier Optuna search; ON/OFF coding, signed weights, annealing and the adaptive
    # microcolumns/epochs from the study in benchmarks/rule_study.py (splits of train only).
    microcolumns: int | None = None  # M: prototypes per class column; None: from the data (adaptive_config)
    eta_plus: float = 0.039  # dopamine-modulated potentiation rate (at the start of the schedule)
    eta_minus: float = 0.045  # anti-Hebbian depression rate (at the start of the schedule)
    margin: float = 0.091  # error when a wrong column comes within margin * w_max * sum(r)
    w_max: float = 1.0
    w_min: float = -1.0  # lower weight bound; signed weights as in the authors' toolchain (0 = excitatory only)
    normalisation: str = "onoff"  # rate coding of features: "onoff" (standardised ON/OFF channels) or "percentile"
    saturation: float = 3.0  # onoff: a channel saturates at |z| = saturation standard deviations
    anneal: bool = True  # learning rates decay linearly over a training run (schedule_rate)
    steps: int = 32  # T: time steps per example
    coder: str = "regular"  # "regular" (deterministic) or "bernoulli"
    dt: float = 1e-3
    tau: float = 20e-3
    lateral_inhibition: float = 10.0  # g, in units of theta
    first_spike_step: float = 4.0  # threshold calibration target
    percentile: float = 99.85  # percentile normalisation: the feature value coded as rate 1
    ensemble: int = 1  # K independently seeded members
    seed: int = 0
    replay: int = 2  # class-incremental: replayed examples of frozen classes per new example (balanced: per old/new class ratio 1)
    balanced_replay: bool = True  # replay in proportion to the old / new classes seen (StreamStatistics.replay_count) ...
    replay_cap: int = 4  # ... at most replay_cap * replay per new example
    replay_noise: float = 1.0  # replayed features: class mean + replay_noise * class sd * N(0, 1)
    replay_rank: int = 64  # replay's shared within-class correlations: this many directions (0: independent features)
    stream_boost: float = 5.0  # partial_fit: a column's learning-rate factor for its first examples
    stream_halflife: float = 50.0  # partial_fit: ... halved after this many examples of its class (per column)
    stream_centred: bool = True  # partial_fit with frozen columns: covariance form (presynaptic term r - mean rate)

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


@dataclass
class SpikeRecord:
    """What one spiking simulation produced (for decisions, counts and rasters)."""

    counts: torch.Tensor  # [K, B, J] spikes per neuron
    first_spike: torch.Tensor  # [K, B, J] step of first spike (1-based), T + 1 if none
    v_final: torch.Tensor  # [K, B, J]
    input_spikes: torch.Tensor  # [B] input spikes per example
    steps: int
    raster: torch.Tensor | None = None  # [T, J] of example 0 when asked for


@dataclass
class CoLaNET:
    n_inputs: int
    n_classes: int
    config: CoLaNETConfig = field(default_factory=CoLaNETConfig)

    def __post_init__(self):
        if self.config.microcolumns is None:  # built without training data: the most adaptive_config gives
            self.config = replace(self.config, microcolumns=MAX_MICROCOLUMNS)
        K, J = self.config.ensemble, self.n_classes * self.config.microcolumns
        self.n_channels = channel_count(self.n_inputs, self.config.normalisation)  # input spike channels
        self.weights = torch.zeros(K, J, self.n_channels)
        self.active = torch.zeros(K, J, dtype=torch.bool)
        self.gamma = torch.zeros(K)
        self.threshold = torch.ones(K)
        self.normaliser: RateNormaliser | None = None
        self.column = torch.arange(J) // self.config.microcolumns
        self.frozen = torch.zeros(self.n_classes, dtype=torch.bool)  # columns closed to plasticity (add_classes)
        self.stream = StreamStatistics(self.n_inputs, self.n_classes, self.config.replay_rank)  # partial_fit's running statistics
        self.drive_median = torch.zeros(K)  # running median of the winner's drive (partial_fit's theta)
        self.generator = torch.Generator().manual_seed(self.config.seed)

    # ------------------------------------------------------------------ rates and drive
    def rates(self, features) -> torch.Tensor:
        if self.normaliser is None:
            raise RuntimeError("fit the rate normaliser first (CoLaNET.fit_normaliser)")
        return self.normaliser(features)

    def fit_normaliser(self, features) -> None:
        cfg = self.config
        self.normaliser = RateNormaliser.fit(features, cfg.normalisation, percentile=cfg.percentile, saturation=cfg.saturation)

    def effective_weights(self) -> torch.Tensor:
        """``W - gamma`` with unrecruited neurons silenced: ``[K, J, N]``."""
        return (self.weights - self.gamma.view(-1, 1, 1)).mul_(self.active.unsqueeze(-1))

    def drive(self, rates: torch.Tensor) -> torch.Tensor:
        """Expected net input per step ``[K, B, J]``; unrecruited neurons get ``NEG``."""
        r = rates if rates.dim() == 3 else rates.unsqueeze(0).expand(self.config.ensemble, -1, -1)
        a = torch.bmm(r, self.effective_weights().transpose(1, 2))
        return a.masked_fill(~self.active.unsqueeze(1), NEG)

    # ------------------------------------------------------------------ decisions
    def column_scores_continuous(self, rates: torch.Tensor) -> torch.Tensor:
        """Expected spike counts per column and member, summed over members: ``[B, C]``
        ([`continuous_column_scores()`][spikebridge.readout.continuous_column_scores])."""
        return continuous_column_scores(self.drive(rates), self.threshold, self.n_classes)

    @torch.no_grad()
    def predict_continuous(self, features) -> torch.Tensor:
        require_finite(features, "input")
        return self.column_scores_continuous(self.rates(features)).argmax(1)

    @torch.no_grad()
    def simulate(self, input_spikes: torch.Tensor, record_raster: bool = False, method: str | None = None,
                 bf16: bool | None = None) -> SpikeRecord:
        """Run the spiking network on ``input_spikes [T, B, N]`` (the same input to every
        member) or ``[T, K, B, N]`` (one input per member).

        Currents ``(W - gamma) x[t]`` ([`synaptic_currents()`][spikebridge.currents.synaptic_currents]:
        ``method`` ``"dense"`` GEMM, ``"event"``-driven, which rounds differently, or ``"auto"``
        (the faster of the two on this machine at the input's spike density); ``bf16`` rounds the
        weights to bfloat16; ``None``: the library defaults, dense and fp32, the same decisions on
        every machine, unless the environment opts in: [`default_method()`][spikebridge.currents.default_method],
        [`default_bf16()`][spikebridge.currents.default_bf16]), then the LIF populations ([`lif_population()`][spikebridge.neurons.lif_population])
        with lateral inhibition; unrecruited neurons are silent."""
        cfg = self.config
        K, J, N = self.weights.shape
        T = input_spikes.shape[0]
        currents, in_spikes = synaptic_currents(input_spikes, self.effective_weights(), method,
                                                bf16=default_bf16(bf16))
        params = PopulationParameters(cfg.beta, self.threshold, cfg.lateral_inhibition, silent=~self.active)
        rec = lif_population(currents, params, record_raster)
        raster = rec.spikes[:, 0, 0] if record_raster else None
        v = rec.v_final.masked_fill(~self.active.view(K, 1, J), NEG)
        return SpikeRecord(rec.counts, rec.first_spike, v, in_spikes, T, raster)

    def column_scores(self, rec: SpikeRecord) -> torch.Tensor:
        """Lexicographic column scores ``[B, C]`` (float64) of [`column_scores()`][spikebridge.readout.column_scores]:
        most column spikes (summed over members), then earliest first spike, then highest final
        ``v/theta`` of the column's best neuron (averaged over members, through ``atan``)."""
        K, B, J = rec.counts.shape
        flat = lambda x: x.permute(1, 0, 2).reshape(B, K * J)  # noqa: E731  [K, B, J] -> [B, K*J]
        member = torch.arange(K).repeat_interleave(J)
        return column_scores(flat(rec.counts), flat(rec.first_spike), flat(rec.v_final), self.threshold, member,
                             self.column.repeat(K), self.n_classes, rec.steps)

    def column_decision(self, rec: SpikeRecord) -> torch.Tensor:
        return self.column_scores(rec).argmax(1)

    def spikes_for(self, features, steps: int | None = None, seed: int = 0) -> torch.Tensor:
        cfg = self.config
        return encode(self.rates(features), steps or cfg.steps, cfg.coder, seed=seed, dt=cfg.dt, max_rate=1.0 / cfg.dt)

    @torch.no_grad()
    def scores_spiking(self, features, steps: int | None = None, batch_size: int = 1024, seed: int = 0,
                       method: str | None = None, bf16: bool | None = None):
        """Spiking-simulation column scores ``[B, C]`` and ``stats``: mean input / output spikes
        per example and ``class_spikes [B, C]``, each column's spikes summed over members
        (``method``, ``bf16``: those of [`simulate()`][spikebridge.colanet.CoLaNET.simulate])."""
        scores, counts, in_spikes, out_spikes = [], [], 0.0, 0.0
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        require_finite(features, "input")
        K, J, N = self.weights.shape
        batch_size = checks.simulation_batch(batch_size, steps or self.config.steps, N, K * J)
        for b in range(0, len(features), batch_size):
            rec = self.simulate(self.spikes_for(features[b : b + batch_size], steps, seed=seed + b), method=method,
                                bf16=bf16)
            scores.append(self.column_scores(rec))
            K, B, _ = rec.counts.shape
            counts.append(rec.counts.view(K, B, self.n_classes, -1).sum(-1).sum(0))
            in_spikes += rec.input_spikes.sum().item()
            out_spikes += rec.counts.sum().item()
        n = max(1, len(features))
        empty = torch.zeros(0, self.n_classes)
        return (torch.cat(scores) if scores else empty,
                {"input_spikes": in_spikes / n, "output_spikes": out_spikes / n,
                 "class_spikes": torch.cat(counts) if counts else empty})

    def predict_spiking(self, features, steps: int | None = None, **kw) -> torch.Tensor:
        return self.scores_spiking(features, steps, **kw)[0].argmax(1)

    def synaptic_fan_out(self) -> tuple[float, float]:
        """(targets per input spike, targets per output spike) over all members."""
        active = self.active.sum(-1).float()
        return float(active.sum()), float((active - 1).clamp_min(0).mean())

    # ------------------------------------------------------------------ plasticity
    @torch.no_grad()
    def learn(self, rates: torch.Tensor, labels: torch.Tensor, activity: torch.Tensor | None = None,
              mask: torch.Tensor | None = None, sync: "PlasticitySync | None" = None, rate: float = 1.0,
              column_rate: torch.Tensor | None = None, slots: torch.Tensor | None = None,
              centre: torch.Tensor | None = None) -> int:
        """Apply one mini-batch of plasticity.

        ``rates [K, B, N]`` (or ``[B, N]``, shared by all members) are the presynaptic traces,
        ``labels [K, B]`` (or ``[B]``) the dopamine target columns, ``activity [K, B, J]`` the
        postsynaptic activity (defaults to the continuous approximation), ``mask [K, B]``
        which members learn which examples (online bagging). With ``sync`` (data-parallel
        training, `distributed`) the arguments are this rank's slice of the
        global batch and the updates of all ranks are summed before they are applied.
        Returns the number of (member, example) pairs that triggered plasticity (all ranks).
        ``column_rate [C]`` multiplies the rate of every update by that of the column it
        changes, and ``slots [C]`` caps the microcolumns each column may recruit (both from
        [`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit]'s per-column counts). ``centre [N]`` turns the updates and the
        recruited prototypes into the covariance form of the rule: the presynaptic term is
        ``r - centre`` (the channel's mean rate) instead of ``r``.

        Updates are summed in float64 over the rows they touch, then added to the float32
        weights and clipped, so the result does not depend on how a batch is split or summed.
        """
        cfg = self.config
        K, J, N = self.weights.shape
        r = rates if rates.dim() == 3 else rates.unsqueeze(0).expand(K, -1, -1)
        y = labels if labels.dim() == 2 else labels.unsqueeze(0).expand(K, -1)
        with single_threaded():  # ~1e5 element-wise values: threads cost more than they save
            a = self.drive(r) if activity is None else activity.masked_fill(~self.active.unsqueeze(1), NEG)
            in_target = self.column.view(1, 1, J) == y.unsqueeze(-1)  # [K, B, J]
            v_plus, j_plus = a.masked_fill(~in_target, NEG).max(-1)
            v_minus, j_minus = a.masked_fill(in_target, NEG).max(-1)
            has_target = v_plus > NEG / 2
            has_wrong = v_minus > NEG / 2
            scale = cfg.margin * cfg.w_max * r.sum(-1)
            error = ~has_target | (has_wrong & (v_minus + scale >= v_plus))
            misclassified = ~has_target | (has_wrong & (v_minus > v_plus))
            if mask is not None:
                error, misclassified = error & mask, misclassified & mask
            u = r if centre is None else r - centre  # the presynaptic term of the updates
            recruited = self._recruit(u, y, misclassified, sync, slots)
            potentiate = error & ~recruited & has_target & ~self.frozen[self.column[j_plus]]
            depress = error & has_wrong & ~self.frozen[self.column[j_minus]]
            offsets = (torch.arange(K) * J).view(K, 1)
            rows = torch.cat([(j_plus + offsets)[potentiate], (j_minus + offsets)[depress]])
            if column_rate is None:
                values = torch.cat([rate * cfg.eta_plus * cfg.w_max * u[potentiate],
                                    -rate * cfg.eta_minus * cfg.w_max * u[depress]]).double()
            else:  # each update scaled by the factor of the column it changes (float64, [K, B])
                s_plus = rate * cfg.eta_plus * cfg.w_max * column_rate.double()[self.column[j_plus]]
                s_minus = rate * cfg.eta_minus * cfg.w_max * column_rate.double()[self.column[j_minus]]
                values = torch.cat([s_plus[potentiate].unsqueeze(-1) * u[potentiate].double(),
                                    -s_minus[depress].unsqueeze(-1) * u[depress].double()])
            self._apply_rows(rows, values, sync)
            self._update_gamma()
        n_events = torch.tensor([int(error.sum())])
        return int(sync.all_reduce_sum(n_events)) if sync is not None else int(n_events)

    def _recruit(self, r: torch.Tensor, y: torch.Tensor, misclassified: torch.Tensor, sync,
                 slots: torch.Tensor | None = None) -> torch.Tensor:
        """Fill free microcolumns of the target columns of misclassified examples, in global
        batch order: ``W[j_new] = w_max * r``. Returns which local (member, example) recruited."""
        cfg = self.config
        K, J, N = self.weights.shape
        B = r.shape[1]
        recruited = torch.zeros(K, B, dtype=torch.bool)
        wanted = torch.where(misclassified & ~self.frozen[y], y, -1)  # target column of misclassified examples
        offset = 0
        if sync is not None:
            wanted, offset = sync.gather_batch(wanted)
        plan = []
        for k, b in (wanted >= 0).nonzero().tolist():
            c = int(wanted[k, b])
            allowed = cfg.microcolumns if slots is None else int(slots[c])
            free = (~self.active[k, c * cfg.microcolumns : c * cfg.microcolumns + allowed]).nonzero()
            if len(free):
                j = c * cfg.microcolumns + int(free[0])
                self.active[k, j] = True
                plan.append((k, b, j))
        if not plan:
            return recruited
        ks, bs, js = (torch.tensor(v) for v in zip(*plan))
        mine = (bs >= offset) & (bs < offset + B)
        prototypes = torch.zeros(len(plan), N)
        prototypes[mine] = r[ks[mine], bs[mine] - offset]
        if sync is not None:  # each row comes from exactly one rank; the others add zeros
            sync.all_reduce_sum(prototypes)
        self.weights.view(K * J, N)[ks * J + js] = cfg.w_max * prototypes
        recruited[ks[mine], bs[mine] - offset] = True
        return recruited

    def _apply_rows(self, rows: torch.Tensor, values: torch.Tensor, sync) -> None:
        """``W[rows] += values`` (duplicates summed), then clip, touching only changed rows."""
        K, J, N = self.weights.shape
        if sync is not None:  # agree on the union of touched rows, then sum the updates over ranks
            touched = torch.zeros(K * J, dtype=torch.int64)
            touched[rows] = 1
            rows_all = sync.all_reduce_sum(touched).nonzero().squeeze(1)
            position = torch.empty(K * J, dtype=torch.int64)
            position[rows_all] = torch.arange(len(rows_all))
            delta = torch.zeros(len(rows_all), N, dtype=torch.float64).index_add_(0, position[rows], values)
            sync.all_reduce_sum(delta)
            rows = rows_all
        else:
            rows, inverse = torch.unique(rows, return_inverse=True)
            delta = torch.zeros(len(rows), N, dtype=torch.float64).index_add_(0, inverse, values)
        if len(rows) == 0:
            return
        flat_w = self.weights.view(K * J, N)
        flat_w[rows] = (flat_w[rows].double() + delta).clamp_(self.config.w_min, self.config.w_max).float()

    @torch.no_grad()
    def partial_fit(self, features, labels, batch_size: int = 1, bagging: float = 0.8) -> "CoLaNET":
        r"""Online, single-pass learning: each example of this call is learned once, as it comes.

        Everything the stream needs is running state, none of it an example
        ([`StreamStatistics`][spikebridge.streaming.StreamStatistics], whose docstring holds the equations):
        the ON/OFF coder's running statistics until [`freeze_coder()`][spikebridge.colanet.CoLaNET.freeze_coder] (called by
        [`add_classes()`][spikebridge.colanet.CoLaNET.add_classes]: the end of the base session; a normaliser fitted before the first
        call is kept as it is); a per-column learning-rate factor that decays with the examples
        of that column's class (potentiation of ``j+`` uses its column's factor, depression of
        ``j-`` its own column's), so a single pass anneals per class whatever the stream's length
        or class order; microcolumns that a column may recruit as its class's examples arrive;
        per-class feature statistics, from which replay draws examples of frozen classes; and
        ``theta = first_spike_step * m``, ``m`` a running median of the winner's drive
        (``m <- m * exp(DRIVE_MEDIAN_STEP * sign(a_max - m))``).

        With an ensemble, each member learns each example with probability ``bagging`` (online
        bagging), so the members differ although the stream is shared.
        """
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        require_finite(features, "train")
        if len(labels) and int(labels.max()) >= self.n_classes:
            raise ValueError(f"label {int(labels.max())} >= n_classes {self.n_classes}; add_classes first")
        with single_threaded():  # small tensors: threads cost more than they save
            return self._partial_fit(features, labels, batch_size, bagging)

    def _partial_fit(self, features: torch.Tensor, labels: torch.Tensor, batch_size: int, bagging: float) -> "CoLaNET":
        cfg, K, stream = self.config, self.config.ensemble, self.stream
        if self.normaliser is None or stream.coder_learning:
            if cfg.normalisation == "onoff":
                self.normaliser = stream.update_coder(features, cfg.saturation)
            elif self.normaliser is None:  # the percentile coder has no running form: fitted on the first call
                self.fit_normaliser(features)
        rates = self.rates(features)
        for b in range(0, len(rates), batch_size):
            r, y = rates[b : b + batch_size], labels[b : b + batch_size]
            stream.observe(features[b : b + batch_size], y)
            mask = None if K == 1 else torch.rand(K, len(y), generator=self.generator) < bagging
            rr, yy = r, y
            n_replay = stream.replay_count(cfg.replay * len(y), self.frozen, cfg.replay_cap if cfg.balanced_replay else None)
            replay = stream.replay(n_replay, self.frozen, cfg.replay_noise, self.generator, K)
            if replay is not None:  # interleave replayed examples of frozen classes
                replayed = self.rates(replay[0].reshape(-1, self.n_inputs)).view(K, -1, self.n_channels)
                rr = torch.cat([r.unsqueeze(0).expand(K, -1, -1), replayed], 1)
                yy = torch.cat([y.unsqueeze(0).expand(K, -1), replay[1]], 1)
                if mask is not None:
                    mask = torch.cat([mask, torch.ones_like(replay[1], dtype=torch.bool)], 1)
            mean_rate = stream.observe_rates(r).clone()
            centre = mean_rate if cfg.stream_centred and bool(self.frozen.any()) else None
            self.learn(rr, yy, mask=mask, column_rate=stream.column_rate(cfg.stream_boost, cfg.stream_halflife),
                       slots=stream.slots(EXAMPLES_PER_MICROCOLUMN, cfg.microcolumns), centre=centre)
            self._track_drive(r)
        self.threshold = (cfg.first_spike_step * self.drive_median).clamp_min(1e-6)
        self._update_gamma()
        return self

    def state_bytes(self) -> int:
        """Bytes a device holds to go on learning online (float32/int32 values): the recruited
        neurons' weights, per-class counts, feature means and variances, the coder (a centre and a gain per
        channel, running statistics while they learn), ``gamma``, ``theta`` and the drive median."""
        K, N = self.config.ensemble, self.n_channels
        return 4 * (int(self.active.sum()) * N + self.stream.state_values() + 2 * N + 3 * K)

    def freeze_coder(self) -> "CoLaNET":
        """Stop updating the coder's running statistics (the rates keep their current map)."""
        if self.normaliser is None:
            raise SpikebridgeError("the coder has no statistics yet: learn from some examples first")
        self.stream.freeze_coder()
        return self

    def _track_drive(self, rates: torch.Tensor) -> None:
        """Running median of the winning neuron's drive (multiplicative sign steps), per member."""
        a = self.drive(rates).max(-1).values  # [K, B]
        for b in range(a.shape[1]):
            value, m = a[:, b], self.drive_median
            step = torch.exp(DRIVE_MEDIAN_STEP * torch.sign(value - m))
            self.drive_median = torch.where(value <= 0, m, torch.where(m <= 0, value, m * step))

    @torch.no_grad()
    def add_classes(self, count: int = 1, freeze_existing: bool = True) -> "CoLaNET":
        """Class-incremental learning: append ``count`` empty columns.

        With ``freeze_existing`` (default) the existing columns are frozen: examples of the new
        classes still compete with them (a new column is potentiated until it beats every old
        one by the margin) but never depress them, so what they learned is kept. Without it,
        the new classes' examples depress old prototypes that resemble them, as in joint
        training, which erodes the old classes when their own examples no longer come (see
        ``benchmarks/online.py``). `unfreeze()` reopens all columns (e.g. before a
        joint pass over old and new data)."""
        K, J, N = self.weights.shape
        extra = count * self.config.microcolumns
        self.weights = torch.cat([self.weights, torch.zeros(K, extra, N)], 1)
        self.active = torch.cat([self.active, torch.zeros(K, extra, dtype=torch.bool)], 1)
        self.frozen = torch.cat([self.frozen | freeze_existing, torch.zeros(count, dtype=torch.bool)])
        self.stream.add_classes(count)  # the base session is over: the coder's statistics stay as they are
        self.n_classes += count
        self.column = torch.arange(J + extra) // self.config.microcolumns
        return self

    def reorder_classes(self, order) -> "CoLaNET":
        """Put the columns in a new order: new column ``c`` is old column ``order[c]`` (its
        microcolumns, frozen flag and class statistics move with it)."""
        order = torch.as_tensor(np.asarray(order), dtype=torch.int64)
        if sorted(order.tolist()) != list(range(self.n_classes)):
            raise SpikebridgeError(f"reorder_classes takes a permutation of 0..{self.n_classes - 1}, not {order.tolist()}")
        M = self.config.microcolumns
        rows = (order.view(-1, 1) * M + torch.arange(M)).view(-1)
        self.weights, self.active = self.weights[:, rows].contiguous(), self.active[:, rows].contiguous()
        self.frozen = self.frozen[order]
        st = self.stream
        st.seen, st.class_mean, st.class_m2 = st.seen[order], st.class_mean[order], st.class_m2[order]
        return self

    def unfreeze(self) -> "CoLaNET":
        self.frozen = torch.zeros(self.n_classes, dtype=torch.bool)
        return self

    def _update_gamma(self) -> None:
        counts = self.active.sum(-1).clamp_min(1)
        self.gamma = (self.weights * self.active.unsqueeze(-1)).sum(dim=(1, 2)) / (counts * self.n_channels)

    @torch.no_grad()
    def spiking_activity(self, rates: torch.Tensor, seed: int = 0, method: str | None = None,
                         bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Presynaptic traces and postsynaptic activity measured in a spiking simulation
        (``method``, ``bf16``: those of [`simulate()`][spikebridge.colanet.CoLaNET.simulate])."""
        cfg = self.config
        spikes = encode(rates, cfg.steps, cfg.coder, seed=seed, dt=cfg.dt, max_rate=1.0 / cfg.dt)
        rec = self.simulate(spikes, method=method, bf16=bf16)  # rates [K, B, N] -> spikes [T, K, B, N]: one input per member
        theta = self.threshold.view(-1, 1, 1)
        activity = (theta * rec.counts + rec.v_final) / cfg.steps
        return spikes.float().mean(0), activity

    @torch.no_grad()
    def calibrate(self, rates: torch.Tensor) -> None:
        """Set ``theta`` so the median winning neuron first fires at ``first_spike_step``."""
        self._update_gamma()
        a = self.drive(rates).max(-1).values  # [K, B]
        a = torch.where(a > 0, a, torch.full_like(a, float("nan")))
        med = torch.nanmedian(a, dim=1).values
        med = torch.where(torch.isnan(med), torch.ones_like(med), med)
        self.threshold = (self.config.first_spike_step * med).clamp_min(1e-6)
        self.drive_median = med.clone()

    # ------------------------------------------------------------------ persistence
    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "weights": self.weights.contiguous(),
            "active": self.active.to(torch.uint8),
            "gamma": self.gamma,
            "threshold": self.threshold,
            **(self.normaliser.tensors() if self.normaliser else {}),
            "frozen": self.frozen.to(torch.uint8),
            **self.stream.tensors(),
            "drive_median": self.drive_median,
            "rng_state": self.generator.get_state(),
        }

    def metadata(self) -> dict:
        return {"n_inputs": self.n_inputs, "n_classes": self.n_classes, "config": asdict(self.config),
                "normaliser": self.normaliser.metadata() if self.normaliser else None}

    @classmethod
    def from_tensors(cls, meta: dict, tensors: dict[str, torch.Tensor]) -> "CoLaNET":
        model = cls(meta["n_inputs"], meta["n_classes"], config_from_metadata(CoLaNETConfig, meta))
        check_recorded_shape("weights", tensors, model.weights.shape, meta)
        model.weights = tensors["weights"].clone()
        model.active = tensors["active"].bool().clone()
        model.gamma = tensors["gamma"].clone()
        model.threshold = tensors["threshold"].clone()
        if "rate_source" in tensors:  # a model that has not seen data yet has no normaliser
            model.normaliser = RateNormaliser.from_tensors(tensors, meta["normaliser"])
        model.frozen = tensors["frozen"].bool().clone()
        model.stream.load_tensors(tensors)
        model.drive_median = tensors["drive_median"].clone()
        model.generator.set_state(tensors["rng_state"])
        return model

    def save(self, path) -> None:
        from .io import save_tensors

        save_tensors(path, self.tensors(), {"kind": "colanet", **self.metadata()})

    @classmethod
    def load(cls, path) -> "CoLaNET":
        from .io import load_tensors

        tensors, meta = load_tensors(path)
        return cls.from_tensors(meta, tensors)


@register_rule("colanet")
class CoLaNETLearner(Learner):
    """CoLaNET as a registered [`Learner`][spikebridge.learner.Learner] (``create_learner("colanet", ...)``).

    ``learn_mode`` (an option, not a config field): plasticity from the continuous
    approximation (``"continuous"``, fast) or from activity measured in the spiking
    simulation (``"spiking"``). ``config.microcolumns=None`` is resolved from the training
    data in `prepare()` ([`adaptive_config()`][spikebridge.colanet.adaptive_config]); ``train(epochs=None)`` takes
    [`adaptive_epochs()`][spikebridge.colanet.adaptive_epochs]; the learning rates are annealed by [`schedule_rate()`][spikebridge.colanet.schedule_rate].
    """

    name = "colanet"
    config_class = CoLaNETConfig
    options = ("learn_mode",)
    annealed = True  # learn() takes the schedule's rate factor
    supports_sync = True  # data-parallel training (spikebridge.distributed)

    def __init__(self, n_inputs: int, n_classes: int, config: CoLaNETConfig | None = None,
                 learn_mode: str = "continuous"):
        if learn_mode not in ("continuous", "spiking"):
            raise SpikebridgeError(f"learn mode must be 'continuous' or 'spiking', not {learn_mode!r}")
        self.requested = config or CoLaNETConfig()  # microcolumns=None: chosen from the training data in prepare()
        self.model = CoLaNET(n_inputs, n_classes, self.requested)
        self.learn_mode = learn_mode

    @property
    def config(self) -> CoLaNETConfig:
        return self.model.config

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
        if labels is not None:  # what partial_fit keeps per class, so a trained model can go on learning online
            self.model.stream.set_from_training(features, labels)
        self.prepared = True

    def partial_fit(self, features, labels, batch_size: int = 1) -> "CoLaNETLearner":
        """CoLaNET's own online rule ([`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit]: running statistics, no example kept)."""
        self.model.partial_fit(features, labels, batch_size=batch_size)
        self.prepared = True
        return self

    def add_classes(self, count: int = 1) -> "CoLaNETLearner":
        """Append ``count`` empty columns and freeze the existing ones ([`add_classes()`][spikebridge.colanet.CoLaNET.add_classes])."""
        self.model.add_classes(count)
        return self

    def state_bytes(self) -> int:
        return self.model.state_bytes()

    def rates(self, features) -> torch.Tensor:
        return self.model.rates(features)

    def learn(self, rates: torch.Tensor, labels: torch.Tensor, sync=None, rate: float = 1.0) -> int:
        if self.learn_mode == "spiking" and self.model.active.any():
            seed = int(torch.randint(1 << 30, (1,), generator=self.model.generator))
            pre, post = self.model.spiking_activity(rates, seed=seed)
            return self.model.learn(pre, labels, post, sync=sync, rate=rate)
        return self.model.learn(rates, labels, sync=sync, rate=rate)

    def end_epoch(self, rates: torch.Tensor, labels: torch.Tensor) -> None:
        self.model.calibrate(rates[:CALIBRATION_WINDOW])

    def scores(self, features, steps: int | None = None):
        return self.model.scores_spiking(features, steps)

    def synaptic_fan_out(self) -> tuple[float, float]:
        return self.model.synaptic_fan_out()

    def n_neurons(self) -> int:
        """Recruited plastic neurons over all members (the ones that are simulated)."""
        return int(self.model.active.sum())

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
        obj.requested = obj.model.config
        obj.learn_mode = meta["learn_mode"]
        obj.prepared = True
        return obj
