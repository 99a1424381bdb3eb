"""Norse and snnTorch LIF cells set up to run spikebridge's LIF dynamics.

``v = beta v + I``, a spike when ``v`` reaches ``theta`` and a subtractive reset in the step of the
spike, as [`lif_population()`][spikebridge.neurons.lif_population] without lateral inhibition (which spikes at
``v >= theta``, the peers at ``v > theta``: they differ only where ``v`` equals ``theta`` exactly). Each ``*_run`` feeds
currents ``[T, B, J]`` from rest and returns the spikes ``[T, B, J]``. Used by the like-for-like
rows of ``benchmarks/speed.py``; needs the 'peers' extra (``pip install 'spikebridge[peers]'``).
"""

from __future__ import annotations

import torch


def norse_lifbox(beta: float, theta: float, dt: float):
    """Norse ``LIFBoxCell`` with our dynamics, and the gain its input must be divided by.

    Norse's Euler step is ``v <- v + dt * tau_mem_inv * (i + v_leak - v)``; with
    ``tau_mem_inv = (1 - beta) / dt`` and ``v_leak = 0`` that is ``v <- beta v + g i`` with
    ``g = 1 - beta``, so feeding ``I / g`` gives ``v <- beta v + I``. Spikes at ``v > theta``
    (Heaviside), then ``reset_subtract``: ``v <- v - theta`` for the neurons that fired."""
    from norse.torch import LIFBoxCell, LIFBoxParameters
    from norse.torch.functional.reset import reset_subtract

    tau_mem_inv = torch.as_tensor((1.0 - beta) / dt)
    p = LIFBoxParameters(tau_mem_inv=tau_mem_inv, v_leak=torch.as_tensor(0.0), v_th=torch.as_tensor(theta),
                         v_reset=torch.as_tensor(0.0), reset_method=reset_subtract)
    gain = float(dt * tau_mem_inv)  # the factor Norse multiplies the input by, as Norse computes it
    return LIFBoxCell(p, dt=dt), gain


def norse_run(cell, currents: torch.Tensor) -> torch.Tensor:
    """Spikes ``[T, B, J]`` of ``cell`` on ``currents [T, B, J]`` (already divided by the gain).
    The state starts explicitly at rest: Norse's default first state sets ``requires_grad`` on
    it, which ``torch.compile`` cannot trace."""
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState

    state = LIFBoxFeedForwardState(v=torch.zeros(currents.shape[1:], dtype=currents.dtype))
    out = []
    for t in range(currents.shape[0]):
        z, state = cell(currents[t], state)
        out.append(z)
    return torch.stack(out)


def snntorch_leaky(beta: float, theta: float):
    """snnTorch ``Leaky`` with our dynamics: ``mem = beta mem + I``, spike at ``mem > theta``,
    ``mem -= theta`` in the same step (``reset_delay=False``; the default delays the reset to
    the next step, after the decay). Identical to ours while a step's input stays below
    ``(2 - beta) theta`` (one spike per step suffices), as CoLaNET's calibrated currents do."""
    import snntorch

    return snntorch.Leaky(beta=beta, threshold=theta, reset_mechanism="subtract", reset_delay=False)


def snntorch_run(leaky, currents: torch.Tensor) -> torch.Tensor:
    """Spikes ``[T, B, J]`` of ``leaky`` on ``currents [T, B, J]``, from rest."""
    mem = torch.zeros(currents.shape[1:], dtype=currents.dtype)
    out = []
    for t in range(currents.shape[0]):
        spk, mem = leaky(currents[t], mem)
        out.append(spk)
    return torch.stack(out)
