r"""Synaptic currents of binary input spikes, dense or event-driven, fp32 or bf16.

For input spikes ``x[t, b] in {0, 1}^N`` and weights ``W_k [J, N]`` of population ``k``::

    I_k[t, b, j] = sum_i W_k[j, i] x_i[t, b]

* ``"dense"``: one GEMM over all ``T x B`` rows (every synapse, spiking or not).
* ``"event"`` (event-driven, AER-style): only the weight rows of the inputs that spiked are
  touched, ``torch.nn.functional.embedding_bag`` over the address list of the spikes. It
  does ``density x`` the arithmetic of the dense GEMM but gathers rows instead of streaming
  them; it sums in another order, so currents differ from the GEMM's by float rounding
  (~1e-6 relative) and a neuron sitting exactly on its threshold may flip. When every
  partial sum is exactly representable (integers below ``2**24``, as in the int8 model, or
  multiples of one power of two spanning fewer than 24 bits) any order is exact, and both
  paths give identical currents.
* ``"auto"`` (opt-in: ``method="auto"`` or ``SPIKEBRIDGE_SIMULATION_METHOD=auto``): event
  below this machine's crossover input spike density, else dense. The crossover (`event_crossover()`) is, in order of precedence: the
  ``crossover`` argument; the environment variable ``SPIKEBRIDGE_EVENT_CROSSOVER`` (a
  density in ``[0, 1]``; ``0`` always dense, ``1`` always event); the value cached for this
  machine under ``$SPIKEBRIDGE_CACHE/event-crossover/`` (default
  ``~/.cache/spikebridge``, the feature cache's folder), keyed by CPU model, torch version,
  intra-op threads and precision; else it is measured once (`measure_crossover()` at
  the two shapes of `CROSSOVER_SHAPES`, a few seconds, announced on stderr) and
  cached (a cache that cannot be written is said in one warning; the measurement is then
  kept for this process only: autotuning never fails the call). The crossover falls with the number of neurons a spike reaches (a shorter
  gathered row), so it is interpolated for the weights' (`crossover_at()`).

``bf16=True`` holds the weights (the GEMM operand or the gathered table) and the spikes
(exactly 0/1) in bfloat16: the kernels (oneDNN GEMM, ``embedding_bag``) accumulate in fp32
and round each step's current to bfloat16, which is returned as float32. The weights are
rounded to 8 significant bits, so decisions can differ from fp32 ones;
`compare_precision()` measures speed and agreement on a model and its input spikes
(``benchmarks/simulation.py`` runs it on Imagenette and the 64-class set).

Library defaults (where ``method=None`` / ``bf16=None``: ``CoLaNET.simulate``,
``scores_spiking``, ``evaluate``, the int8 model): **fp32 and the dense path**, the arithmetic
every CPU reproduces bit for bit, so a model gives the same decisions on every machine and
nothing is timed or written under the cache. Faster paths are opt-in, by argument or by
environment variable: ``SPIKEBRIDGE_SIMULATION_PRECISION`` ([`default_bf16()`][spikebridge.currents.default_bf16]: ``fp32``,
the default; ``bf16``; ``auto``: bf16 on a CPU with native bf16, ``avx512_bf16`` or
``amx_bf16``, where the dense path runs faster and decisions agree with fp32, see
``benchmarks/results/simulation.json``) and ``SPIKEBRIDGE_SIMULATION_METHOD``
([`default_method()`][spikebridge.currents.default_method]: ``dense``, the default; ``event``; ``auto``, the crossover above).
Plasticity (``spiking_activity``, training) always simulates in fp32.
"""


from __future__ import annotations

import os

import torch

from .errors import SpikebridgeError
from .cpu import cpu_has_native_bf16
from .crossover import event_crossover
from .current_paths import currents_by_path, estimated_density


METHODS = ("auto", "dense", "event")
PRECISION_ENV = "SPIKEBRIDGE_SIMULATION_PRECISION"
SIMULATION_PRECISIONS = ("auto", "fp32", "bf16")
METHOD_ENV = "SPIKEBRIDGE_SIMULATION_METHOD"


def default_bf16(bf16: bool | None = None) -> bool:
    """``bf16`` if given, else the inference default: ``$SPIKEBRIDGE_SIMULATION_PRECISION``,
    ``fp32`` when unset (the same decisions on every machine); ``bf16``; or ``auto`` (opt-in:
    bf16 where the CPU has native bf16)."""
    if bf16 is not None:
        return bool(bf16)
    value = os.environ.get(PRECISION_ENV, "fp32").strip().lower()
    if value not in SIMULATION_PRECISIONS:
        raise SpikebridgeError(f"${PRECISION_ENV}={value!r}: expected one of {', '.join(SIMULATION_PRECISIONS)}")
    return value == "bf16" or (value == "auto" and cpu_has_native_bf16())


def default_method(method: str | None = None) -> str:
    """``method`` if given, else ``$SPIKEBRIDGE_SIMULATION_METHOD``, ``dense`` when unset (the
    same currents on every machine); ``event`` and ``auto`` (the timed crossover) are opt-in."""
    value = method if method is not None else os.environ.get(METHOD_ENV, "dense").strip().lower()
    if value not in METHODS:
        where = "method" if method is not None else f"${METHOD_ENV}"
        raise SpikebridgeError(f"{where}={value!r}: expected one of {', '.join(METHODS)}")
    return value


def resolve_method(spikes: torch.Tensor, method: str | None, neurons: int, density: float | None = None,
                   crossover: float | None = None, bf16: bool = False) -> str:
    """``"dense"`` or ``"event"``: ``method`` itself (``None``: [`default_method()`][spikebridge.currents.default_method]), or for
    ``"auto"`` the path this machine runs faster at the input's spike density into weights of
    ``neurons`` output columns (``density`` skips counting the spikes)."""
    method = default_method(method)
    if method == "auto":
        limit = event_crossover(neurons, crossover, bf16)
        density = estimated_density(spikes) if density is None else density
        return "event" if density < limit else "dense"
    return method


@torch.no_grad()
def spike_currents(spikes: torch.Tensor, weights: torch.Tensor, method: str | None = None,
                   density: float | None = None, *, bf16: bool = False, crossover: float | None = None) -> torch.Tensor:
    """Currents ``[K, T, B, J]`` of binary spikes ``[T, B, N]`` through ``weights [K, J, N]``
    (``density`` skips counting for ``"auto"``)."""
    return synaptic_currents(spikes, weights, method, density, bf16=bf16, crossover=crossover)[0]


@torch.no_grad()
def synaptic_currents(spikes: torch.Tensor, weights: torch.Tensor, method: str | None = None,
                      density: float | None = None, *, bf16: bool = False,
                      crossover: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Currents ``[K, T, B, J]`` and input spikes per example ``[B]`` (float32) of binary
    ``spikes [T, B, N]`` (the same input to every population) or ``[T, K, B, N]`` (one input
    per population; the count is then averaged over populations) through ``weights [K, J, N]``.

    Currents come in the weights' dtype (float32 with ``bf16``: see the module docstring);
    ``method`` ``None`` is [`default_method()`][spikebridge.currents.default_method] (dense unless the environment opts in);
    ``crossover`` forces the density at which ``"auto"`` switches paths."""
    if spikes.dim() not in (3, 4):
        raise ValueError(f"spikes must be [T, B, N] or [T, K, B, N], got shape {tuple(spikes.shape)}")
    K, J, N = weights.shape
    # neurons per GEMM / gathered row: all populations' for shared input, one's for per-population input
    method = resolve_method(spikes, method, K * J if spikes.dim() == 3 else J, density, crossover, bf16)
    return currents_by_path(spikes, weights, method, bf16)
