"""A ``--quick`` benchmark run never writes (nor merges into) the committed ``benchmarks/results/``.

Every script of ``benchmarks/`` with a ``--quick`` flag resolves its output through
``benchmarks/harness.py``'s ``result_path`` (quick: ``benchmarks/results/quick/``), and its
``--out`` option has no default pointing into the results folder (issue 23).
"""

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _quick_scripts() -> list[Path]:
    return sorted(p for p in BENCH.glob("*.py") if _option_calls(p, "--quick"))


def _option_calls(script: Path, option: str) -> list[ast.Call]:
    """The ``add_argument(option, ...)`` calls of ``script``."""
    return [node for node in ast.walk(ast.parse(script.read_text(), str(script)))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
            and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == option]


def _harness():
    spec = importlib.util.spec_from_file_location("benchmark_harness", BENCH / "harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


QUICK_SCRIPTS = _quick_scripts()


def test_the_quick_scripts_are_found():
    names = {p.name for p in QUICK_SCRIPTS}
    assert {"speed.py", "simulation.py", "continual.py", "accuracy.py", "deploy.py"} <= names, sorted(names)
    assert "harness.py" not in names and "run_all.py" in names


# run_all.py has --out-dir (results/quick with --quick) and passes --out to every job (tests/test_run_all.py)
@pytest.mark.parametrize("script", [p for p in QUICK_SCRIPTS if p.name != "run_all.py"], ids=lambda p: p.name)
def test_quick_output_goes_through_result_path(script):
    source = script.read_text()
    assert "result_path(" in source, f"{script.name}: --quick output not resolved by harness.result_path"
    outs = _option_calls(script, "--out")
    assert len(outs) == 1, f"{script.name}: {len(outs)} add_argument('--out', ...) calls"
    default = next((k.value for k in outs[0].keywords if k.arg == "default"), None)
    assert default is None or (isinstance(default, ast.Constant) and default.value is None), (
        f"{script.name}: --out has default {ast.unparse(default)}; it must be None (resolved by result_path)")
    assert "simulation_quick" not in source


def test_result_path(tmp_path):
    harness = _harness()
    assert harness.RESULTS == ROOT / "benchmarks" / "results"
    assert harness.QUICK_RESULTS == ROOT / "benchmarks" / "results" / "quick"
    # an explicit --out wins, quick or not, and its folder is created
    out = tmp_path / "sub" / "x.json"
    assert harness.result_path("speed.json", True, out) == out
    assert harness.result_path("speed.json", False, out) == out
    assert out.parent.is_dir()
    # the defaults (no folder created in the repository here)
    quick = harness.result_path("speed.json", True, create=False)
    assert quick == ROOT / "benchmarks" / "results" / "quick" / "speed.json"
    assert quick.parent == harness.QUICK_RESULTS and harness.RESULTS in quick.parents
    full = harness.result_path("speed.json", False, None, create=False)
    assert full == ROOT / "benchmarks" / "results" / "speed.json"
    assert harness.result_path("simulation.json", True, create=False).name == "simulation.json"
    # create=False leaves a missing folder missing
    assert not harness.result_path("x.json", True, tmp_path / "absent" / "x.json", create=False).parent.exists()


def test_no_committed_quick_results():
    results = ROOT / "benchmarks" / "results"
    assert not [p.name for p in results.glob("*quick*") if p.is_file()]
