"""The integer rule's random numbers: a counter-based 32-bit generator and the stochastic
rounding of the weight updates."""

from __future__ import annotations

import torch

from .constants import ETA_SHIFT, MASK32, RNG_INCREMENT, RNG_MULTIPLIERS, RNG_SHIFTS


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
