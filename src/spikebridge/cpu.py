"""What this machine's CPU is, and whether it computes bf16 natively."""

from __future__ import annotations

import functools
import platform
from pathlib import Path


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
