"""The integer learner: [`IntegerCoLaNET`][spikebridge.deploy.integer_learning.IntegerCoLaNET], CoLaNET
trained in integer arithmetic (its state, the learning step, persistence), and
[`integer_learner()`][spikebridge.deploy.integer_learning.integer_learner]."""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch

from ...coding import RateNormaliser, channel_count, encode, regular_counts
from ...colanet.config import CALIBRATION_WINDOW, CoLaNETConfig, adaptive_config, adaptive_epochs, schedule_rate
from ...errors import SpikebridgeError, require_finite
from ...io import load_tensors, save_tensors
from ...learner import Learner
from ...neurons import single_threaded
from ...streaming import StreamStatistics
from ..formats import sidecar_path
from .constants import (ETA_SHIFT, FS_SHIFT, INT8_LIMIT, LATERAL_SHIFT, MARGIN_SHIFT, MASK32, MODEL_KIND, NO_NEURON,
                        RATE_SHIFT, weight_limit)
from .inference import Int8Inference
from .online import OnlineLearning
from .rng import rng_draws, stochastic_round
from .rule_sidecar import IntegerRuleSidecar, RuleDescription


class IntegerCoLaNET(Int8Inference, OnlineLearning, RuleDescription, Learner):
    """CoLaNET trained in integer arithmetic (the rule in the package docstring).

    A [`Learner`][spikebridge.learner.Learner] for [`train()`][spikebridge.training.train] (same example
    order as the float learner with the same seed: the host shuffles with ``generator``):
    [`rates()`][spikebridge.deploy.integer_learning.IntegerCoLaNET.rates] returns the integer spike counts, [`rate_at()`][spikebridge.deploy.integer_learning.IntegerCoLaNET.rate_at] the integer annealing
    numerator, [`learn()`][spikebridge.deploy.integer_learning.IntegerCoLaNET.learn] one integer step, `end_epoch()` the integer calibration.

    Parameters
    ----------
    n_inputs, n_classes : int
        Features per example and classes.
    config : CoLaNETConfig, optional
        ``microcolumns=None``: chosen from the training data; ``ensemble`` must be 1.
    weight_bits : int or "altai"
        Weight width, 2..16 bits, or ``"altai"`` (the Altai chip's weights).
    """

    name = MODEL_KIND
    members = 1
    annealed = True
    supports_sync = False

    def __init__(self, n_inputs: int, n_classes: int, config: CoLaNETConfig | None = None, weight_bits=8):
        config = config or CoLaNETConfig()
        if config.ensemble != 1:
            raise SpikebridgeError(f"integer learning trains one network (ensemble=1), not ensemble={config.ensemble}")
        if not config.w_max > 0 or not -config.w_max <= config.w_min <= 0:
            raise SpikebridgeError(f"integer learning needs w_max > 0 and -w_max <= w_min <= 0, not "
                                   f"w_min={config.w_min}, w_max={config.w_max}")
        self.requested = config
        self.n_inputs, self.n_classes = n_inputs, n_classes
        self.weight_bits = weight_bits
        self.limit = weight_limit(weight_bits)  # Q = W_hi
        self.lower = round(self.limit * config.w_min / config.w_max)  # W_lo
        self.shift = next(e for e in range(16) if (self.limit >> e) <= INT8_LIMIT)  # e of the int8 fold
        self.normaliser: RateNormaliser | None = None
        self.generator = torch.Generator().manual_seed(config.seed)  # host side: example order only
        self.rate_start: int | None = None  # R0, set by rate_at
        self.schedule_total: int | None = None
        self.batch_size = 0  # the largest mini-batch learned (for the accumulator widths)
        self._allocate(config if config.microcolumns is not None else replace(config, microcolumns=7))

    def _allocate(self, config: CoLaNETConfig) -> None:
        self.config = config
        J, N = self.n_classes * config.microcolumns, channel_count(self.n_inputs, config.normalisation)
        self.n_channels = N
        self.weights = torch.zeros(J, N, dtype=torch.int8 if self.limit <= INT8_LIMIT else torch.int16)
        self.active = torch.zeros(J, dtype=torch.bool)
        self.column = torch.arange(J) // config.microcolumns
        self.rng_state = torch.tensor(config.seed & MASK32, dtype=torch.int64)
        self.gamma = torch.tensor(0, dtype=torch.int64)
        self.threshold = torch.ones(1, dtype=torch.int32)  # theta8
        self.lateral = torch.zeros(1, dtype=torch.int32)  # lateral8
        self.saturated = 0  # synapses clamped by the last int8 fold
        self.frozen = torch.zeros(self.n_classes, dtype=torch.bool)  # columns closed to plasticity (add_classes)
        self.stream = StreamStatistics(self.n_inputs, self.n_classes, config.replay_rank)  # partial_fit's host-side statistics
        self.drive_median = 0  # partial_fit: running median of the winner's drive per step (integer)
        self._stale = False  # partial_fit learned since the last calibration

    # ---------------------------------------------------------------- constants
    @property
    def steps(self) -> int:
        return self.config.steps

    def constants(self) -> dict:
        """The integer constants of the rule (package docstring), from the config."""
        cfg, T = self.config, self.config.steps
        eta = lambda rate: round(rate * self.limit * (1 << ETA_SHIFT) / T)  # noqa: E731
        return {"eta_plus_num": eta(cfg.eta_plus), "eta_minus_num": eta(cfg.eta_minus),
                "margin_num": round(cfg.margin * (1 << MARGIN_SHIFT)),
                "first_spike_num": round(cfg.first_spike_step * (1 << FS_SHIFT)),
                "lateral_num": round(cfg.lateral_inhibition * (1 << LATERAL_SHIFT)),
                "weight_min": self.lower, "weight_max": self.limit, "steps": T,
                "rate_shift": RATE_SHIFT, "eta_shift": ETA_SHIFT, "margin_shift": MARGIN_SHIFT,
                "first_spike_shift": FS_SHIFT, "lateral_shift": LATERAL_SHIFT, "fold_shift": self.shift,
                "int8_limit": INT8_LIMIT, "microcolumns": cfg.microcolumns,
                "calibration_window": CALIBRATION_WINDOW}

    # ---------------------------------------------------------------- Learner protocol
    def default_epochs(self, n_examples: int) -> int:
        return adaptive_epochs(n_examples)

    def prepare(self, features, labels=None) -> None:
        """Microcolumns from the data ([`adaptive_config()`][spikebridge.colanet.adaptive_config]), the host's
        rate normaliser, a fresh integer state."""
        config = self.requested
        if config.microcolumns is None and labels is not None:
            config = adaptive_config(config, len(features), self.n_classes)
        self._allocate(config if config.microcolumns is not None else self.config)
        cfg = self.config
        self.normaliser = RateNormaliser.fit(features, cfg.normalisation, percentile=cfg.percentile,
                                             saturation=cfg.saturation)

    @torch.no_grad()
    def rates(self, features, batch_size: int = 1024) -> torch.Tensor:
        """The integer presynaptic traces ``[n, N]`` (int64): spike counts over the window of the
        rate coder's spike trains (host: features -> rates -> spikes; chip: counting)."""
        if self.normaliser is None:
            raise SpikebridgeError("fit the rate normaliser first (prepare or train)")
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        require_finite(features, "input")
        cfg = self.config
        out = torch.zeros(len(features), self.n_channels, dtype=torch.int64)
        for b in range(0, len(features), batch_size):
            rates = self.normaliser(features[b : b + batch_size])
            if cfg.coder == "regular":  # the counts without the trains (the same numbers)
                out[b : b + batch_size] = regular_counts(rates, cfg.steps, dt=cfg.dt, max_rate=1.0 / cfg.dt)
            else:
                spikes = encode(rates, cfg.steps, cfg.coder, seed=b, dt=cfg.dt, max_rate=1.0 / cfg.dt)
                out[b : b + batch_size] = spikes.sum(0, dtype=torch.int64)
        return out

    counts = rates

    def rate_at(self, seen: int, total: int, epochs: int) -> int:
        """The annealing numerator ``R = R0 * (total - seen) // total`` (``R0`` fixed on the first call)."""
        if self.rate_start is None or self.schedule_total != total:
            self.rate_start = round(schedule_rate(0, max(1, total), epochs, self.config.anneal) * (1 << RATE_SHIFT))
            self.schedule_total = total
        if not self.config.anneal:
            return self.rate_start
        return self.rate_start * (total - seen) // max(1, total)

    @torch.no_grad()
    def learn(self, counts: torch.Tensor, labels: torch.Tensor, sync=None, rate: int | None = None) -> int:
        """One integer learning step on ``counts [B, N]`` (or ``[1, B, N]``) and ``labels [B]``
        with the annealing numerator ``rate`` (default ``2^RATE_SHIFT``, i.e. ``s = 1``); the
        equations and their order are in the package docstring. Returns the number of errors.

        Runs on one intra-op thread ([`single_threaded()`][spikebridge.neurons.single_threaded]): its tensors
        are small, and splitting them over threads costs far more than it saves."""
        with single_threaded():
            return self._learn(counts, labels, sync, rate)

    def _learn(self, counts: torch.Tensor, labels: torch.Tensor, sync, rate, slots=None, centre=None) -> int:
        if sync is not None:
            raise SpikebridgeError("integer learning runs in one process (no data-parallel training)")
        rate = 1 << RATE_SHIFT if rate is None else rate
        per_column = isinstance(rate, torch.Tensor)  # partial_fit: one numerator per column [C]
        if not per_column and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 0):
            raise SpikebridgeError(f"rate must be a non-negative integer numerator over 2^{RATE_SHIFT}, not {rate!r}")
        if counts.is_floating_point() or labels.is_floating_point():
            raise SpikebridgeError(f"integer learning takes integer spike counts and labels, not {counts.dtype}")
        N, T = self.n_channels, self.config.steps
        c = counts.reshape(-1, N).to(torch.int64)
        y = labels.reshape(-1).to(torch.int64)
        if len(c) != len(y):
            raise SpikebridgeError(f"{len(c)} count vectors but {len(y)} labels")
        if len(y) and int(y.max()) >= self.n_classes:
            raise SpikebridgeError(f"label {int(y.max())} >= n_classes {self.n_classes}")
        k = self.constants()
        B, hi = len(y), self.limit
        self.batch_size = max(self.batch_size, B)
        # 1-3: drive, winners, error
        drive = self._drive(c)  # [B, J]
        in_target = self.column.view(1, -1) == y.view(-1, 1)
        plus = drive.masked_fill(~in_target, NO_NEURON)
        minus = drive.masked_fill(in_target, NO_NEURON)
        j_plus, j_minus = plus.argmax(1), minus.argmax(1)  # lowest index on ties
        a_plus = plus.gather(1, j_plus.view(-1, 1)).view(-1)
        a_minus = minus.gather(1, j_minus.view(-1, 1)).view(-1)
        has_target, has_wrong = a_plus > NO_NEURON, a_minus > NO_NEURON
        margin = (k["margin_num"] * hi * c.sum(1)) >> MARGIN_SHIFT
        error = ~has_target | (has_wrong & (a_minus + margin >= a_plus))
        misclassified = ~has_target | (has_wrong & (a_minus > a_plus))
        # 4: recruitment, in batch order
        recruited = torch.zeros(B, dtype=torch.bool)
        M = self.config.microcolumns
        u = c if centre is None else c - centre  # presynaptic term (covariance form: count - mean count)
        for b in misclassified.nonzero().view(-1).tolist():
            cls = int(y[b])
            if self.frozen[cls]:
                continue
            allowed = M if slots is None else int(slots[cls])
            free = (~self.active[cls * M : cls * M + allowed]).nonzero().view(-1)
            if len(free):
                j = cls * M + int(free[0])
                self.active[j] = True
                self.weights[j] = torch.div(2 * hi * u[b] + T, 2 * T, rounding_mode="floor").clamp(
                    self.lower, hi).to(self.weights.dtype)
                recruited[b] = True
        # 5-7: summed updates, stochastic rounding, bounds
        potentiate = error & ~recruited & has_target & ~self.frozen[self.column[j_plus]]
        depress = error & has_wrong & ~self.frozen[self.column[j_minus]]
        if bool(potentiate.any()) or bool(depress.any()):
            r_plus = rate[self.column[j_plus]] if per_column else rate  # the numerator of the column changed
            r_minus = rate[self.column[j_minus]] if per_column else rate
            step_plus = (r_plus * k["eta_plus_num"]) >> RATE_SHIFT
            step_minus = (r_minus * k["eta_minus_num"]) >> RATE_SHIFT
            if per_column:
                step_plus, step_minus = step_plus[potentiate].view(-1, 1), step_minus[depress].view(-1, 1)
            rows = torch.cat([j_plus[potentiate], j_minus[depress]])
            values = torch.cat([step_plus * u[potentiate], -step_minus * u[depress]])
            rows, inverse = torch.unique(rows, sorted=True, return_inverse=True)
            delta = torch.zeros(len(rows), N, dtype=torch.int64).index_add_(0, inverse, values)
            nonzero = delta != 0  # boolean indexing walks it row-major: the draw order
            draws, self.rng_state = rng_draws(self.rng_state, int(nonzero.sum()))
            dw = torch.zeros_like(delta).masked_scatter_(nonzero, stochastic_round(delta[nonzero], draws))
            self.weights[rows] = (self.weights[rows].to(torch.int64) + dw).clamp_(self.lower, hi).to(self.weights.dtype)
        return int(error.sum())

    def _drive(self, c: torch.Tensor) -> torch.Tensor:
        """``A[b, j] = sum_i W[j, i] c[b, i]`` of the recruited neurons (``NO_NEURON`` elsewhere), ``[B, J]``."""
        rows = self.active.nonzero().view(-1)
        drive = torch.full((len(c), len(self.active)), NO_NEURON, dtype=torch.int64)
        drive[:, rows] = c @ self.weights[rows].to(torch.int64).T
        return drive

    def end_epoch(self, counts: torch.Tensor, labels: torch.Tensor) -> None:
        self.calibrate(counts[:CALIBRATION_WINDOW])

    def synaptic_fan_out(self) -> tuple[float, float]:
        n = float(self.active.sum())
        return n, max(0.0, n - 1)

    def n_neurons(self) -> int:
        return int(self.active.sum())

    # ---------------------------------------------------------------- persistence
    def tensors(self) -> dict[str, torch.Tensor]:
        if self._stale and bool(self.active.any()):
            self._calibrate_from(self.drive_median)
        return {"weights": self.weights.contiguous(), "active": self.active.to(torch.uint8),
                "rng_state": self.rng_state.view(1), "gamma": self.gamma.view(1), "threshold": self.threshold,
                "lateral": self.lateral, "generator_state": self.generator.get_state(),
                "frozen": self.frozen.to(torch.uint8), "drive_median": torch.tensor([self.drive_median]),
                **self.stream.tensors(), **(self.normaliser.tensors() if self.normaliser else {})}

    def metadata(self) -> dict:
        return {"rule": MODEL_KIND, "kind": MODEL_KIND, "n_inputs": self.n_inputs, "n_classes": self.n_classes,
                "weight_bits": self.weight_bits, "config": asdict(self.config), "requested": asdict(self.requested),
                "rate_start": self.rate_start, "schedule_total": self.schedule_total, "batch_size": self.batch_size,
                "normaliser": self.normaliser.metadata() if self.normaliser else None}

    @classmethod
    def from_tensors(cls, meta: dict, tensors: dict) -> "IntegerCoLaNET":
        if meta.get("kind") != MODEL_KIND:
            raise SpikebridgeError("not a spikebridge integer-learning model (kind {!r})".format(meta.get("kind")))
        obj = cls(meta["n_inputs"], meta["n_classes"], CoLaNETConfig(**meta["requested"]), meta["weight_bits"])
        obj._allocate(CoLaNETConfig(**meta["config"]))
        obj.weights = tensors["weights"].clone()
        obj.active = tensors["active"].bool().clone()
        obj.rng_state = tensors["rng_state"].view(()).clone()
        obj.gamma = tensors["gamma"].view(()).clone()
        obj.threshold, obj.lateral = tensors["threshold"].clone(), tensors["lateral"].clone()
        obj.generator.set_state(tensors["generator_state"])
        obj.rate_start, obj.schedule_total = meta.get("rate_start"), meta.get("schedule_total")
        obj.batch_size = meta["batch_size"]
        obj.frozen = tensors["frozen"].bool().clone()
        obj.drive_median = int(tensors["drive_median"][0])
        obj.stream.load_tensors(tensors)
        if "rate_source" in tensors:  # a model that has not seen data yet has no normaliser
            obj.normaliser = RateNormaliser.from_tensors(tensors, meta["normaliser"])
        return obj

    def save(self, path) -> dict:
        """Write the integer state (safetensors) and the rule ([`IntegerRuleSidecar`][spikebridge.deploy.integer_learning.IntegerRuleSidecar], ``path.json``)."""
        path = Path(path)
        save_tensors(path, self.tensors(), self.metadata())
        side = self.rule_sidecar()
        side.write(sidecar_path(path))
        return side.to_dict()

    @classmethod
    def load(cls, path) -> "IntegerCoLaNET":
        """The learner [`save()`][spikebridge.deploy.integer_learning.IntegerCoLaNET.save] wrote; its rule sidecar, when present, is checked as every
        [`VersionedSidecar`][spikebridge.deploy.sidecar.VersionedSidecar] (format and version). Errors are one line naming the file."""
        tensors, meta = load_tensors(path)
        if sidecar_path(path).is_file():
            IntegerRuleSidecar.read(sidecar_path(path))
        try:
            return cls.from_tensors(meta, tensors)
        except SpikebridgeError as exc:
            raise SpikebridgeError(f"{path}: {exc}") from exc
        except KeyError as exc:
            raise SpikebridgeError(f"{path} is not a complete integer-learning model: it lacks {exc}") from exc


def integer_learner(n_inputs: int, n_classes: int, weight_bits=8, config: CoLaNETConfig | None = None,
                    **settings) -> IntegerCoLaNET:
    """An untrained [`IntegerCoLaNET`][spikebridge.deploy.integer_learning.IntegerCoLaNET]; ``settings`` are [`CoLaNETConfig`][spikebridge.colanet.CoLaNETConfig]
    fields applied to a copy of ``config`` (as `create_learner()`)."""
    known = {f.name for f in fields(CoLaNETConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise SpikebridgeError(f"integer learning has no setting {', '.join(unknown)}; it accepts {', '.join(sorted(known))}")
    return IntegerCoLaNET(n_inputs, n_classes, replace(config or CoLaNETConfig(), **settings), weight_bits)
