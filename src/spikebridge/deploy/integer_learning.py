r"""Plasticity in integer arithmetic: CoLaNET trained entirely in fixed point.

[`IntegerCoLaNET`][spikebridge.deploy.integer_learning.IntegerCoLaNET] learns with the rule of [`learn()`][spikebridge.colanet.CoLaNET.learn]
written in integers only, so that a chip with integer adders, shifters and comparators can
learn on-line; its inference model is the exact integer [`Int8CoLaNET`][spikebridge.deploy.fixed_point.Int8CoLaNET]
([`to_int8()`][spikebridge.deploy.integer_learning.IntegerCoLaNET.to_int8]). Every constant of the rule and the order of its operations
are written to a versioned JSON sidecar ([`IntegerRuleSidecar`][spikebridge.deploy.integer_learning.IntegerRuleSidecar]), from which the rule can
be re-implemented without this library (``tests/test_integer_learning.py`` does so in plain
Python integers and matches one learning step bit for bit).

Host and chip
-------------
The host normalises each feature vector to rates in ``[0, 1]`` (`coding`,
float) and the rate coder turns them into spikes; everything after the spikes is integer. The
presynaptic trace of input channel ``i`` is its spike count over the window of ``T`` steps,
``c_i in [0, T]`` (the deterministic coder gives ``c_i = round(T r_i)``), i.e. ``T`` times the
float rule's rate ``r_i``.

Integer state
-------------
* plastic weights ``W[j, i]`` in ``[W_lo, W_hi]``: ``W_hi = Q = 2^(b-1) - 1`` for ``b``-bit
  weights (127, 31, 7 for ``b`` = 8, 6, 4), ``Q = 255`` for the AltAI range ``[-255, 255]``
  (``weight_bits="altai"``), ``W_lo = round(Q w_min / w_max)``; one LSB is ``w_max / Q`` of
  the float rule's weight (stored as int8, or int16 when ``Q > 127``);
* ``active[j]``: recruited microcolumns (neuron ``j`` belongs to class column ``j // M``);
* the random generator's 32-bit state ``s`` (`rng_draws()`);
* after calibration: ``gamma_q``, the int8 inference weights ``W8``, ``theta8``, ``lateral8``.

One learning step (a mini-batch of ``B`` examples, counts ``c[b]``, labels ``y_b``, rate numerator ``R``)
-----------------------------------------------------------------------------------------------------------
In this order (integer arithmetic throughout; ``>>`` is an arithmetic shift, ``//`` floor division)::

    1. drive        A[b, j] = sum_i W[j, i] c[b, i]                  (recruited j only)
    2. winners      j+_b = argmax_{recruited j in column y_b} A[b, j]   (lowest j on ties)
                    j-_b = argmax_{recruited j not in column y_b} A[b, j]
    3. error        err_b = no j+_b  or  (j-_b exists and
                            A[b, j-] + ((margin_num * W_hi * S_b) >> MARGIN_SHIFT) >= A[b, j+]),  S_b = sum_i c[b, i]
       misclassified mis_b = no j+_b  or  (j-_b exists and A[b, j-] > A[b, j+])
    4. recruitment  for b = 0..B-1 with mis_b: the first unrecruited j of column y_b (if any) is
                    recruited with W[j, i] = (2 W_hi c[b, i] + T) // (2 T)   (= round(W_hi c / T))
    5. updates      P = (R * eta_plus_num) >> RATE_SHIFT;  D- = (R * eta_minus_num) >> RATE_SHIFT
                    D[j, i] = P * sum_{b: pot_b, j+_b = j} c[b, i]  -  D- * sum_{b: dep_b, j-_b = j} c[b, i]
                    pot_b = err_b and not recruited_b and j+_b exists;  dep_b = err_b and j-_b exists
    6. rounding     one draw z (`rng_draws()`) per synapse with D[j, i] != 0, in the order of
                    j ascending, then i ascending; dW[j, i] = 0 where D[j, i] = 0, else
                    dW[j, i] = (D[j, i] >> ETA_SHIFT) + [ (z >> (32 - ETA_SHIFT)) < (D[j, i] & (2^ETA_SHIFT - 1)) ]
    7. bounds       W[j, i] <- clamp(W[j, i] + dW[j, i], W_lo, W_hi)

Step 6 is stochastic rounding: ``E[dW] = D / 2^ETA_SHIFT`` exactly, so small updates (a
fraction of an LSB at 4 bits) are kept on average. The constants are the float rule's::

    eta_plus_num = round(eta_plus * W_hi * 2^ETA_SHIFT / T),  eta_minus_num likewise,
    margin_num = round(margin * 2^MARGIN_SHIFT)

so ``E[dW] = s * eta * w_max * r`` in LSBs with ``s = R / 2^RATE_SHIFT``, the float rule's
update. The feedforward inhibition ``gamma`` is the same for every neuron of the population, so
it cancels in every comparison of steps 2-3 and the learning step does not need it.

Annealing (integer schedule): ``R = R0 * (total - seen) // total`` for the batch starting at
example ``seen`` of a run of ``total`` presentations, ``R0 = round(2^RATE_SHIFT * s0)``, ``s0``
the starting factor of [`schedule_rate()`][spikebridge.colanet.schedule_rate] (a constant of the run).

Calibration and the inference model (end of every epoch, on the first ``CALIBRATION_WINDOW`` training examples)
--------------------------------------------------------------------------------------------------------------------
::

    gamma_q = (2 G + n N) // (2 n N)      G = sum of the weights of the n recruited neurons (round half up)
    W8[j, i] = clamp((W[j, i] - gamma_q + h) >> e, -127, 127)     h = 2^(e-1) if e > 0 else 0
    e = the smallest shift with (Q >> e) <= 127 (0 up to 8 bits, 1 for the AltAI range)
    a_b = max_{recruited j} sum_i W8[j, i] c[b, i];   med = lower median of the positive a_b (T if none)
    theta8 = max(1, (f * med + T 2^(FS_SHIFT-1)) // (T 2^FS_SHIFT)),   f = round(first_spike_step * 2^FS_SHIFT)
    lateral8 = (g * theta8 + 2^(LATERAL_SHIFT-1)) >> LATERAL_SHIFT,    g = round(lateral_inhibition * 2^LATERAL_SHIFT)

i.e. the float rule's calibration (the median winning neuron first fires at step
``first_spike_step``) on the integer drive per step ``a_b / T``. [`to_int8()`][spikebridge.deploy.integer_learning.IntegerCoLaNET.to_int8]
returns the [`Int8CoLaNET`][spikebridge.deploy.fixed_point.Int8CoLaNET] with weights ``W8`` of the recruited neurons
(weight LSB ``2^e`` learned LSBs), ``theta8``, ``lateral8`` and the decay of
[`Int8CoLaNET.quantise`][spikebridge.deploy.fixed_point.Int8CoLaNET.quantise]; its
simulation is the deployed integer network. With 8-bit weights ``W - gamma_q`` can leave
``[-127, 127]``; those synapses saturate (`saturated`: 0.2 % of them on
Imagenette, 2.7 % on imagenet64, where ``gamma_q < 0``; rounding with ``e = 1`` instead, or
9-bit synapses, gave the same top-1 within 0.1 points there).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from ..coding import RateNormaliser, channel_count, encode, regular_counts
from ..learner import Learner
from ..colanet import (CALIBRATION_WINDOW, EXAMPLES_PER_MICROCOLUMN, CoLaNETConfig, adaptive_config, adaptive_epochs,
                       schedule_rate)
from ..errors import SpikebridgeError, require_finite
from ..io import load_tensors, save_tensors
from ..neurons import single_threaded
from ..streaming import StreamStatistics
from .fixed_point import DECAY_BITS, DECAY_EQUATION, MEMBRANE_BITS, Int8CoLaNET, decay_dv
from .formats import sidecar_path
from .sidecar import VersionedSidecar

RULE_FORMAT = "spikebridge-integer-rule"
RULE_VERSION = 1
MODEL_KIND = "colanet-int"

RATE_SHIFT = 12  # the annealing factor s = R / 2^12
ETA_SHIFT = 16  # learning-rate numerators and stochastic rounding: 16 fractional bits
MARGIN_SHIFT = 10  # margin numerator m / 2^10
FS_SHIFT = 8  # first_spike_step numerator f / 2^8
LATERAL_SHIFT = 8  # lateral inhibition numerator g / 2^8
INT8_LIMIT = 127

# the random generator: a Weyl sequence (SplitMix-style counter) mixed by Wellons' "lowbias32" hash
RNG_INCREMENT = 0x9E3779B9
RNG_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
RNG_SHIFTS = (16, 15, 16)
MASK32 = 0xFFFFFFFF
NO_NEURON = -(1 << 62)  # drive of unrecruited neurons (below any real drive)


def weight_limit(bits) -> int:
    """``Q``, the largest weight magnitude: ``2^(bits-1) - 1`` for ``bits`` in 2..16, 255 for ``"altai"``."""
    if bits == "altai":
        return 255
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise SpikebridgeError(f"weight bits must be a whole number from 2 to 16 or 'altai', not {bits!r}")
    return (1 << (bits - 1)) - 1


def _bits(magnitude: int) -> int:
    """Bits of a signed register holding values of ``|x| <= magnitude``."""
    return int(magnitude).bit_length() + 1


# --------------------------------------------------------------------------- random numbers
def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """``(x * constant) mod 2^32`` for 32-bit ``x`` in int64 without overflow (16-bit halves)."""
    low = (x & 0xFFFF) * constant
    high = (((x >> 16) * constant) & 0xFFFF) << 16
    return (low + high) & MASK32


def lowbias32(x: torch.Tensor) -> torch.Tensor:
    """Wellons' 32-bit integer hash: ``x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b;
    x ^= x >> 16`` (products mod ``2^32``), on int64 tensors holding 32-bit values."""
    s1, s2, s3 = RNG_SHIFTS
    x = x ^ (x >> s1)
    x = _mul32(x, RNG_MULTIPLIERS[0])
    x = x ^ (x >> s2)
    x = _mul32(x, RNG_MULTIPLIERS[1])
    return x ^ (x >> s3)


def rng_draws(state: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 32-bit draws and the next state of the generator::

        s_{k+1} = (s_k + 0x9E3779B9) mod 2^32,   z_k = lowbias32(s_{k+1})   (k = 0..n-1)

    A counter-based generator: the ``k``-th draw only needs ``s_0 + (k+1) * 0x9E3779B9``, so ``n``
    draws are one vectorised call. ``state`` is a 0-dim int64 tensor in ``[0, 2^32)``."""
    k = torch.arange(1, n + 1, dtype=torch.int64)
    z = lowbias32((state + k * RNG_INCREMENT) & MASK32)
    return z, (state + n * RNG_INCREMENT) & MASK32


def stochastic_round(numerator: torch.Tensor, draws: torch.Tensor, shift: int = ETA_SHIFT) -> torch.Tensor:
    """``(D >> shift) + [(z >> (32 - shift)) < (D & (2^shift - 1))]``: ``D / 2^shift`` rounded down
    or up with the probability of its fraction (unbiased), from 32-bit draws ``z``."""
    return (numerator >> shift) + ((draws >> (32 - shift)) < (numerator & ((1 << shift) - 1))).to(torch.int64)


# --------------------------------------------------------------------------- the sidecar
@dataclass
class IntegerRuleSidecar(VersionedSidecar):
    """The integer learning rule, completely (see the module docstring): bit widths, constants,
    the generator, rounding and the order of operations, plus the state the rule needs beyond
    the tensors of the model file (generator state, schedule); read and checked as every
    [`VersionedSidecar`][spikebridge.deploy.sidecar.VersionedSidecar]."""

    KIND = "integer-rule sidecar"

    weight_bits: int | str
    sizes: dict
    bit_widths: dict
    constants: dict
    rng: dict
    rounding: dict
    schedule: dict
    order: list
    calibration: dict
    inference: dict
    colanet_config: dict
    format: str = RULE_FORMAT
    version: int = RULE_VERSION


# --------------------------------------------------------------------------- the learner
class IntegerCoLaNET(Learner):
    """CoLaNET trained in integer arithmetic (the rule in the module docstring).

    A [`Learner`][spikebridge.learner.Learner] for [`train()`][spikebridge.training.train] (same example
    order as the float learner with the same seed: the host shuffles with ``generator``):
    [`rates()`][spikebridge.deploy.integer_learning.IntegerCoLaNET.rates] returns the integer spike counts, [`rate_at()`][spikebridge.deploy.integer_learning.IntegerCoLaNET.rate_at] the integer annealing
    numerator, [`learn()`][spikebridge.deploy.integer_learning.IntegerCoLaNET.learn] one integer step, `end_epoch()` the integer calibration.
    ``config`` is a [`CoLaNETConfig`][spikebridge.colanet.CoLaNETConfig] (``microcolumns=None``: chosen
    from the training data; ``ensemble`` must be 1); ``weight_bits`` 2..16 or ``"altai"``.
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
        """The integer constants of the rule (module docstring), from the config."""
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
        equations and their order are in the module docstring. Returns the number of errors.

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

    @torch.no_grad()
    def partial_fit(self, features, labels, batch_size: int = 1) -> "IntegerCoLaNET":
        """Online learning, each example once: the float rule's [`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit]
        in integers. The host keeps the same running statistics
        ([`StreamStatistics`][spikebridge.streaming.StreamStatistics]: coder, class statistics for replay,
        mean counts) and sends spike counts; the chip's state adds, per column, the count
        ``n_c`` of its dopamine spikes and the rate numerator ``R_c = R0 * H // (H + n_c)``
        (``R0 = round(stream_boost * 2^RATE_SHIFT)``, ``H = round(stream_halflife)``); while some
        columns are frozen the presynaptic term is ``c - round(mean count)``; ``theta8`` follows a
        running median ``m`` of the winner's drive ``max_j sum_i (W - gamma_q) c``,
        ``m += sign(a - m) * max(1, m >> 6)``, through the calibration's equations."""
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        require_finite(features, "train")
        if len(labels) and int(labels.max()) >= self.n_classes:
            raise SpikebridgeError(f"label {int(labels.max())} >= n_classes {self.n_classes}; add_classes first")
        cfg, stream = self.config, self.stream
        if self.normaliser is None or stream.coder_learning:
            if cfg.normalisation == "onoff":
                self.normaliser = stream.update_coder(features, cfg.saturation)
            elif self.normaliser is None:
                self.normaliser = RateNormaliser.fit(features, cfg.normalisation, percentile=cfg.percentile)
        counts = self.rates(features)
        r0, h = round(cfg.stream_boost * (1 << RATE_SHIFT)), max(1, round(cfg.stream_halflife))
        with single_threaded():
            for b in range(0, len(labels), batch_size):
                c, y = counts[b : b + batch_size], labels[b : b + batch_size]
                stream.observe(features[b : b + batch_size], y)
                mean_count = stream.observe_rates(c.float()).round().to(torch.int64)
                centre = mean_count if cfg.stream_centred and bool(self.frozen.any()) else None
                n_replay = stream.replay_count(cfg.replay * len(y), self.frozen,
                                               cfg.replay_cap if cfg.balanced_replay else None)
                replay = stream.replay(n_replay, self.frozen, cfg.replay_noise, self.generator)
                if replay is not None:
                    c = torch.cat([c, self.rates(replay[0][0])])
                    y = torch.cat([y, replay[1][0]])
                rate = r0 * h // (h + stream.seen)
                self._learn(c, y, None, rate, stream.slots(EXAMPLES_PER_MICROCOLUMN, cfg.microcolumns), centre)
                self._track_drive(counts[b : b + batch_size])
        self._stale = True  # theta8 from the drive median when the inference model is next needed
        return self

    def _drive(self, c: torch.Tensor) -> torch.Tensor:
        """``A[b, j] = sum_i W[j, i] c[b, i]`` of the recruited neurons (``NO_NEURON`` elsewhere), ``[B, J]``."""
        rows = self.active.nonzero().view(-1)
        drive = torch.full((len(c), len(self.active)), NO_NEURON, dtype=torch.int64)
        drive[:, rows] = c @ self.weights[rows].to(torch.int64).T
        return drive

    def _gamma(self) -> torch.Tensor:
        n = int(self.active.sum())
        if not n:
            return self.gamma
        total, den = self.weights[self.active].to(torch.int64).sum(), n * self.n_channels
        return torch.div(2 * total + den, 2 * den, rounding_mode="floor")

    def _track_drive(self, counts: torch.Tensor) -> None:
        if not bool(self.active.any()):
            return
        gamma = self._gamma()
        c = counts.to(torch.int64)
        drive = self._drive(c).max(1).values - gamma * c.sum(1)
        for a in drive.tolist():
            if a > 0:
                m = self.drive_median
                self.drive_median = a if m <= 0 else m + (1 if a > m else -1) * max(1, m >> 6)

    def _calibrate_from(self, median: int) -> None:
        """``gamma_q``, the fold, ``theta8`` and ``lateral8`` from a drive median in learned LSBs."""
        self._stale = False
        self.gamma = self._gamma()
        self.folded_weights()
        self._set_threshold(torch.tensor(max(1, median >> self.shift), dtype=torch.int64))

    @torch.no_grad()
    def add_classes(self, count: int = 1) -> "IntegerCoLaNET":
        """Append ``count`` empty columns and freeze the existing ones (as the float
        [`add_classes()`][spikebridge.colanet.CoLaNET.add_classes]); the coder's statistics stop."""
        M, N = self.config.microcolumns, self.n_channels
        self.weights = torch.cat([self.weights, torch.zeros(count * M, N, dtype=self.weights.dtype)])
        self.active = torch.cat([self.active, torch.zeros(count * M, dtype=torch.bool)])
        self.frozen = torch.cat([torch.ones_like(self.frozen), torch.zeros(count, dtype=torch.bool)])
        self.n_classes += count
        self.column = torch.arange(len(self.active)) // M
        self.stream.add_classes(count)
        return self

    def state_bytes(self) -> int:
        """Bytes of the learning state: recruited weights (their storage type), per-column
        counts, and the host's statistics (float32)."""
        per_weight = self.weights.element_size()
        return (int(self.active.sum()) * self.n_channels * per_weight + 4 * self.stream.state_values()
                + 8 * self.n_channels + 16)

    @torch.no_grad()
    def calibrate(self, counts: torch.Tensor) -> None:
        """``gamma_q``, the int8 fold and ``theta8``/``lateral8`` from ``counts [n, N]`` (module docstring)."""
        T = self.config.steps
        c = counts.reshape(-1, self.n_channels).to(torch.int64)
        self.gamma = self._gamma()
        w8 = self.folded_weights()
        best = (c @ w8.to(torch.int64).T).masked_fill(~self.active, NO_NEURON).max(1).values
        positive = best[best > 0]
        med = torch.sort(positive).values[(len(positive) - 1) // 2] if len(positive) else torch.tensor(T)
        self._set_threshold(med)

    def _set_threshold(self, med: torch.Tensor) -> None:
        """``theta8`` and ``lateral8`` from the median winner drive ``med`` (int8-weight units, over T steps)."""
        k, T = self.constants(), self.config.steps
        half = T << (FS_SHIFT - 1)
        theta = torch.div(k["first_spike_num"] * med + half, T << FS_SHIFT, rounding_mode="floor")
        theta = theta.clamp(1, Int8CoLaNET.V_MAX)
        lateral = (k["lateral_num"] * theta + (1 << (LATERAL_SHIFT - 1))) >> LATERAL_SHIFT
        self.threshold = theta.view(1).to(torch.int32)
        self.lateral = lateral.clamp(0, Int8CoLaNET.V_MAX).view(1).to(torch.int32)

    def folded_weights(self) -> torch.Tensor:
        """``W8 = clamp((W - gamma_q + h) >> e, -127, 127)`` for every neuron ``[J, N]`` (int8);
        counts the clamped synapses of recruited neurons in `saturated`."""
        e = self.shift
        wide = self.weights.to(torch.int64) - self.gamma
        if e:
            wide = (wide + (1 << (e - 1))) >> e
        self.saturated = int(((wide.abs() > INT8_LIMIT) & self.active.view(-1, 1)).sum())
        return wide.clamp(-INT8_LIMIT, INT8_LIMIT).to(torch.int8)

    def end_epoch(self, counts: torch.Tensor, labels: torch.Tensor) -> None:
        self.calibrate(counts[:CALIBRATION_WINDOW])

    # ---------------------------------------------------------------- inference
    def to_int8(self, reset: str = "subtract") -> Int8CoLaNET:
        """The deployable [`Int8CoLaNET`][spikebridge.deploy.fixed_point.Int8CoLaNET] (recruited neurons only) of the last
        calibration: weights ``W8``, ``theta8``, ``lateral8``, Int8CoLaNET's 12-bit decay."""
        if not bool(self.active.any()) or self.normaliser is None:
            raise SpikebridgeError("the integer model has no recruited neurons or no rate normaliser (train it first)")
        if self._stale:
            self._calibrate_from(self.drive_median)
        cfg = self.config
        row = self.active.nonzero().view(-1)
        return Int8CoLaNET(self.folded_weights()[row].contiguous(), self.shift, self.threshold.clone(),
                           self.lateral.clone(), decay_dv(cfg.beta), torch.zeros(len(row), dtype=torch.int64), row,
                           self.column[row], self.n_classes, self.normaliser, cfg.steps, cfg.coder, cfg.dt, reset)

    @torch.no_grad()
    def scores(self, features, steps: int | None = None, batch_size: int = 1024):
        """Column scores ``[B, C]`` of the int8 inference model and spike statistics."""
        model = self.to_int8()
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        out, class_spikes, spikes_in, spikes_out = [], [], 0, 0
        for b in range(0, len(features), batch_size):
            x = model.spikes_for(features[b : b + batch_size], steps, seed=b)
            rec = model.simulate(x)
            out.append(model.scores(rec))
            class_spikes.append(torch.zeros(len(x[0]), self.n_classes, dtype=torch.int64).index_add_(
                1, model.column, rec.counts))
            spikes_in += int(x.sum())
            spikes_out += int(rec.counts.sum())
        n = max(1, len(features))
        return torch.cat(out), {"input_spikes": spikes_in / n, "output_spikes": spikes_out / n,
                                "class_spikes": torch.cat(class_spikes)}

    def predict(self, features, steps: int | None = None) -> torch.Tensor:
        return self.to_int8().predict(features, steps)

    def synaptic_fan_out(self) -> tuple[float, float]:
        n = float(self.active.sum())
        return n, max(0.0, n - 1)

    def n_neurons(self) -> int:
        return int(self.active.sum())

    # ---------------------------------------------------------------- the rule, written down
    def rule_sidecar(self) -> IntegerRuleSidecar:
        """The [`IntegerRuleSidecar`][spikebridge.deploy.integer_learning.IntegerRuleSidecar] of this learner: everything a chip needs besides the
        weights, recruitment flags and spike counts."""
        k, N, T, hi = self.constants(), self.n_channels, self.config.steps, self.limit
        B = max(1, self.batch_size)
        r0 = self.rate_start if self.rate_start is not None else 1 << RATE_SHIFT
        step_max = (r0 * max(k["eta_plus_num"], k["eta_minus_num"])) >> RATE_SHIFT
        drive = max(hi, -self.lower) * T * N
        return IntegerRuleSidecar(
            weight_bits=self.weight_bits,
            sizes={"channels": N, "classes": self.n_classes, "microcolumns": self.config.microcolumns,
                   "neurons": self.n_classes * self.config.microcolumns, "column_of_neuron": "j // microcolumns",
                   "features": self.n_inputs},
            bit_widths={"weight": _bits(max(hi, -self.lower)), "weight_storage": str(self.weights.dtype).replace("torch.", ""),
                        "trace": int(T).bit_length(), "drive": _bits(drive),
                        "margin_product": _bits(k["margin_num"] * hi * T * N),
                        "update_accumulator": _bits(B * step_max * T), "rate_numerator": int(r0).bit_length(),
                        "rng_state": 32, "rng_output": 32, "random_fraction": ETA_SHIFT,
                        "threshold": MEMBRANE_BITS, "membrane": MEMBRANE_BITS, "lateral": MEMBRANE_BITS,
                        "decay": DECAY_BITS, "inference_weight": 8,
                        "note": "signed widths for the largest magnitudes of this model (N channels, T steps, "
                                "the largest mini-batch learned); the reference computes in int64"},
            constants=k,
            rng={"algorithm": "Weyl sequence (SplitMix-style 32-bit counter) hashed by lowbias32 (C. Wellons)",
                 "seed": self.config.seed, "state": int(self.rng_state), "increment": RNG_INCREMENT,
                 "multipliers": list(RNG_MULTIPLIERS), "shifts": list(RNG_SHIFTS),
                 "equations": ["s <- (s + increment) mod 2^32", "z = s", "z ^= z >> shifts[0]",
                               "z = (z * multipliers[0]) mod 2^32", "z ^= z >> shifts[1]",
                               "z = (z * multipliers[1]) mod 2^32", "z ^= z >> shifts[2]", "output z"],
                 "initial_state": "seed mod 2^32",
                 "draw_order": "one draw per synapse with a non-zero update numerator D[j, i], in the order of "
                               "j ascending, then i ascending; none for D = 0 (dW = 0 there)"},
            rounding={"updates": "stochastic: dW = (D >> eta_shift) + [(z >> (32 - eta_shift)) < (D & (2^eta_shift - 1))] "
                                 "(>> arithmetic, & on two's complement: floor and the non-negative remainder)",
                      "steps": "P = (R * eta_plus_num) >> rate_shift; D- = (R * eta_minus_num) >> rate_shift (floor)",
                      "margin": "(margin_num * weight_max * S) >> margin_shift (floor)",
                      "recruitment": "W[j, i] = (2 * weight_max * c_i + T) // (2 T) (round half up)",
                      "gamma": "(2 G + n N) // (2 n N) (round half up)",
                      "fold": "(x + 2^(e-1)) >> e for e > 0 (round half up), then clamp to [-127, 127]",
                      "threshold": "(first_spike_num * med + T 2^(first_spike_shift - 1)) // (T 2^first_spike_shift), "
                                   "at least 1",
                      "lateral": "(lateral_num * theta8 + 2^(lateral_shift - 1)) >> lateral_shift"},
            schedule={"rate_start": r0, "total": self.schedule_total, "anneal": self.config.anneal,
                      "rate": "R = rate_start * (total - seen) // total for the batch starting at example `seen` "
                              "(R = rate_start without annealing)",
                      "batch": "the updates of a mini-batch are computed with the same weights and summed per row "
                               "before rounding (batch size 1 is the online rule)",
                      "largest_batch": self.batch_size},
            order=["A[b, j] = sum_i W[j, i] c[b, i] for recruited j",
                   "j+ = argmax of A over recruited j in column y, j- = argmax over recruited j outside it; "
                   "lowest j on ties",
                   "err = no j+ or (j- exists and A[j-] + ((margin_num * weight_max * sum_i c_i) >> margin_shift) >= A[j+])",
                   "mis = no j+ or (j- exists and A[j-] > A[j+])",
                   "recruitment in batch order: for each example with mis, the first unrecruited j of column y "
                   "(if any) is recruited with W[j, i] = (2 * weight_max * c_i + T) // (2 T); that example does "
                   "not potentiate",
                   "D[j+] += P * c for err and not recruited and j+ exists; D[j-] -= D- * c for err and j- exists",
                   "for each synapse with D[j, i] != 0 (j ascending, then i ascending): one draw z; "
                   "dW = stochastic rounding of D with z (dW = 0 where D = 0)",
                   "W = clamp(W + dW, weight_min, weight_max)"],
            calibration={"when": "end of every epoch, on the counts of the first calibration_window training examples",
                         "gamma": "gamma_q = (2 G + n N) // (2 n N), G the sum of the recruited weights, n their count",
                         "fold": "W8 = clamp((W - gamma_q + h) >> e, -127, 127), h = 2^(e-1) if e > 0, e = fold_shift",
                         "threshold": "med = lower median of the positive max_j sum_i W8[j, i] c_i (T if none); "
                                      "theta8 = max(1, (first_spike_num * med + T 2^(first_spike_shift-1)) // "
                                      "(T 2^first_spike_shift))",
                         "lateral": "lateral8 = (lateral_num * theta8 + 2^(lateral_shift-1)) >> lateral_shift",
                         "gamma_q": int(self.gamma), "threshold8": int(self.threshold[0]), "lateral8": int(self.lateral[0])},
            inference={"model": "spikebridge.deploy.Int8CoLaNET (format spikebridge-int8) of the recruited neurons",
                       "weights": "W8 (int8), weight LSB = 2^fold_shift learned LSBs",
                       "dynamics": f"v <- {DECAY_EQUATION} + sum_i W8[j,i] x_i[t] - lateral8 * (other spikes at "
                                   "t-1); v <- clamp(v, -2**23, 2**23-1); s = v >= theta8; v -= theta8 * s",
                       "host": "features -> rates (float normaliser) -> spikes (rate coder) happen on the host; "
                               "the chip sees spikes and counts them"},
            colanet_config=asdict(self.config),
        )

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
