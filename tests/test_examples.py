"""Every script in examples/ runs offline on the digits (each in well under a minute)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# seconds measured on 2 busy CPU cores; the > 10 s ones (and the subprocess cost) are `slow`
FAST = {"colanet"}


def _params() -> list:
    return list(_each())


def _each():
    for script in sorted(EXAMPLES.glob("[!_]*.py")):
        marks = [] if script.stem in FAST else [pytest.mark.slow]
        if script.stem == "nir_export":
            marks.append(pytest.mark.skipif(any(_missing(m) for m in ("nir", "snntorch", "norse")),
                                            reason="needs the peers extra"))
        yield pytest.param(script, id=script.stem, marks=marks)


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def test_there_is_an_example_per_rule_and_workflow():
    names = {p.stem for p in EXAMPLES.glob("[!_]*.py")}
    assert {"colanet", "rstdp", "sstdp", "diehl_cook", "sklearn_pipeline", "online_incremental", "nir_export"} <= names


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
@pytest.mark.parametrize("script", _params())
def test_example_runs(script, tmp_path):
    out = subprocess.run([sys.executable, script.name], cwd=EXAMPLES, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()


def test_every_example_asserts_its_result():
    """An example that runs but checks nothing would pass however wrong its numbers were."""
    for script in EXAMPLES.glob("[!_]*.py"):
        assert "assert " in script.read_text(), f"{script.name} asserts nothing"
