"""How long the fast lane of the test suite takes: ``pytest -m "not slow"``, timed end to end.

    python benchmarks/fast_lane.py       # writes benchmarks/results/fast_lane.json

Runs the suite's fast lane in a subprocess with ``--durations=10`` and records the wall time, the
counts pytest reports, the slowest tests and the machine. Run it alone on the machine: the README
quotes the time only when the CPUs were idle before the start.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from spikebridge.io import write_json_atomic  # noqa: E402
from spikebridge.report import cpu_busy_fraction, machine_info  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fast_lane.json")
    args = ap.parse_args(argv)
    busy_before = cpu_busy_fraction(2.0)
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "--durations=10", "-p",
                          "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    last = run.stdout.strip().splitlines()[-1]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", last)}
    slowest = re.findall(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)", run.stdout, re.M)
    result = {"command": 'pytest -q -m "not slow"', "wall_seconds": seconds, "exit_code": run.returncode,
              "counts": counts, "summary": last, "cpu_busy_before_start": busy_before,
              "slowest": [{"seconds": float(s), "phase": p, "test": t} for s, p, t in slowest],
              "machine": machine_info()}
    write_json_atomic(args.out, result)
    print(f"fast lane: {seconds:.0f} s wall, {last}; wrote {args.out}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
