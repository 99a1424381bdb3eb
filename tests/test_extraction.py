"""Tests of spikebridge.features under faults: kill -9 and resume, changed options on resume, --strict on
cached entries, locked shards and concurrent extraction (issue 11)."""

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

from conftest import OPTS, require_shared
from spikebridge.data import image_folder
from spikebridge.errors import SpikebridgeError
from spikebridge.features import ShardLock, cache_key, extract_features, load_features, shard_is_complete

N_TRAIN = 20


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
