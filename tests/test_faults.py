"""Fault injection: kill -9 and resume, changed options on resume, --strict on cached entries,
concurrent extraction, non-finite features, runs that never overwrite each other, and option
checks that fail before any work (issue 11)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import OPTS, make_image_folder, require_shared, small_input
from spikebridge.cli import main
from spikebridge.data import image_folder
from spikebridge.errors import SpikebridgeError
from spikebridge.features import ShardLock, cache_key, extract_features, load_features, shard_is_complete

N_TRAIN = 20


@pytest.fixture(scope="module")
def enc(lite0):
    return small_input(lite0)


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=10, size=24)


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    from spikebridge.encoders import Encoder

    seen: list[int] = []
    original = Encoder.__call__

    def counting(self, images):
        seen.append(len(images))
        return original(self, images)

    monkeypatch.setattr(Encoder, "__call__", counting)
    return seen


def small_imagenette(root: Path, classes: int = 3, train: int = 8, val: int = 2) -> Path:
    """A few real Imagenette images per class, copied (the shared folder is read-only)."""
    src = require_shared("imagenette")
    for split, per_class in (("train", train), ("val", val)):
        for wnid in sorted(p.name for p in (src / split).iterdir())[:classes]:
            (root / split / wnid).mkdir(parents=True)
            for f in sorted((src / split / wnid).iterdir())[:per_class]:
                shutil.copy(f, root / split / wnid / f.name)
    return root


def cli_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "spikebridge", *args]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(*args), capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def computed_shards(stdout: str, split: str) -> tuple[int, int]:
    m = re.search(rf"^{split}: .*\((\d+) of (\d+) shards computed by this process", stdout, re.M)
    assert m, stdout
    return int(m.group(1)), int(m.group(2))


# ------------------------------------------------------------------ kill -9 and resume
@pytest.mark.slow
def test_kill_9_during_extraction_then_resume(tmp_path):
    data = small_imagenette(tmp_path / "nette")
    cache = tmp_path / "cache"
    opts = ["extract", "--dataset", str(data), "--cache-dir", str(cache), "--device", "cpu", "--workers", "0",
            "--batch-size", "2", "--shard-size", "4", "--no-progress"]
    proc = subprocess.Popen(cli_args(*opts), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not list(cache.glob("*/shard-00000.json")):  # poll for the first complete shard
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"extraction exited ({proc.returncode}) before its first shard appeared")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    resumed = cli(*opts)
    assert resumed.returncode == 0, resumed.stderr
    done, total = computed_shards(resumed.stdout, "train")
    assert total == 6 and done < total  # the shard(s) written before the kill were kept
    assert re.search(r"^train: 24 x 1280 features", resumed.stdout, re.M)
    fresh = cli(*[o if o != str(cache) else str(tmp_path / "fresh") for o in opts])
    assert fresh.returncode == 0, fresh.stderr
    for split in ("train", "val"):
        a = load_features(next(p for p in cache.iterdir() if json.loads((p / "manifest.json").read_text())["dataset"]["split"] == split))
        b = load_features(next(p for p in (tmp_path / "fresh").iterdir()
                               if json.loads((p / "manifest.json").read_text())["dataset"]["split"] == split))
        assert a.index.tolist() == b.index.tolist() == list(range(len(a)))
        np.testing.assert_array_equal(a.features, b.features)


# ------------------------------------------------------------------ shard layout and integrity
def test_changed_shard_size_on_resume_keeps_every_row(folder, tmp_path, enc, calls):
    ds = image_folder(folder).train
    assert extract_features(ds, enc, tmp_path / "cache", stop_after_shards=2, **{**OPTS, "shard_size": 4}) is None
    assert calls == [4, 4]
    calls.clear()
    with pytest.warns(UserWarning, match="resuming with --shard-size 4 instead of 16"):
        resumed = extract_features(ds, enc, tmp_path / "cache", **{**OPTS, "shard_size": 16})
    assert sum(calls) == N_TRAIN - 8  # the two shards done before are kept
    assert len(resumed) == N_TRAIN and resumed.index.tolist() == list(range(N_TRAIN))
    assert resumed.labels.tolist() == ds.labels.tolist()
    fresh = extract_features(ds, enc, tmp_path / "fresh", **OPTS)
    np.testing.assert_allclose(resumed.features, fresh.features, rtol=1e-5, atol=1e-6)


def test_misplaced_shard_is_rejected_and_recomputed(folder, tmp_path, enc, calls):
    ds = image_folder(folder).train
    first = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    for ext in ("safetensors", "json"):  # a valid shard (checksum matches) at the wrong position
        shutil.copy(first.path / f"shard-00000.{ext}", first.path / f"shard-00001.{ext}")
    with pytest.raises(SpikebridgeError, match="shard-00001"):
        load_features(first.path)
    calls.clear()
    with pytest.warns(UserWarning, match="recomputing"):
        again = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert calls == [4, 4]  # shard 1 only
    assert again.index.tolist() == list(range(N_TRAIN))
    np.testing.assert_array_equal(again.features, first.features)


def test_assembled_entry_is_checked_against_its_manifest(folder, tmp_path, enc):
    ds = image_folder(folder).train
    first = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    manifest = json.loads((first.path / "manifest.json").read_text())
    (first.path / "manifest.json").write_text(json.dumps({**manifest, "n_shards": 2}))
    with pytest.raises(SpikebridgeError, match="rows"):
        load_features(first.path)
    (first.path / "manifest.json").write_text(json.dumps({**manifest, "labels_of_rows": manifest["labels_of_rows"][:-1]}))
    with pytest.raises(SpikebridgeError, match="labels"):
        load_features(first.path)


# ------------------------------------------------------------------ --strict on a cached entry
def _break_one_image(folder: Path) -> Path:
    bad = folder / "train" / "dog" / "img002.png"
    bad.write_bytes(bad.read_bytes()[:60])
    return bad


def test_strict_refuses_an_entry_that_skipped_images(folder, tmp_path, enc, calls):
    _break_one_image(folder)
    ds = image_folder(folder).train
    with pytest.warns(UserWarning, match="img002.png"):
        fs = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert len(fs.skipped) == 1
    calls.clear()
    with pytest.raises(SpikebridgeError, match=r"records 1 unreadable image.*--strict") as info:
        extract_features(ds, enc, tmp_path / "cache", strict=True, **OPTS)
    assert "\n" not in str(info.value) and calls == []


def test_strict_refuses_a_partial_entry_that_skipped_images(folder, tmp_path, enc, calls):
    _break_one_image(folder)
    ds = image_folder(folder).train
    row = [k for k, _ in ds.samples].index("train/dog/img002.png")
    shard = row // 8  # 3 shards of 8; rank i of 3 computes shard i only
    with pytest.warns(UserWarning, match="img002.png"):
        assert extract_features(ds, enc, tmp_path / "cache", rank=shard, world_size=3, **OPTS) is None
    calls.clear()
    with pytest.raises(SpikebridgeError, match="--strict"):
        extract_features(ds, enc, tmp_path / "cache", strict=True, **OPTS)
    assert calls == []  # refused before any more work


# ------------------------------------------------------------------ concurrency
def test_a_locked_shard_is_left_to_its_holder_then_waited_for(folder, tmp_path, enc, calls):
    ds = image_folder(folder).train
    entry = tmp_path / "cache" / cache_key(enc, ds)[:20]
    entry.mkdir(parents=True)
    held = ShardLock(entry / ".shard-00000.lock")
    assert held.acquire(block=False)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(fs=extract_features(ds, enc, tmp_path / "cache", **OPTS)))
    worker.start()
    try:
        while not (shard_is_complete(entry, 1) and shard_is_complete(entry, 2)):
            worker.join(timeout=0.05)
            assert worker.is_alive(), "extraction ended while shard 0 was locked"
        assert not shard_is_complete(entry, 0) and worker.is_alive()  # waits for the holder
        assert sorted(calls) == [4, 4, 4]  # shards 1 and 2 only
    finally:
        held.release()
    worker.join(timeout=300)
    assert not worker.is_alive()
    assert calls == [4, 4, 4, 4, 4]  # the holder died without writing shard 0: computed once, now
    fs = result["fs"]
    assert fs.index.tolist() == list(range(N_TRAIN)) and sorted(fs.computed) == [0, 1, 2]
    assert not list(entry.glob(".shard-*.lock"))  # lock files are removed


@pytest.mark.slow
def test_two_processes_extracting_one_entry_share_the_work(tmp_path):
    data = small_imagenette(tmp_path / "nette")
    cache = tmp_path / "cache"
    opts = cli_args("extract", "--dataset", str(data), "--cache-dir", str(cache), "--device", "cpu", "--workers", "0",
                    "--batch-size", "2", "--shard-size", "4", "--no-progress")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(opts, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    for split, n in (("train", 24), ("val", 6)):
        counts = [computed_shards(out, split) for out, _ in outs]
        assert sum(done for done, _ in counts) == counts[0][1]  # every shard computed exactly once
        paths = {re.search(rf"^{split}: {n} x 1280 features -> (\S+)", out, re.M).group(1) for out, _ in outs}
        assert len(paths) == 1  # both read the same entry
        ds = getattr(image_folder(data), split)
        fs = load_features(Path(paths.pop()), ds)
        assert fs.index.tolist() == list(range(n)) and fs.labels.tolist() == ds.labels.tolist()
        assert np.isfinite(fs.features).all()


# ------------------------------------------------------------------ non-finite features
@pytest.mark.parametrize("rule", ["colanet", "rstdp", "sstdp", "diehl-cook"])
def test_non_finite_features_are_rejected_in_training_and_prediction(rule, pixel_digits):
    from spikebridge import create_learner, train

    xt, xv, yt, _ = pixel_digits
    bad = xt[:200].copy()
    bad[5, [3, 9]] = np.nan
    with pytest.raises(SpikebridgeError) as info:
        train(create_learner(rule, 64, 10), bad, yt[:200], epochs=1, progress=False)
    msg = str(info.value)
    assert "train" in msg and "row 5" in msg and "2 of 64 columns" in msg and "\n" not in msg
    learner, _ = train(create_learner(rule, 64, 10), xt[:200], yt[:200], epochs=1, progress=False)
    bad_val = xv[:50].copy()
    bad_val[7, 0] = np.inf
    with pytest.raises(SpikebridgeError, match="row 7 has 1 of 64 columns"):
        learner.scores(bad_val, 8)
    if hasattr(learner, "predict_continuous"):
        with pytest.raises(SpikebridgeError, match="row 7"):
            learner.predict_continuous(bad_val)


# ------------------------------------------------------------------ options checked before any work
def _one_line_error(capsys, argv: list[str], expected: str) -> None:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


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


# ------------------------------------------------------------------ energy's sample
def test_energy_sample_is_stratified_and_seeded():
    from spikebridge.energy import stratified_sample

    labels = np.repeat(np.arange(10), [300, 50, 50, 100, 100, 100, 100, 100, 50, 50])  # class-ordered
    rows = stratified_sample(labels, 200, seed=0)
    assert len(rows) == 200 and len(set(rows.tolist())) == 200 and (np.diff(rows) > 0).all()
    counts = np.bincount(labels[rows], minlength=10)
    assert counts.tolist() == [60, 10, 10, 20, 20, 20, 20, 20, 10, 10]
    assert stratified_sample(labels, 200, seed=0).tolist() == rows.tolist()
    assert stratified_sample(labels, 200, seed=1).tolist() != rows.tolist()
    assert stratified_sample(labels, 5000).tolist() == list(range(len(labels)))


def test_energy_reports_which_examples_it_simulated(tmp_path, pixel_digits, capsys, monkeypatch):
    import argparse

    import spikebridge.data as data
    import spikebridge.encoders as encoders
    import spikebridge.features as features
    from torch import nn

    from spikebridge.io import save_tensors
    from spikebridge.cli.energy import add_energy_command
    from spikebridge import create_learner, train

    xt, xv, yt, yv = pixel_digits
    order = np.argsort(yv, kind="stable")  # class-ordered, like an ImageFolder val split
    xv, yv = xv[order], yv[order]
    learner, _ = train(create_learner("colanet", 64, 10, steps=8), xt, yt, epochs=1, progress=False)
    save_tensors(tmp_path / "model.safetensors", learner.tensors(),
                 {**learner.metadata(), "classes": [str(c) for c in range(10)], "encoder": {"encoder": "tiny", "cut": None}})

    class Splits:
        classes = [str(c) for c in range(10)]
        val = None

    class FakeEncoder:  # the encoder path is covered by test_energy; here: which val rows are simulated
        feature_dim = 64
        net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64))
        data_config = {"input_size": (3, 8, 8)}

    class FS:
        features, labels = xv, yv

    monkeypatch.setattr(data, "open_dataset", lambda spec, max_per_class=None: Splits())
    monkeypatch.setattr(encoders, "create_encoder", lambda *a, **k: FakeEncoder())
    monkeypatch.setattr(features, "extract_features", lambda *a, **k: FS())
    parser = argparse.ArgumentParser()
    add_energy_command(parser.add_subparsers(dest="command"))
    out = tmp_path / "e.json"
    args = parser.parse_args(["energy", "--model", str(tmp_path / "model.safetensors"), "--json", str(out)])
    assert args.func(args) == 0
    assert f"whole val split ({len(yv)} examples)" in capsys.readouterr().out
    assert json.loads(out.read_text())["examples"] == len(yv)
    args = parser.parse_args(["energy", "--model", str(tmp_path / "model.safetensors"), "--json", str(out),
                              "--max-examples", "100", "--seed", "3"])
    assert args.func(args) == 0
    assert f"class-stratified sample of 100 of {len(yv)} val examples (seed 3)" in capsys.readouterr().out
    assert json.loads(out.read_text())["examples"] == 100
