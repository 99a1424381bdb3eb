"""Weights and inputs of the Akida export ([`akida`][spikebridge.deploy.akida]): CoLaNET's effective
weights quantised to Akida's 1-, 2- or 4-bit integers with one scale per neuron (nearest rounding or
error feedback, optional residual slices), and the spike counts of the regular coder over an Akida
input window."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from ..coding import encode
from ..colanet import CoLaNET
from ..errors import SpikebridgeError, require_finite
from .formats import check_akida_bits

CLIP_GRID = 64  # clipping ratios rho = 1/64 .. 1 searched per neuron by the 2- and 4-bit quantiser
MAX_SLICES = 4  # residual weight slices (Akida neurons per CoLaNET neuron)
DAMPING = 0.01  # error-feedback rounding: lambda = DAMPING * mean(diag Sigma), GPTQ's published default


def window_steps(input_bits: int) -> int:
    """``T = 2**input_bits - 1``: the longest window whose spike counts fit ``input_bits``."""
    return (1 << check_akida_bits(input_bits, "input bits")) - 1


# --------------------------------------------------------------------------- weight quantisation
@dataclass
class QuantisedWeights:
    """Akida's integer weights ``q [L, U, N]`` (int8; ``L`` residual slices) and per-neuron scales
    ``[L, U]``: ``w_hat = sum_l s_l (alpha q_l - beta)``."""

    q: torch.Tensor  # [L, U, N] int8: -Q..Q (2, 4 bits) or 0/1 (1 bit)
    scale: torch.Tensor  # [L, U] float64
    bits: int

    @property
    def alpha(self) -> int:
        return 2 if self.bits == 1 else 1

    @property
    def beta(self) -> int:
        return 1 if self.bits == 1 else 0

    def dequantised(self) -> torch.Tensor:
        """``w_hat = sum_l s_l (alpha q_l - beta)`` ``[U, N]`` float64 (zero rows stay zero: ``s = 0``)."""
        return (self.scale.unsqueeze(-1) * (self.alpha * self.q.double() - self.beta)).sum(0)


def _error_feedback_codes(target: torch.Tensor, sigma: torch.Tensor, to_code) -> torch.Tensor:
    """Codes ``c [U, N]`` for ``target [U, N]`` (weights in units of each neuron's scale) by
    rounding with error feedback under the input second moment ``Sigma`` (OPTQ / GPTQ, Frantar
    et al., ICLR 2023): inputs are rounded one at a time, and the error of input ``i`` is moved
    onto the inputs not yet rounded along the direction that keeps ``e^T Sigma e`` least,
    ``t[:, i+1:] -= (t_i - c_i) / R_ii * R[i, i+1:]`` with ``R`` the upper Cholesky factor of
    ``(Sigma + lambda I)^-1``, ``lambda = 0.01 mean(diag Sigma)`` (inputs that never spike have
    no curvature). ``to_code`` rounds and clips one column."""
    n = sigma.shape[0]
    order = torch.argsort(sigma.diagonal(), descending=True)  # the most active inputs first (GPTQ's act order)
    sigma = sigma[order][:, order]
    damp = DAMPING * float(sigma.diagonal().mean()) + 1e-12
    R = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(sigma + damp * torch.eye(n, dtype=sigma.dtype))),
                              upper=True)
    t = target[:, order].clone()
    codes = torch.empty_like(t)
    for i in range(n):
        codes[:, i] = to_code(t[:, i])
        if i + 1 < n:
            t[:, i + 1:] -= ((t[:, i] - codes[:, i]) / R[i, i]).unsqueeze(1) * R[i, i + 1:].unsqueeze(0)
    out = torch.empty_like(codes)
    out[:, order] = codes
    return out


def _quantise_once(w: torch.Tensor, bits: int, times, sigma: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One slice: ``(q [U, N] int8, scale [U])`` of least ``e^T Sigma e`` (``times(m) = m Sigma``).
    With ``sigma``, the nearest-rounding codes are refined by `_error_feedback_codes()` at
    their scale (then the scale is refitted), kept for each neuron whose error they lower."""

    def fit(code: torch.Tensor):
        """Best scale of ``code`` (>= 0) and its error ``e^T Sigma e`` (up to the constant ``w^T Sigma w``)."""
        cs = times(code)
        num, den = (cs * w).sum(1), (cs * code).sum(1)
        scale = torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros(())).clamp_min(0)
        return scale, -scale * num  # e^T S e = w^T S w - 2 s c^T S w + s^2 c^T S c = w^T S w - s c^T S w

    if bits == 1:
        q = (w > 0).to(torch.int8)
        scale, _ = fit(2.0 * q.double() - 1.0)
        scale = torch.where(w.abs().amax(1) > 0, scale, torch.zeros(()))
    else:
        Q = (1 << (bits - 1)) - 1
        top = w.abs().amax(1, keepdim=True)  # [U, 1]
        best_err = torch.full((len(w),), math.inf, dtype=torch.float64)
        q = torch.zeros_like(w, dtype=torch.int8)
        scale = torch.zeros(len(w), dtype=torch.float64)
        for k in range(1, CLIP_GRID + 1):
            code = torch.clamp(torch.round(w / (top * (k / CLIP_GRID) / Q).clamp_min(1e-300)), -Q, Q)
            s, err = fit(code)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            scale = torch.where(better, s, scale)
            q[better] = code[better].to(torch.int8)
    if sigma is not None and bool((scale > 0).any()):
        alpha, beta = (2, 1) if bits == 1 else (1, 0)
        code = alpha * q.double() - beta  # c = alpha q - beta, w_hat = s c
        if bits == 1:
            to_code = lambda col: torch.where(col >= 0, 1.0, -1.0).to(col.dtype)  # noqa: E731
        else:
            to_code = lambda col: torch.clamp(torch.round(col), -Q, Q)  # noqa: E731
        refined = _error_feedback_codes(w / scale.clamp_min(1e-300).unsqueeze(1), sigma, to_code)
        (s2, err2), (_, err) = fit(refined), fit(code)
        better = (err2 < err) & (scale > 0)
        scale = torch.where(better, s2, scale)
        q[better] = ((refined[better] + beta) / alpha).round().to(torch.int8)
    return q.masked_fill((scale == 0).view(-1, 1), 0), scale  # a neuron without a scale has no weights


def quantise_weights(w: torch.Tensor, bits: int, second_moment: torch.Tensor | None = None,
                     slices: int = 1) -> QuantisedWeights:
    """Per-neuron symmetric quantisation of ``w [U, N]`` to Akida's ``bits``-bit weights minimising
    ``e^T Sigma e`` (``second_moment`` ``Sigma [N, N]``; ``None``: the identity), the rule in the
    module docstring; each further slice quantises what the previous ones left (``w - w_hat``).
    Rows of zeros (unrecruited neurons) get ``q = 0``, ``s = 0``."""
    bits = check_akida_bits(bits, "weight bits")
    if isinstance(slices, bool) or not isinstance(slices, int) or not 1 <= slices <= MAX_SLICES:
        raise SpikebridgeError(f"weight slices {slices!r} must be an integer from 1 to {MAX_SLICES}")
    w = w.double()
    sigma = None if second_moment is None else second_moment.double()
    times = (lambda m: m) if sigma is None else (lambda m: m @ sigma)  # noqa: E731  m -> m Sigma
    qs, scales, rest = [], [], w
    for _ in range(slices):
        q, scale = _quantise_once(rest, bits, times, sigma)
        qs.append(q)
        scales.append(scale)
        rest = rest - QuantisedWeights(q[None], scale[None], bits).dequantised()
    return QuantisedWeights(torch.stack(qs), torch.stack(scales), bits)


def input_second_moment(model: CoLaNET, features, input_bits: int) -> torch.Tensor:
    """``Sigma = E[x x^T]`` ``[N, N]`` (float64) of the input rates ``x = counts / T`` of ``features``."""
    require_finite(features, "calibration")
    if len(features) == 0:
        raise SpikebridgeError("calibration features are empty")
    T = window_steps(input_bits)
    sigma = torch.zeros(model.n_channels, model.n_channels, dtype=torch.float64)
    for b in range(0, len(features), 2048):
        x = spike_counts(model.rates(features[b : b + 2048]), T).float() / T
        sigma += (x.T @ x).double()
    return sigma / len(features)


def quantised_colanet(model: CoLaNET, weight_bits: int, second_moment: torch.Tensor | None = None,
                      slices: int = 1) -> CoLaNET:
    """A copy of ``model`` whose effective weights ``W - gamma`` are the dequantised Akida weights
    ``w_hat`` (our quantised reference: ``column_scores_continuous`` on it is the decision Akida
    computes, in floating point)."""
    K, J, N = model.weights.shape
    qw = quantise_weights(model.effective_weights().reshape(K * J, N), weight_bits, second_moment, slices)
    out = copy.copy(model)  # shares every tensor but the weights, which are replaced (not modified)
    out.weights = (qw.dequantised().view(K, J, N) + model.gamma.double().view(-1, 1, 1)).to(model.weights.dtype)
    return out


def spike_counts(rates: torch.Tensor, steps: int, chunk: int = 512) -> torch.Tensor:
    """Spikes per channel ``[B, N]`` (uint8) of the regular coder over ``steps`` steps, i.e.
    ``floor(0.5 + steps * rate + 1e-6)`` (`regular_spikes()`)."""
    if steps > 255:
        raise SpikebridgeError(f"{steps} steps do not fit uint8 counts")
    out = torch.empty(rates.shape, dtype=torch.uint8)
    for b in range(0, len(rates), chunk):
        out[b : b + chunk] = encode(rates[b : b + chunk], steps, "regular").sum(0, dtype=torch.uint8)
    return out


def count_rates(model: CoLaNET, features, input_bits: int = 4) -> torch.Tensor:
    """The input counts of `counts()` as rates ``x / T`` ``[B, N]`` for our own
    readout on the same counts: ``model.column_scores_continuous(count_rates(model, features))``."""
    T = window_steps(input_bits)
    require_finite(features, "input")
    return spike_counts(model.rates(features), T).float() / T
