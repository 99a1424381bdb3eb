"""Every result table of the README and the docs equals what benchmarks/readme_tables.py renders from benchmarks/results/."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def readme_tables():
    """benchmarks/readme_tables.py as a module, loaded from its file (benchmarks/ is not put on sys.path)."""
    spec = importlib.util.spec_from_file_location("benchmarks_readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_tables_match_their_results_files():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_tables.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_changed_number_is_caught(readme_tables):
    text = readme_tables.README.read_text()
    assert "<!-- table:accuracy_imagenet64 -->" in text
    rendered = readme_tables.refresh(text)
    assert rendered == text
    start = text.index("<!-- table:accuracy_imagenet64 -->")
    digit = next(i for i in range(text.index("| logistic", start), len(text)) if text[i].isdigit())
    tampered = text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1 :]
    assert readme_tables.refresh(tampered) != tampered


def test_int8_tables_are_registered_and_in_the_docs(readme_tables):
    """The int8 encoder's tables: accuracy on int8 features, ImageNet-sample top-1, energy, speed."""
    text = readme_tables.all_text()
    for name in ("accuracy_imagenet64_int8", "accuracy_imagenette_int8", "int8", "int8_energy", "extract_int8"):
        assert name in readme_tables.RENDERERS
        assert f"<!-- table:{name} -->" in text and f"<!-- /table:{name} -->" in text
    if (readme_tables.RESULTS / "accuracy_imagenet64_int8.json").is_file():
        assert "**int8** features" in readme_tables.RENDERERS["accuracy_imagenet64_int8"]()
        assert "efficientnet_lite0 **int8**" in readme_tables.encoder_choice()


def test_readme_is_short_and_links_into_the_docs(readme_tables):
    text = readme_tables.README.read_text()
    assert len(text.splitlines()) < 150
    for page in ("docs/guide/install.md", "docs/guide/continual.md", "docs/guide/export.md", "docs/results.md"):
        assert f"]({page})" in text and (readme_tables.ROOT / page).is_file(), page
