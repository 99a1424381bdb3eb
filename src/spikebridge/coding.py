"""Rate coding: encoder activations -> normalised rates -> spike trains ``[T, B, N]``.

Normalisation (fit on training features, saved with the model): every input *channel* ``c``
reads one feature ``source[c]`` and maps it to a rate in [0, 1] with one equation::

    r_c = clip((x_{source[c]} - center_c) * gain_c, 0, 1)

Two ways of fitting ``(source, center, gain)`` (`fit()`):

* ``"onoff"`` (default) -- standardise, then split into ON and OFF channels, as retinal
  ON/OFF cells do: channel ``i`` has ``center = mean_i``, ``gain = +1 / (s * std_i)`` and
  channel ``N + i`` has ``gain = -1 / (s * std_i)``, so a feature above its training mean
  drives its ON channel and one below drives its OFF channel, each saturating at
  ``|z| = s`` (``saturation``, 3 standard deviations by default). ``2N`` channels.
* ``"percentile"`` -- ``center = 0``, ``gain = 1 / percentile_q(x_i)`` (``q = 99.85`` by
  default): one channel per feature, silent below zero. ``N`` channels.

Coders (``a`` in [0, 1], ``dt`` in seconds, ``max_rate`` in Hz):

* `bernoulli_spikes()` -- ``P(spike at step t) = a * max_rate * dt`` (clipped to 1),
  independent over steps; the discrete-time Poisson coder.
* `regular_spikes()` -- deterministic accumulator: ``phase += a * max_rate * dt`` each
  step; emit a spike and ``phase -= 1`` when ``phase >= 1``. ``phase`` starts at 0.5, so
  ``T`` steps carry ``round(T * a * max_rate * dt)`` spikes, evenly spaced.

Both return ``torch.uint8`` tensors shaped ``[T, B, N]``; with the defaults (``dt = 1 ms``,
``max_rate = 1 kHz``) the per-step spike probability equals ``a``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


NORMALISATIONS = ("onoff", "percentile")


@dataclass
class RateNormaliser:
    """Feature -> rate map of every input channel: ``r_c = clip((x[source_c] - center_c) * gain_c, 0, 1)``.

    Attributes
    ----------
    source : torch.Tensor
        [C] int64: the feature each channel reads.
    center : torch.Tensor
        [C] value subtracted from the feature.
    gain : torch.Tensor
        [C] scale (negative for OFF channels).
    kind : str
        How it was fitted ("onoff" or "percentile").
    parameter : float
        The saturation s (onoff) or the percentile q (percentile).
    """

    source: torch.Tensor
    center: torch.Tensor
    gain: torch.Tensor
    kind: str = "onoff"
    parameter: float = 3.0

    @classmethod
    def fit(cls, features: np.ndarray | torch.Tensor, kind: str = "onoff", *, percentile: float = 99.85,
            saturation: float = 3.0) -> "RateNormaliser":
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        n = x.shape[1]
        if kind == "onoff":
            center = x.mean(0)
            # dimensions that never vary keep a finite gain and stay silent
            gain = 1.0 / (saturation * torch.nan_to_num(x.std(0), nan=0.0).clamp_min(1e-6))  # one example: std 0
            return cls(torch.arange(n).repeat(2), center.repeat(2), torch.cat([gain, -gain]), kind, saturation)
        if kind == "percentile":
            step = max(1, (1 << 24) // max(1, len(x)))  # torch.quantile takes at most 2**24 elements
            scale = torch.cat([torch.quantile(x[:, i : i + step], percentile / 100.0, dim=0) for i in range(0, n, step)])
            return cls.from_scale(scale.clamp_min(1e-6), percentile)
        raise ValueError(f"unknown normalisation {kind!r}; choose one of {NORMALISATIONS}")

    @classmethod
    def from_scale(cls, scale: torch.Tensor, percentile: float = 99.85) -> "RateNormaliser":
        """The percentile map ``r_i = clip(x_i / scale_i, 0, 1)``."""
        scale = torch.as_tensor(scale, dtype=torch.float32)
        return cls(torch.arange(len(scale)), torch.zeros_like(scale), 1.0 / scale, "percentile", percentile)

    @property
    def n_channels(self) -> int:
        return len(self.source)

    def __call__(self, features: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        return ((x[:, self.source] - self.center) * self.gain).clamp_(0.0, 1.0)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"rate_source": self.source.to(torch.int64), "rate_center": self.center.float(), "rate_gain": self.gain.float()}

    def metadata(self) -> dict:
        return {"kind": self.kind, "parameter": self.parameter}

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict) -> "RateNormaliser":
        """Inverse of `tensors()` / `metadata()`."""
        return cls(tensors["rate_source"].clone(), tensors["rate_center"].clone(), tensors["rate_gain"].clone(),
                   meta["kind"], meta["parameter"])


def channel_count(n_features: int, kind: str) -> int:
    """Input channels that ``kind`` normalisation makes of ``n_features`` features."""
    return 2 * n_features if kind == "onoff" else n_features


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


def regular_counts(rates: torch.Tensor, steps: int, *, max_rate: float = 1000.0, dt: float = 1e-3,
                   phase: float = 0.5) -> torch.Tensor:
    """Spike counts ``[B, N]`` (int64) of `regular_spikes()` over ``steps`` steps without the
    spike trains: the accumulator's closed form at ``t = T`` (the same float operations)."""
    p = _probabilities(rates, max_rate, dt)
    t = torch.tensor(float(steps), dtype=p.dtype)
    return (torch.floor(phase + t * p + 1e-6) - torch.floor(torch.tensor(phase + 1e-6, dtype=p.dtype))).to(torch.int64)


CODERS = {"regular": regular_spikes, "bernoulli": bernoulli_spikes}


def encode(rates: torch.Tensor, steps: int, coder: str = "regular", *, seed: int = 0, **kw) -> torch.Tensor:
    """Spike trains ``[T, B, N]`` from rates ``[B, N]`` with the named coder."""
    if coder == "regular":
        return regular_spikes(rates, steps, **kw)
    if coder == "bernoulli":
        gen = torch.Generator(device=rates.device).manual_seed(seed)
        return bernoulli_spikes(rates, steps, generator=gen, **kw)
    raise ValueError(f"unknown coder {coder!r}; choose one of {sorted(CODERS)}")
