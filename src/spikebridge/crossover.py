"""The dense/event crossover: the input spike density below which the event-driven path is faster
on this machine -- measured once, cached per CPU, torch version, threads and precision, and
interpolated in the number of neurons (the autotuner behind ``method="auto"``)."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from .errors import SpikebridgeError
from .cpu import cpu_model
from .current_paths import currents_by_path
from .timing import time_interleaved
from .io import write_json_atomic


CROSSOVER_ENV = "SPIKEBRIDGE_EVENT_CROSSOVER"
CACHE_ENV = "SPIKEBRIDGE_CACHE"  # the project's cache folder (spikebridge.features caches features there too)
CROSSOVER_DENSITIES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6)
# (T steps, B examples, N input channels, neurons): Lite0's 1280 features (ON/OFF coding doubles
# N, and both paths' work with it) into ~64 neurons (one model: 10 classes x up to 7 microcolumns)
# and ~640 (an ensemble of 9); crossover_at interpolates between them
CROSSOVER_SHAPES = ((32, 64, 1280, 64), (32, 64, 1280, 640))
CROSSOVER_REPEATS = 3
_crossovers: dict[tuple, list] = {}  # this process's (neurons, crossover) points, by cache file and identity


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
    """Cache file of the crossover measured for ``identity`` (`machine_identity()`)."""
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
    ``neurons`` output columns (see [`currents`][spikebridge.currents] for the order: argument,
    ``SPIKEBRIDGE_EVENT_CROSSOVER``, cache, measurement; `crossover_at()`)."""
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
    """``(neurons, crossover)`` of this machine at `CROSSOVER_SHAPES`: remembered in this
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
    """Cache `measure_crossover()` results (one precision, two or more neuron counts) as this
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
    (`crossover_from_curve()`). Returns the curve and the crossover."""
    if len(set(densities)) < 2 or not all(0.0 <= d <= 1.0 for d in densities):
        raise ValueError(f"densities must hold at least two different values in [0, 1], not {densities!r}")
    T, B, N, neurons = shape
    g = torch.Generator().manual_seed(seed)
    weights = torch.randn(1, neurons, N, generator=g)
    spikes = [(torch.rand(T, B, N, generator=g) < d).to(torch.uint8) for d in densities]
    calls = {}
    for i, x in enumerate(spikes):
        for method in ("dense", "event"):
            calls[(method, i)] = functools.partial(currents_by_path, x, weights, method, bf16)
    for method in ("dense", "event"):  # first calls pay one-off costs (allocator, oneDNN kernels)
        currents_by_path(spikes[0], weights, method, bf16)
    best = time_interleaved(calls, repeats, timer)
    dense_s = [best[("dense", i)] for i in range(len(densities))]
    event_s = [best[("event", i)] for i in range(len(densities))]
    crossover, bracketed = crossover_from_curve(densities, dense_s, event_s)
    return {"crossover": crossover, "bracketed": bracketed, "densities": list(densities), "dense_s": dense_s,
            "event_s": event_s, "shape": {"steps": T, "batch": B, "inputs": N, "neurons": neurons},
            "repeats": repeats, "threads": torch.get_num_threads(), "precision": "bfloat16" if bf16 else "float32"}
