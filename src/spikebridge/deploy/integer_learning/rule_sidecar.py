"""The integer learning rule written down: the versioned JSON sidecar
([`IntegerRuleSidecar`][spikebridge.deploy.integer_learning.IntegerRuleSidecar]) from which a chip
(or a test) re-implements the rule without this library."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..fixed_point import DECAY_BITS, DECAY_EQUATION, MEMBRANE_BITS
from ..sidecar import VersionedSidecar
from .constants import (ETA_SHIFT, RATE_SHIFT, RNG_INCREMENT, RNG_MULTIPLIERS, RNG_SHIFTS, RULE_FORMAT, RULE_VERSION,
                        _bits)


@dataclass
class IntegerRuleSidecar(VersionedSidecar):
    """The integer learning rule, completely (see the package docstring): bit widths, constants,
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


class RuleDescription:
    """The rule's sidecar of an [`IntegerCoLaNET`][spikebridge.deploy.integer_learning.IntegerCoLaNET]
    (a mixin: it reads the learner's constants, sizes and state)."""

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
            inference={"model": "spikebridge.deploy.fixed_point.Int8CoLaNET (format spikebridge-int8) of the recruited neurons",
                       "weights": "W8 (int8), weight LSB = 2^fold_shift learned LSBs",
                       "dynamics": f"v <- {DECAY_EQUATION} + sum_i W8[j,i] x_i[t] - lateral8 * (other spikes at "
                                   "t-1); v <- clamp(v, -2**23, 2**23-1); s = v >= theta8; v -= theta8 * s",
                       "host": "features -> rates (float normaliser) -> spikes (rate coder) happen on the host; "
                               "the chip sees spikes and counts them"},
            colanet_config=asdict(self.config),
        )
