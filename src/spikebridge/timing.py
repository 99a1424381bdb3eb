"""Timing harness: the best of several interleaved rounds of each call (robust on a shared machine)."""

from __future__ import annotations

import time
from typing import Callable


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
