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

from .constants import (ETA_SHIFT, FS_SHIFT, INT8_LIMIT, LATERAL_SHIFT, MARGIN_SHIFT, MASK32, MODEL_KIND, NO_NEURON,
                        RATE_SHIFT, RNG_INCREMENT, RNG_MULTIPLIERS, RNG_SHIFTS, RULE_FORMAT, RULE_VERSION, weight_limit)
from .rng import lowbias32, rng_draws, stochastic_round
from .rule_sidecar import IntegerRuleSidecar
from .learner import IntegerCoLaNET, integer_learner

__all__ = ["ETA_SHIFT", "FS_SHIFT", "INT8_LIMIT", "LATERAL_SHIFT", "MARGIN_SHIFT", "MASK32", "MODEL_KIND", "NO_NEURON",
           "RATE_SHIFT", "RNG_INCREMENT", "RNG_MULTIPLIERS", "RNG_SHIFTS", "RULE_FORMAT", "RULE_VERSION",
           "IntegerCoLaNET", "IntegerRuleSidecar", "integer_learner", "lowbias32", "rng_draws", "stochastic_round",
           "weight_limit"]
