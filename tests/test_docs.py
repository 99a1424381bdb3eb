"""The API reference builds from the docstrings with warnings as errors (mkdocs --strict)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocstrings_handlers.python", reason="needs the docs extra: pip install -e '.[docs]'")
    mkdocs = shutil.which("mkdocs") or None
    cmd = [mkdocs] if mkdocs else [sys.executable, "-m", "mkdocs"]
    out = subprocess.run([*cmd, "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "SpikingClassifier" in api and "create_learner" in api and "register_rule" in api


def test_a_raw_rest_role_is_a_docs_warning(caplog):
    """mkdocs --strict fails on warnings: the hook warns on every raw reST role in a rendered page."""
    import importlib.util
    import logging
    import types

    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = types.SimpleNamespace(file=types.SimpleNamespace(src_path="api.md"))
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        hooks.on_page_content("<p>see :func:<code>spikebridge.training.train</code></p>", page, None, None)
        hooks.on_page_content('<p>see <a href="#x"><code>train()</code></a></p>', page, None, None)
    assert len(caplog.records) == 1 and "raw reST role" in caplog.records[0].getMessage()


def test_no_docstring_in_src_holds_a_rest_role():
    import re

    role = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|ref):`")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "src").rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if role.search(line)]
    assert not offenders, offenders[:10]
