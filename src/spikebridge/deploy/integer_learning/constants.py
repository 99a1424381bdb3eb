"""The constants of the integer learning rule (fixed-point shifts, weight range, the generator's
constants), as the [`integer_learning`][spikebridge.deploy.integer_learning] package docstring uses them."""

from __future__ import annotations

from ...errors import SpikebridgeError

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
