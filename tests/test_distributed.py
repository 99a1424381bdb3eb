"""Data-parallel extraction and training under torchrun: 2 CPU processes, gloo backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import make_image_folder
from spikebridge.colanet import CoLaNETConfig
from spikebridge.data import image_folder
from spikebridge.features import extract_features
from spikebridge import create_learner, train


def torchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "spikebridge", *args, "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow  # CLI subprocess / torchrun
def test_two_ranks_extract_disjoint_shards_then_resume_only_missing(tmp_path, lite0):
    folder = make_image_folder(tmp_path / "data", classes=("cat", "dog", "cup"), per_class=4)
    cache = tmp_path / "cache"
    out = torchrun("extract", "--dataset", str(folder), "--cache-dir", str(cache), "--shard-size", "2",
                   "--device", "cpu", cwd=tmp_path)
    assert "by 2 ranks" in out.stdout
    reference = extract_features(image_folder(folder).train, lite0, tmp_path / "single", shard_size=2, progress=False)
    entry = reference.path.name
    shards = sorted((cache / entry).glob("shard-*.json"))
    assert len(shards) == 6 and (cache / entry / "manifest.json").is_file()
    assert [json.loads(p.read_text())["rank"] for p in shards] == [0, 1, 0, 1, 0, 1]  # disjoint, by rank

    manifest = json.loads((cache / entry / "manifest.json").read_text())
    assert manifest["n_shards"] == 6
    from spikebridge.features import load_features

    merged = load_features(cache / entry)
    assert np.array_equal(merged.index, reference.index) and np.array_equal(merged.labels, reference.labels)
    assert np.allclose(merged.features, reference.features, atol=1e-5)

    # a rank died: one of rank 1's shards and the manifest are missing -> only that shard is recomputed
    (cache / entry / "manifest.json").unlink()
    (cache / entry / "shard-00003.safetensors").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (cache / entry).glob("shard-*.safetensors")}
    torchrun("extract", "--dataset", str(folder), "--cache-dir", str(cache), "--shard-size", "2",
             "--device", "cpu", cwd=tmp_path)
    assert (cache / entry / "manifest.json").is_file() and (cache / entry / "shard-00003.safetensors").is_file()
    assert {p: (cache / entry / p).stat().st_mtime_ns for p in kept} == kept
    assert np.allclose(load_features(cache / entry).features, reference.features, atol=1e-5)


@pytest.mark.slow  # CLI subprocess / torchrun
def test_two_rank_training_equals_single_process(digits_features, tmp_path):
    """Spiking learn mode, a 2-member ensemble with 4 microcolumns per class (so recruitment
    order matters) and an odd batch (uneven slices, recruitment across ranks): the all-reduced run must reach the single-process weights."""
    train_fs, _ = digits_features  # fills the session cache the torchrun processes read
    torchrun("train", "--dataset", "digits", "--run-dir", str(tmp_path / "run"), "--epochs", "2",
             "--train-batch", "7", "--ensemble", "2", "--microcolumns", "4", "--learn-mode", "spiking", "--no-baseline",
             "--device", "cpu", cwd=tmp_path)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["world_size"] == 2

    learner = create_learner("colanet", train_fs.features.shape[1], 10, seed=0, steps=32,
                           config=CoLaNETConfig(ensemble=2, microcolumns=4), learn_mode="spiking")
    learner, history = train(learner, train_fs.features, train_fs.labels, epochs=2, batch_size=7, progress=False)
    distributed = load_file(str(tmp_path / "run" / "model.safetensors"))
    single = learner.tensors()
    assert torch.equal(distributed["active"], single["active"]) and int(single["active"].sum()) > 20
    assert torch.allclose(distributed["weights"], single["weights"], atol=1e-6)
    assert torch.allclose(distributed["threshold"], single["threshold"])
    assert [e["plasticity_events"] for e in record["history"]] == [e["plasticity_events"] for e in history["epochs"]]


@pytest.mark.slow  # CLI subprocess / torchrun
def test_commands_other_than_extract_and_train_refuse_torchrun(tmp_path):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0"}
    done = subprocess.run([sys.executable, "-m", "spikebridge", "tune", "--dataset", "digits"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "does not run under torchrun" in done.stderr
