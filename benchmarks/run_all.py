"""Regenerate every results file, one benchmark after another, then the README's tables.

    python benchmarks/run_all.py --quick                 # minutes (warm feature cache): benchmarks/results/quick/
    python benchmarks/run_all.py                         # full: benchmarks/results/, then README tables
    python benchmarks/run_all.py --only speed,simulation,extract     # a subset (names below)
    python benchmarks/run_all.py --list                  # the jobs and the command of each

Each job is one script of this folder run in its own process (``sys.executable``), strictly one
at a time: timings are only meaningful on an otherwise idle machine, so the script records the
1-minute load average before every job and warns when something else is running. A failing job
does not stop the others (its return code and the tail of its output are recorded); the run
exits non-zero if any failed.

``--quick`` writes into ``benchmarks/results/quick/`` (ignored by git) so that a smoke run never
replaces the full results the README is rendered from; the full mode writes into
``benchmarks/results/`` and finishes with ``python benchmarks/readme_tables.py --write``.
``run_all.json`` (in the same folder) records the machine, the mode and each job's command,
wall time, load average and return code. Feature extraction is cached
(``$SPIKEBRIDGE_CACHE``), so "minutes" assumes the Lite0 features of the data sets are cached;
a cold cache adds the extraction (timed by ``extract``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
SHARED = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT / "src"))


@dataclass(frozen=True)
class Job:
    name: str
    script: str
    out: str  # results file name
    full: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=lambda: ["--quick"])
    timing: bool = False  # its numbers are timings: needs an idle machine


def _acc(data: str, encoder: str | None = None) -> list[str]:
    return ["--dataset", str(SHARED / data)] + (["--encoder", encoder] if encoder else [])


INT8_ROWS = ["--precision", "int8", "--rows", "probe,colanet,single-pass"]

JOBS = [
    # first: --remember stores the dense/event crossover measured here for method="auto" (speed uses it)
    Job("simulation", "simulation.py", "simulation.json", ["--remember"], timing=True),
    Job("speed", "speed.py", "speed.json", timing=True),
    Job("extract", "extract.py", "extract.json", timing=True),
    Job("accuracy_digits", "accuracy.py", "accuracy_digits.json", ["--dataset", "digits"], ["--dataset", "digits", "--quick"]),
    Job("accuracy_imagenette", "accuracy.py", "accuracy_imagenette.json", _acc("imagenette"), _acc("imagenette") + ["--quick"]),
    Job("accuracy_imagenet64", "accuracy.py", "accuracy_imagenet64.json", _acc("imagenet64"), _acc("imagenet64") + ["--quick"]),
    Job("accuracy_imagenet64_lite1", "accuracy.py", "accuracy_imagenet64_efficientnet_lite1.json",
        _acc("imagenet64", "efficientnet_lite1") + ["--rows", "probe,colanet"],
        _acc("imagenet64", "efficientnet_lite1") + ["--rows", "probe,colanet", "--quick"]),
    Job("accuracy_imagenet64_lite2", "accuracy.py", "accuracy_imagenet64_efficientnet_lite2.json",
        _acc("imagenet64", "efficientnet_lite2") + ["--rows", "probe,colanet"],
        _acc("imagenet64", "efficientnet_lite2") + ["--rows", "probe,colanet", "--quick"]),
    Job("accuracy_imagenet64_int8", "accuracy.py", "accuracy_imagenet64_int8.json",
        _acc("imagenet64") + INT8_ROWS, _acc("imagenet64") + INT8_ROWS + ["--quick"]),
    Job("accuracy_imagenette_int8", "accuracy.py", "accuracy_imagenette_int8.json",
        _acc("imagenette") + INT8_ROWS, _acc("imagenette") + INT8_ROWS + ["--quick"]),
    Job("int8", "int8.py", "int8.json"),
    Job("extract_int8", "extract.py", "extract_int8.json", ["--variants", "fp32 openvino,int8 openvino"],
        ["--quick", "--variants", "fp32 openvino,int8 openvino"], timing=True),
    Job("rule_study", "rule_study.py", "rule_study.json"),
    Job("resolution", "resolution.py", "resolution.json"),
    Job("encoders", "encoders.py", "encoders.json", [], ["--limit", "100"]),
    Job("continual_digits", "continual.py", "continual_digits.json", ["--dataset", "digits"], ["--dataset", "digits", "--quick"]),
    Job("continual_imagenette", "continual.py", "continual_imagenette.json", _acc("imagenette")[:2],
        _acc("imagenette")[:2] + ["--quick"]),
    Job("continual_imagenet64", "continual.py", "continual_imagenet64.json", _acc("imagenet64")[:2],
        _acc("imagenet64")[:2] + ["--quick"]),
    Job("continual_study_digits", "continual_study.py", "continual_study_digits.json", ["--dataset", "digits", "--orders", "2"],
        ["--dataset", "digits", "--quick"]),
    Job("continual_study_imagenet64", "continual_study.py", "continual_study_imagenet64.json", _acc("imagenet64")[:2],
        _acc("imagenet64")[:2] + ["--quick"]),
    Job("deploy", "deploy.py", "deploy.json"),
    Job("nir_consumers", "nir_consumers.py", "deploy.json"),
    Job("akida", "akida_deploy.py", "deploy.json"),
    Job("akida_encoder", "akida_encoder.py", "akida_encoder.json"),  # needs $SPIKEBRIDGE_AKIDA_FULL_PYTHON
    Job("integer_learning", "integer_learning.py", "deploy.json"),
    Job("lava", "lava_deploy.py", "lava.json", [], ["--datasets", "digits"]),  # needs $SPIKEBRIDGE_LAVA_PYTHON
    Job("slda_crosscheck", "slda_crosscheck.py", "slda_crosscheck.json"),  # needs $SPIKEBRIDGE_AVALANCHE_PYTHON
    Job("truenorth", "truenorth_mapping.py", "truenorth.json", [], ["--datasets", "digits"]),
    Job("energy", "energy.py", "energy.json"),
    Job("demo", "demo_time.py", "demo.json", [], [], timing=True),
    Job("fast_lane", "fast_lane.py", "fast_lane.json", [], [], timing=True),
]


def command(job: Job, quick: bool, out_dir: Path) -> list[str]:
    args = job.quick if quick else job.full
    return [sys.executable, str(BENCH / job.script), *args, "--out", str(out_dir / job.out)]


def run_job(job: Job, cmd: list[str], log_dir: Path) -> dict:
    from spikebridge.report import cpu_busy_fraction

    load = os.getloadavg()[0]
    busy = cpu_busy_fraction(2.0)  # others' use of the CPUs now (the load average lags by a minute)
    if job.timing and busy is not None and busy > 0.2:
        print(f"warning: CPUs {100 * busy:.0f} % busy before {job.name}: its timings are contended", file=sys.stderr)
    log = log_dir / f"{job.name}.log"
    print(f"== {job.name}: {' '.join(cmd[1:])}  (log: {log})", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    tail = log.read_text().splitlines()[-8:]
    print("\n".join("   " + line for line in tail), flush=True)
    print(f"== {job.name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f} s", flush=True)
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - seconds)),
            "command": " ".join(["python"] + [str(Path(c).relative_to(ROOT)) if c.startswith(str(ROOT)) else c
                                             for c in cmd[1:]]),
            "seconds": seconds, "load_average_1min_before": load, "cpu_busy_before": busy, "returncode": rc,
            "output_tail": tail if rc else []}


def main(argv=None) -> int:
    from spikebridge.io import write_json_atomic
    from spikebridge.report import machine_info

    names = [j.name for j in JOBS]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="every job in its quick form, into benchmarks/results/quick/")
    ap.add_argument("--only", default=None, help=f"comma-separated jobs to run (default: all): {','.join(names)}")
    ap.add_argument("--skip", default="", help="comma-separated jobs to leave out")
    ap.add_argument("--out-dir", type=Path, default=None,
                    help="results folder (default: benchmarks/results, or benchmarks/results/quick with --quick)")
    ap.add_argument("--no-readme", action="store_true", help="full mode: do not refresh README tables afterwards")
    ap.add_argument("--list", action="store_true", help="print each job's command and exit")
    args = ap.parse_args(argv)

    def pick(text: str | None) -> list[str]:
        chosen = [n.strip() for n in text.split(",") if n.strip()] if text else []
        unknown = [n for n in chosen if n not in names]
        if unknown:
            ap.error(f"unknown job(s) {', '.join(unknown)}; known: {', '.join(names)}")
        return chosen

    only, skip = pick(args.only), pick(args.skip)
    jobs = [j for j in JOBS if (not only or j.name in only) and j.name not in skip]
    out_dir = args.out_dir or (BENCH / "results" / "quick" if args.quick else BENCH / "results")
    if args.list:
        for j in jobs:
            print(f"{j.name:28s} {' '.join(command(j, args.quick, out_dir)[1:])}")
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = out_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    summary = out_dir / "run_all.json"
    record = {"mode": "quick" if args.quick else "full", "machine": machine_info(), "jobs": {}}
    if only and summary.is_file():  # a partial run keeps the other jobs' records (each has its own start time)
        previous = json.loads(summary.read_text())
        if previous.get("mode") == record["mode"]:
            record["jobs"] = {n: r for n, r in previous.get("jobs", {}).items() if n not in only}
    t0 = time.perf_counter()
    for job in jobs:
        record["jobs"][job.name] = run_job(job, command(job, args.quick, out_dir), log_dir)
        record["total_seconds"] = time.perf_counter() - t0  # of this invocation
        write_json_atomic(summary, record)  # after every job: an interrupted run keeps what it measured
    failed = [n for n, r in record["jobs"].items() if r["returncode"]]
    if not args.quick and not args.no_readme and out_dir.resolve() == (BENCH / "results").resolve():
        subprocess.run([sys.executable, str(BENCH / "readme_tables.py"), "--write"], cwd=ROOT, check=True)
    print(f"{len(jobs) - len(failed)}/{len(jobs)} jobs ok in {record['total_seconds']:.0f} s; wrote {summary}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
