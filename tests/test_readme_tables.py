"""Every README result table equals what benchmarks/readme_tables.py renders from benchmarks/results/."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tables_match_their_results_files():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_tables.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_changed_number_is_caught(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import readme_tables

    text = readme_tables.README.read_text()
    assert "<!-- table:accuracy_imagenet64 -->" in text
    rendered = readme_tables.refresh(text)
    assert rendered == text
    start = text.index("<!-- table:accuracy_imagenet64 -->")
    digit = next(i for i in range(text.index("| logistic", start), len(text)) if text[i].isdigit())
    tampered = text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1 :]
    assert readme_tables.refresh(tampered) != tampered
