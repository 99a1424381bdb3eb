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
  below this machine's crossover input spike density, else dense. The crossover (:func:`event_crossover`) is, in order of precedence: the
  ``crossover`` argument; the environment variable ``SPIKEBRIDGE_EVENT_CROSSOVER`` (a
  density in ``[0, 1]``; ``0`` always dense, ``1`` always event); the value cached for this
  machine under ``$SPIKEBRIDGE_CACHE/event-crossover/`` (default
  ``~/.cache/spikebridge``, the feature cache's folder), keyed by CPU model, torch version,
  intra-op threads and precision; else it is measured once (:func:`measure_crossover` at
  the two shapes of :data:`CROSSOVER_SHAPES`, a few seconds, announced on stderr) and
  cached (a cache that cannot be written is said in one warning; the measurement is then
  kept for this process only: autotuning never fails the call). The crossover falls with the number of neurons a spike reaches (a shorter
  gathered row), so it is interpolated for the weights' (:func:`crossover_at`).

``bf16=True`` holds the weights (the GEMM operand or the gathered table) and the spikes
(exactly 0/1) in bfloat16: the kernels (oneDNN GEMM, ``embedding_bag``) accumulate in fp32
and round each step's current to bfloat16, which is returned as float32. The weights are
rounded to 8 significant bits, so decisions can differ from fp32 ones;
:func:`compare_precision` measures speed and agreement on a model and its input spikes
(``benchmarks/simulation.py`` runs it on Imagenette and the 64-class set).

Library defaults (where ``method=None`` / ``bf16=None``: ``CoLaNET.simulate``,
``scores_spiking``, ``evaluate``, the int8 model): **fp32 and the dense path**, the arithmetic
every CPU reproduces bit for bit, so a model gives the same decisions on every machine and
nothing is timed or written under the cache. Faster paths are opt-in, by argument or by
environment variable: ``SPIKEBRIDGE_SIMULATION_PRECISION`` (:func:`default_bf16`: ``fp32``,
the default; ``bf16``; ``auto``: bf16 on a CPU with native bf16, ``avx512_bf16`` or
``amx_bf16``, where the dense path runs faster and decisions agree with fp32, see
``benchmarks/results/simulation.json``) and ``SPIKEBRIDGE_SIMULATION_METHOD``
(:func:`default_method`: ``dense``, the default; ``event``; ``auto``, the crossover above).
Plasticity (``spiking_activity``, training) always simulates in fp32.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import SpikebridgeError
from .io import write_json_atomic

METHODS = ("auto", "dense", "event")
PRECISION_ENV = "SPIKEBRIDGE_SIMULATION_PRECISION"
SIMULATION_PRECISIONS = ("auto", "fp32", "bf16")
METHOD_ENV = "SPIKEBRIDGE_SIMULATION_METHOD"
CROSSOVER_ENV = "SPIKEBRIDGE_EVENT_CROSSOVER"
CACHE_ENV = "SPIKEBRIDGE_CACHE"  # the project's cache folder (features.py caches features there too)
CROSSOVER_DENSITIES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6)
# (T steps, B examples, N input channels, neurons): Lite0's 1280 features (ON/OFF coding doubles
# N, and both paths' work with it) into ~64 neurons (one model: 10 classes x up to 7 microcolumns)
# and ~640 (an ensemble of 9); crossover_at interpolates between them
CROSSOVER_SHAPES = ((32, 64, 1280, 64), (32, 64, 1280, 640))
CROSSOVER_REPEATS = 3
_crossovers: dict[tuple, list] = {}  # this process's (neurons, crossover) points, by cache file and identity


def event_lists(spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Address-event form of binary spikes ``[..., N]``: (input index of every spike, offset
    of each row's first event), rows in C order of the leading dimensions."""
    return _events(spikes)[:2]


def _events(spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    flat = spikes.reshape(-1, spikes.shape[-1])
    if flat.dtype == torch.uint8:
        flat = flat.view(torch.bool)  # binary spikes: reinterpret, no pass over the data
    elif flat.dtype != torch.bool:
        flat = flat != 0
    rows, n = flat.shape
    if flat.device.type == "cpu":
        # one pass: the flat positions of the spikes (NumPy's flatnonzero is ~3x torch.nonzero's 2-D
        # form here); a row's first event is where its first position would be inserted
        flat_np = flat.contiguous().numpy()
        where = torch.from_numpy(np.flatnonzero(flat_np))
        starts = torch.arange(rows + 1, dtype=torch.int64) * n
        bounds = torch.searchsorted(where, starts)
        return where.remainder_(n), bounds[:-1], bounds[1:] - bounds[:-1]
    nz = flat.nonzero()
    per_row = torch.bincount(nz[:, 0], minlength=rows)
    offsets = torch.cumsum(per_row, 0) - per_row
    return nz[:, 1], offsets, per_row


def spike_density(spikes: torch.Tensor) -> float:
    return float(torch.count_nonzero(spikes)) / max(1, spikes.numel())


#: ``auto`` counts the spikes of at most this many rows (time step x example) to choose a path:
#: counting every spike of a large input costs ~15 % of a simulation, a sample of 512 rows x
#: 2560 inputs estimates a density to ~1e-3 (which only matters within that of the crossover,
#: where both paths take the same time)
DENSITY_SAMPLE_ROWS = 512


def estimated_density(spikes: torch.Tensor) -> float:
    """Spike density of ``spikes [..., N]`` from evenly spaced rows (all rows when few)."""
    rows = spikes.reshape(-1, spikes.shape[-1]) if spikes.dim() > 1 else spikes.reshape(1, -1)
    step = max(1, len(rows) // DENSITY_SAMPLE_ROWS)
    return spike_density(rows[::step])


# ------------------------------------------------------------------ the crossover density
@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model string (``/proc/cpuinfo``'s ``model name``; else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # no /proc (macOS, Windows): platform's description below
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_has_native_bf16() -> bool:
    """The CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` among the /proc/cpuinfo
    flags that ``lscpu`` shows); False where that file does not exist (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


def machine_identity(bf16: bool = False) -> dict:
    """What a measured crossover depends on: CPU model, torch version, intra-op threads, precision."""
    return {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "precision": "bfloat16" if bf16 else "float32"}


def cache_dir() -> Path:
    """The project cache folder: ``$SPIKEBRIDGE_CACHE``, default ``~/.cache/spikebridge``
    (read at each call, so a changed environment is honoured; ``Path.home()`` is only asked
    when the variable is unset)."""
    if CACHE_ENV in os.environ:
        return Path(os.environ[CACHE_ENV])
    return Path.home() / ".cache" / "spikebridge"


def crossover_path(identity: dict) -> Path:
    """Cache file of the crossover measured for ``identity`` (:func:`machine_identity`)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "event-crossover" / f"{digest}.json"


def _density(value, what: str) -> float:
    try:
        d = float(value)
    except (TypeError, ValueError):
        d = float("nan")
    if not 0.0 <= d <= 1.0:  # also rejects NaN
        raise SpikebridgeError(f"{what} must be a spike density in [0, 1], not {value!r}")
    return d


def event_crossover(neurons: int, crossover: float | None = None, bf16: bool = False) -> float:
    """Input spike density below which ``"auto"`` takes the event path for weights of
    ``neurons`` output columns (see the module docstring for the order: argument,
    ``SPIKEBRIDGE_EVENT_CROSSOVER``, cache, measurement; :func:`crossover_at`)."""
    if crossover is not None:
        return _density(crossover, "crossover")
    forced = os.environ.get(CROSSOVER_ENV)
    if forced is not None:
        return _density(forced, CROSSOVER_ENV)
    return crossover_at(machine_crossovers(bf16), neurons)


def crossover_at(points: list[tuple[int, float]], neurons: int) -> float:
    """Crossover for ``neurons`` from those measured at ``(n_0, c_0), (n_1, c_1)`` (``n_0 < n_1``):
    a gathered row of fewer neurons is shorter, so the event path's per-spike overhead weighs
    more and its crossover is lower; interpolated in ``log n``, constant outside::

        crossover(n) = c_0 + (c_1 - c_0) * clip(log(n / n_0) / log(n_1 / n_0), 0, 1)
    """
    (n0, c0), (n1, c1) = points[0], points[-1]
    if n1 == n0:
        return c0
    u = min(1.0, max(0.0, math.log(neurons / n0) / math.log(n1 / n0)))
    return c0 + (c1 - c0) * u


def machine_crossovers(bf16: bool = False) -> list[tuple[int, float]]:
    """``(neurons, crossover)`` of this machine at :data:`CROSSOVER_SHAPES`: remembered in this
    process, else cached, else measured now (a line on stderr) and cached."""
    identity = machine_identity(bf16)
    path = crossover_path(identity)
    key = (str(path), *identity.values())
    if key not in _crossovers:
        points = _read_cached(path, identity)
        if points is None:
            print(f"spikebridge: measuring this machine's dense/event crossover once (a few seconds; cached in {path}; "
                  f"set {CROSSOVER_ENV} to choose it)", file=sys.stderr, flush=True)
            points = remember_crossovers([measure_crossover(shape=shape, bf16=bf16) for shape in CROSSOVER_SHAPES])
        _crossovers[key] = points
    return _crossovers[key]


def remember_crossovers(curves: list[dict]) -> list[tuple[int, float]]:
    """Cache :func:`measure_crossover` results (one precision, two or more neuron counts) as this
    machine's; the current threads must be those they were measured with. Returns the points."""
    if len(curves) < 2 or len({c["precision"] for c in curves}) != 1:
        raise ValueError("remember_crossovers takes curves of one precision at two or more neuron counts")
    identity = machine_identity(curves[0]["precision"] == "bfloat16")
    if any(c["threads"] != identity["threads"] for c in curves):
        raise ValueError(f"curves measured with {[c['threads'] for c in curves]} threads, running with {identity['threads']}")
    path = crossover_path(identity)
    points = _points(curves)
    try:
        write_json_atomic(path, {"identity": identity, "curves": curves, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    except (OSError, SpikebridgeError) as exc:  # read-only or misplaced cache: keep the measurement for this process
        warnings.warn(f"cannot cache the dense/event crossover in {path} ({getattr(exc, 'strerror', None) or exc}); it is kept for this "
                      f"process only (set ${CACHE_ENV} to a writable folder or ${CROSSOVER_ENV} to a density)",
                      stacklevel=2)
    _crossovers[(str(path), *identity.values())] = points
    return points


def _points(curves: list[dict]) -> list[tuple[int, float]]:
    points = sorted((int(c["shape"]["neurons"]), _density(c["crossover"], "cached crossover")) for c in curves)
    if len(points) < 2 or points[0][0] < 1:
        raise ValueError("needs curves at two or more neuron counts")
    return points


def _read_cached(path: Path, identity: dict) -> list[tuple[int, float]] | None:
    """The cached points, or ``None`` when there are none (or they are unusable: said on stderr)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if record["identity"] != identity:
            raise ValueError(f"it was measured for {record['identity']}")
        return _points(record["curves"])
    except (OSError, ValueError, KeyError, TypeError, SpikebridgeError) as exc:
        print(f"spikebridge: ignoring the unusable crossover cache {path} ({exc}); measuring again",
              file=sys.stderr, flush=True)
        return None


def time_interleaved(calls: dict[str, Callable[[], object]], repeats: int,
                     timer: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Minimum seconds of each call over ``repeats`` rounds; every round runs each call once,
    in an order rotated from round to round (so a slow spell of a shared machine is spread)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, not {repeats}")
    names = list(calls)
    best = {name: float("inf") for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = timer()
            calls[name]()
            best[name] = min(best[name], timer() - t0)
    return best


def crossover_from_curve(densities, dense_s, event_s) -> tuple[float, bool]:
    """Density where the event path's time meets the dense path's, from timings at several
    densities ``d_i``, and whether it lies within the measured densities. Robust to one slow
    sample of a shared machine: the GEMM's time does not depend on the density, the
    gather's grows with the number of spikes, so (least squares over the ``d_i``)::

        dense(d) = median_i dense_s[i]
        event(d) = a + b d
        crossover = clip((dense - a) / b, 0, 1)      (b <= 0: 1 if a < dense, else 0)
    """
    d = torch.tensor(densities, dtype=torch.float64)
    e = torch.tensor(event_s, dtype=torch.float64)
    dense = float(torch.tensor(dense_s, dtype=torch.float64).median())
    b = float(((d - d.mean()) * (e - e.mean())).sum() / ((d - d.mean()) ** 2).sum())
    a = float(e.mean()) - b * float(d.mean())
    crossover = min(1.0, max(0.0, (dense - a) / b)) if b > 0 else float(a < dense)
    return crossover, bool(min(densities) <= crossover <= max(densities))


def measure_crossover(densities=CROSSOVER_DENSITIES, shape=CROSSOVER_SHAPES[-1], repeats: int = CROSSOVER_REPEATS,
                      bf16: bool = False, seed: int = 0, timer: Callable[[], float] = time.perf_counter) -> dict:
    """Time the dense and event currents of uniformly random spikes at each density (``shape``
    ``(T, B, N, neurons)``, the caller's intra-op threads; minimum over ``repeats``
    interleaved rounds after one warm-up call of each) and locate the crossover
    (:func:`crossover_from_curve`). Returns the curve and the crossover."""
    if len(set(densities)) < 2 or not all(0.0 <= d <= 1.0 for d in densities):
        raise ValueError(f"densities must hold at least two different values in [0, 1], not {densities!r}")
    T, B, N, neurons = shape
    g = torch.Generator().manual_seed(seed)
    weights = torch.randn(1, neurons, N, generator=g)
    spikes = [(torch.rand(T, B, N, generator=g) < d).to(torch.uint8) for d in densities]
    calls = {}
    for i, x in enumerate(spikes):
        for method in ("dense", "event"):
            calls[(method, i)] = functools.partial(spike_currents, x, weights, method, bf16=bf16)
    for method in ("dense", "event"):  # first calls pay one-off costs (allocator, oneDNN kernels)
        spike_currents(spikes[0], weights, method, bf16=bf16)
    best = time_interleaved(calls, repeats, timer)
    dense_s = [best[("dense", i)] for i in range(len(densities))]
    event_s = [best[("event", i)] for i in range(len(densities))]
    crossover, bracketed = crossover_from_curve(densities, dense_s, event_s)
    return {"crossover": crossover, "bracketed": bracketed, "densities": list(densities), "dense_s": dense_s,
            "event_s": event_s, "shape": {"steps": T, "batch": B, "inputs": N, "neurons": neurons},
            "repeats": repeats, "threads": torch.get_num_threads(), "precision": "bfloat16" if bf16 else "float32"}


def resolve_method(spikes: torch.Tensor, method: str | None, neurons: int, density: float | None = None,
                   crossover: float | None = None, bf16: bool = False) -> str:
    """``"dense"`` or ``"event"``: ``method`` itself (``None``: :func:`default_method`), or for
    ``"auto"`` the path this machine runs faster at the input's spike density into weights of
    ``neurons`` output columns (``density`` skips counting the spikes)."""
    method = default_method(method)
    if method == "auto":
        limit = event_crossover(neurons, crossover, bf16)
        density = estimated_density(spikes) if density is None else density
        return "event" if density < limit else "dense"
    return method


# ------------------------------------------------------------------ currents
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
    ``method`` ``None`` is :func:`default_method` (dense unless the environment opts in);
    ``crossover`` forces the density at which ``"auto"`` switches paths."""
    if spikes.dim() not in (3, 4):
        raise ValueError(f"spikes must be [T, B, N] or [T, K, B, N], got shape {tuple(spikes.shape)}")
    K, J, N = weights.shape
    # neurons per GEMM / gathered row: all populations' for shared input, one's for per-population input
    method = resolve_method(spikes, method, K * J if spikes.dim() == 3 else J, density, crossover, bf16)
    out_dtype = torch.float32 if bf16 else weights.dtype
    w = weights.to(torch.bfloat16) if bf16 else weights
    if method == "dense" and spikes.dim() == 3:
        currents, in_spikes = _dense_currents(spikes, w)
    elif method == "dense":
        x = spikes.to(w.dtype)
        in_spikes = x.sum(-1, dtype=torch.float32).sum(0)  # [K, B]; exact integers
        currents = torch.einsum("tkbn,kjn->ktbj", x, w)
    elif spikes.dim() == 4:  # one input per population: gather each population's own rows
        parts = [_event_currents(spikes[:, k], w[k : k + 1]) for k in range(K)]
        currents, in_spikes = torch.cat([c for c, _ in parts]), torch.stack([n for _, n in parts])
    else:
        currents, in_spikes = _event_currents(spikes, w)
    if spikes.dim() == 4:
        in_spikes = in_spikes.mean(0)
    return currents.to(out_dtype), in_spikes


#: rows (time steps x examples) of spikes converted and multiplied at a time by the dense path:
#: a 512 x N float block stays in cache and its buffer is reused, where converting all T x B
#: rows at once writes (and page-faults) a buffer the size of the whole input
DENSE_CHUNK_ROWS = 512


def _dense_currents(spikes: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[T, B, N]`` spikes (shared by all populations) -> currents ``[K, T, B, J]`` (a view) and
    input spikes per example ``[B]``: one GEMM against all ``K J`` neurons, block by block."""
    T, B, N = spikes.shape
    K, J, _ = weights.shape
    x = spikes.reshape(T * B, N)
    w_t = weights.reshape(K * J, N).t()
    out = torch.empty(T * B, K * J, dtype=weights.dtype, device=weights.device)
    per_row = torch.empty(T * B, dtype=torch.float32, device=weights.device)
    block = torch.empty(min(DENSE_CHUNK_ROWS, T * B), N, dtype=weights.dtype, device=weights.device)
    for r0 in range(0, T * B, len(block)):
        b = block[: min(len(block), T * B - r0)]
        b.copy_(x[r0 : r0 + len(b)])
        torch.mm(b, w_t, out=out[r0 : r0 + len(b)])
        torch.sum(b, -1, dtype=torch.float32, out=per_row[r0 : r0 + len(b)])  # exact integers
    return out.view(T, B, K, J).permute(2, 0, 1, 3), per_row.view(T, B).sum(0)


def _event_currents(spikes: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    T, B, N = spikes.shape
    K, J, _ = weights.shape
    cols, offsets, per_row = _events(spikes)
    table = weights.permute(2, 0, 1).reshape(N, K * J)  # row i: every neuron's weight from input i
    out = F.embedding_bag(cols, table.contiguous(), offsets, mode="sum")  # [T*B, K*J]
    return out.view(T, B, K, J).permute(2, 0, 1, 3), per_row.to(torch.float32).view(T, B).sum(0)


# ------------------------------------------------------------------ fp32 vs bf16 on a model
@torch.no_grad()
def precision_agreement(model, spikes: torch.Tensor) -> dict:
    """bf16 against fp32 on each path (``"dense"``, ``"event"``) of a CoLaNET ``model``: the
    fraction of examples whose decision (``model.column_decision``) agrees, and of neurons
    (member, example, neuron) whose spike count and first-spike step agree."""
    out = {"examples": int(spikes.shape[-2])}
    for path in ("dense", "event"):
        ref, low = model.simulate(spikes, method=path), model.simulate(spikes, method=path, bf16=True)
        out[path] = {"decisions": float((model.column_decision(ref) == model.column_decision(low)).float().mean()),
                     "counts": float((ref.counts == low.counts).float().mean()),
                     "first_spike": float((ref.first_spike == low.first_spike).float().mean())}
    return out


@torch.no_grad()
def compare_precision(model, spikes: torch.Tensor, repeats: int = 3,
                      timer: Callable[[], float] = time.perf_counter) -> dict:
    """Speed and agreement of bf16 against fp32 on a CoLaNET ``model`` and its input ``spikes``.

    For each path and precision the minimum seconds over ``repeats`` interleaved rounds of
    the currents alone and of ``model.simulate``; the agreement of :func:`precision_agreement`.
    ``bf16_recommended``: the path ``"auto"`` takes for these spikes is faster in bf16 and at
    least 99.9 % of its decisions agree."""
    weights = model.effective_weights()
    precisions = {"float32": False, "bfloat16": True}
    calls = {}
    for path in ("dense", "event"):
        for name, bf16 in precisions.items():
            calls[("currents", path, name)] = functools.partial(synaptic_currents, spikes, weights, path, bf16=bf16)
            calls[("simulate", path, name)] = functools.partial(model.simulate, spikes, method=path, bf16=bf16)
    best = time_interleaved(calls, repeats, timer)
    density = spike_density(spikes)
    K, J, _ = weights.shape
    auto = resolve_method(spikes, "auto", K * J if spikes.dim() == 3 else J, density)
    agreement = precision_agreement(model, spikes)
    out = {"input_density": density, "examples": agreement.pop("examples"), "repeats": repeats,
           "threads": torch.get_num_threads(), "auto_path": auto, "agreement": agreement,
           "currents_s": {p: {n: best[("currents", p, n)] for n in precisions} for p in ("dense", "event")},
           "simulate_s": {p: {n: best[("simulate", p, n)] for n in precisions} for p in ("dense", "event")}}
    out["bf16_recommended"] = bool(out["simulate_s"][auto]["bfloat16"] < out["simulate_s"][auto]["float32"]
                                   and agreement[auto]["decisions"] >= 0.999)
    return out
