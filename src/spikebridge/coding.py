"""Rate coding: encoder activations -> normalised rates -> spike trains ``[T, B, N]``.

Normalisation (fit on training features, saved with the model)::

    a = clip(x / scale, 0, 1),   scale_i = percentile_q(x_i over the training set)  (q = 99)

Coders (``a`` in [0, 1], ``dt`` in seconds, ``max_rate`` in Hz):

* :func:`bernoulli_spikes` -- ``P(spike at step t) = a * max_rate * dt`` (clipped to 1),
  independent over steps; the discrete-time Poisson coder.
* :func:`regular_spikes` -- deterministic accumulator: ``phase += a * max_rate * dt`` each
  step; emit a spike and ``phase -= 1`` when ``phase >= 1``. ``phase`` starts at 0.5, so
  ``T`` steps carry ``round(T * a * max_rate * dt)`` spikes, evenly spaced.

Both return ``torch.uint8`` tensors shaped ``[T, B, N]``; with the defaults (``dt = 1 ms``,
``max_rate = 1 kHz``) the per-step spike probability equals ``a``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class RateNormaliser:
    """Per-dimension scale mapping features to rates in [0, 1]."""

    scale: torch.Tensor  # [N]
    percentile: float = 99.0

    @classmethod
    def fit(cls, features: np.ndarray | torch.Tensor, percentile: float = 99.0) -> "RateNormaliser":
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        step = max(1, (1 << 24) // max(1, len(x)))  # torch.quantile takes at most 2**24 elements
        scale = torch.cat([torch.quantile(x[:, i : i + step], percentile / 100.0, dim=0) for i in range(0, x.shape[1], step)])
        # dimensions that are (almost) never active keep a scale that leaves them near zero
        return cls(scale.clamp_min(1e-6), percentile)

    def __call__(self, features: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        return (x / self.scale).clamp_(0.0, 1.0)


def _probabilities(rates: torch.Tensor, max_rate: float, dt: float) -> torch.Tensor:
    return (rates * (max_rate * dt)).clamp(0.0, 1.0)


def bernoulli_spikes(rates: torch.Tensor, steps: int, *, max_rate: float = 1000.0, dt: float = 1e-3,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``rates [B, N]`` -> independent Bernoulli spikes ``[T, B, N]`` (uint8), seeded by ``generator``."""
    p = _probabilities(rates, max_rate, dt)
    u = torch.rand((steps, *p.shape), generator=generator, device=p.device)
    return (u < p).to(torch.uint8)


def regular_spikes(rates: torch.Tensor, steps: int, *, max_rate: float = 1000.0, dt: float = 1e-3,
                   phase: float = 0.5) -> torch.Tensor:
    """``rates [B, N]`` -> evenly spaced deterministic spikes ``[T, B, N]`` (uint8).

    Closed form of the accumulator: spikes up to step ``t`` (1-based) = ``floor(phase + t*p)``.
    """
    p = _probabilities(rates, max_rate, dt)
    t = torch.arange(0, steps + 1, device=p.device, dtype=p.dtype).view(-1, *([1] * p.dim()))
    cumulative = torch.floor(phase + t * p + 1e-6)
    return (cumulative[1:] - cumulative[:-1]).to(torch.uint8)


CODERS = {"regular": regular_spikes, "bernoulli": bernoulli_spikes}


def encode(rates: torch.Tensor, steps: int, coder: str = "regular", *, seed: int = 0, **kw) -> torch.Tensor:
    """Spike trains ``[T, B, N]`` from rates ``[B, N]`` with the named coder."""
    if coder == "regular":
        return regular_spikes(rates, steps, **kw)
    if coder == "bernoulli":
        gen = torch.Generator(device=rates.device).manual_seed(seed)
        return bernoulli_spikes(rates, steps, generator=gen, **kw)
    raise ValueError(f"unknown coder {coder!r}; choose one of {sorted(CODERS)}")
