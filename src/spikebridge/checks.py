"""Checks of setting values, one function per rule, shared by the config types
([`CoLaNETConfig`][spikebridge.colanet.CoLaNETConfig], [`DiehlCookConfig`][spikebridge.rules.DiehlCookConfig], ...),
[`train()`][spikebridge.training.train] and the command line, so the Python API, a ``--config``
file and a flag refuse the same values with the same one-line `SpikebridgeError`.

No module here imports torch or NumPy (the CLI checks options before importing them).
"""

from __future__ import annotations

import math
import numbers

from .errors import SpikebridgeError

#: most time steps T per example: a simulation batch holds T x examples x inputs spikes, and
#: T = 4096 at 1 ms steps is 4 s of presentation, far past where accuracy stops changing
MAX_STEPS = 4096
#: bytes one spiking-simulation batch may hold (input spikes, currents, neuron states): batches
#: are split below it, so memory stays bounded up to ``MAX_STEPS``
SIMULATION_MEMORY = 2 << 30


def simulation_bytes(steps: int, channels: int, neurons: int) -> int:
    """Bytes one example takes in a spiking simulation of ``steps`` steps: its input spikes (one
    byte per step and channel, plus the float32 block the dense path converts them in) and
    per step and neuron the float32 currents, spikes and state the LIF loop keeps (16 bytes)."""
    return steps * (5 * channels + 16 * neurons)


def simulation_batch(batch_size: int, steps_: int, channels: int, neurons: int) -> int:
    """Examples to simulate at once: ``batch_size``, fewer when their spikes and currents would
    pass `SIMULATION_MEMORY`; ``steps_`` is checked first (`steps()`)."""
    steps("steps", steps_)
    return max(1, min(batch_size, SIMULATION_MEMORY // simulation_bytes(steps_, channels, neurons)))


#: seeds are those ``torch.Generator.manual_seed`` accepts
MAX_SEED = 2**64 - 1


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def integer(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` is an integer (not a bool) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SpikebridgeError(f"{name} must be an integer (got {_show(value)})")
    _within(name, value, minimum, maximum)
    return int(value)


def number(name: str, value, minimum: float | None = None, maximum: float | None = None, *,
           above: float | None = None) -> float:
    """``value`` is a finite real number (not NaN or inf) ``>= minimum``, ``<= maximum`` and ``> above``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise SpikebridgeError(f"{name} must be a finite number (got {_show(value)})")
    if above is not None and not value > above:
        raise SpikebridgeError(f"{name} must be > {above} (got {_show(value)})")
    _within(name, value, minimum, maximum)
    return float(value)


def _within(name: str, value, minimum, maximum) -> None:
    if minimum is not None and value < minimum:
        raise SpikebridgeError(f"{name} must be >= {minimum} (got {_show(value)})")
    if maximum is not None and value > maximum:
        raise SpikebridgeError(f"{name} must be <= {maximum} (got {_show(value)})")


def choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise SpikebridgeError(f"{name} must be one of {', '.join(map(repr, allowed))} (got {_show(value)})")


def boolean(name: str, value) -> None:
    if not isinstance(value, bool):
        raise SpikebridgeError(f"{name} must be true or false (got {_show(value)})")


def steps(name: str, value) -> int:
    """Time steps T per example: ``1 <= T <= MAX_STEPS``."""
    return integer(name, value, 1, MAX_STEPS)


def seed(name: str, value, maximum: int = MAX_SEED) -> int:
    """A seed: an integer from 0 to ``maximum`` (default: what torch's generators accept)."""
    return integer(name, value, 0, maximum)


def optional_integer(name: str, value, minimum: int) -> None:
    if value is not None:
        integer(name, value, minimum)
