"""Our discrete-time LIF (decay ``beta`` per step ``dt``, gain 1) <-> NIR's continuous-time ``LIF``
parameters, in the ``"euler"`` or ``"exact"`` convention (derivation: [`nir`][spikebridge.deploy.nir])."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .formats import CONVENTIONS


@dataclass(frozen=True)
class NIRLIF:
    """NIR ``LIF`` parameters of one neuron (seconds, volts in threshold units)."""

    tau: float
    r: float
    v_leak: float
    v_threshold: float
    v_reset: float = 0.0


def lif_to_nir(beta: float, threshold: float, dt: float, convention: str = "euler") -> NIRLIF:
    """Our discrete LIF (decay ``beta`` per step ``dt``, gain 1) -> NIR continuous-time LIF."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
    if not 0.0 < beta < 1.0 or dt <= 0:
        raise ValueError("need 0 < beta < 1 and dt > 0")
    tau = dt / (1.0 - beta) if convention == "euler" else -dt / math.log(beta)
    return NIRLIF(tau=tau, r=1.0 / (1.0 - beta), v_leak=0.0, v_threshold=float(threshold))


def nir_to_lif(tau: float, r: float, v_threshold: float, dt: float, convention: str = "euler",
               v_leak: float = 0.0) -> tuple[float, float, float]:
    """NIR LIF parameters -> ``(beta, input_gain, threshold)`` of the discrete neuron at step ``dt``."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
    if v_leak != 0.0:
        raise ValueError("v_leak != 0 (a constant drive) has no CoLaNET equivalent")
    if convention == "euler":
        beta, gain = 1.0 - dt / tau, r * dt / tau
    else:
        beta = math.exp(-dt / tau)
        gain = r * (1.0 - beta)
    return beta, gain, float(v_threshold)
