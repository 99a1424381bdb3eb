"""How long a newcomer waits: ``spikebridge demo`` with a cold feature cache, timed end to end.

    python benchmarks/demo_time.py       # writes benchmarks/results/demo.json

Runs the installed ``spikebridge demo`` in a subprocess with an empty ``SPIKEBRIDGE_CACHE`` and
a temporary run directory (nothing outside a temp folder is written), and records the wall time,
the accuracies it printed (from its run.json) and the machine. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from spikebridge.report import cpu_busy_fraction, machine_info  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo.json")
    args = ap.parse_args(argv)
    busy_before = cpu_busy_fraction(2.0)  # other processes' use of the CPUs just before the start
    with tempfile.TemporaryDirectory(prefix="spikebridge-demo-") as tmp:
        env = {**os.environ, "SPIKEBRIDGE_CACHE": str(Path(tmp) / "cache")}
        run_dir = Path(tmp) / "demo"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "spikebridge", "demo", "--run-dir", str(run_dir), "--no-progress"],
                       env=env, check=True, cwd=tmp)
        seconds = time.perf_counter() - t0
        run = json.loads((run_dir / "run.json").read_text())
    result = {"command": "spikebridge demo (cold cache)", "wall_seconds": seconds,
              "cpu_busy_before_start": busy_before,
              "load_average_1min_after": os.getloadavg()[0],
              "top1_spiking": run["metrics"]["top1"], "tuned_probe_top1": run["baseline"]["top1"],
              "train_seconds": run["train_seconds"], "machine": machine_info()}
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"demo: {seconds:.0f} s wall; CoLaNET {100 * result['top1_spiking']:.2f} % vs tuned probe "
          f"{100 * result['tuned_probe_top1']:.2f} %; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
