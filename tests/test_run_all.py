"""benchmarks/run_all.py: every job names a script of benchmarks/ that takes the arguments it is given."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_script(name: str):
    """benchmarks/<name>.py as a module, loaded from its file (benchmarks/ is not put on sys.path)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


run_all = _load_script("run_all")


def _options(script: Path) -> set[str]:
    return set(re.findall(r'add_argument\(\s*"(--[\w-]+)"', script.read_text()))


@pytest.mark.parametrize("job", run_all.JOBS, ids=lambda j: j.name)
def test_job_script_accepts_its_arguments(job):
    script = ROOT / "benchmarks" / job.script
    assert script.is_file(), f"{job.name}: {script} missing"
    known = _options(script)
    for mode in ("quick", "full"):
        cmd = run_all.command(job, mode == "quick", ROOT / "benchmarks" / "results")
        given = {a for a in cmd[2:] if a.startswith("--")}
        assert given <= known, f"{job.name} ({mode}): {sorted(given - known)} not options of {job.script}"


def test_quick_mode_never_writes_the_readme_results():
    for job in run_all.JOBS:
        cmd = run_all.command(job, True, ROOT / "benchmarks" / "results" / "quick")
        assert cmd[-1].startswith(str(ROOT / "benchmarks" / "results" / "quick")), cmd


def test_every_results_file_has_a_job():
    made = {j.out for j in run_all.JOBS}
    committed = {p.name for p in (ROOT / "benchmarks" / "results").glob("*.json")} - {"run_all.json"}
    assert committed <= made, f"results files no job regenerates: {sorted(committed - made)}"


def test_unknown_job_is_refused():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "nope"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown job(s) nope" in r.stderr
