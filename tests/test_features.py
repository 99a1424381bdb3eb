"""Feature cache: hits, invalidation, resume, corruption, unreadable images, no dataset writes."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import OPTS, small_input
from spikebridge.data import ImageDataset, digits, image_folder
from spikebridge.encoders import Encoder, create_encoder
from spikebridge.errors import SpikebridgeError
from spikebridge.features import DEFAULT_CACHE, cache_key, extract_features, load_features

N_TRAIN = 20  # 2 classes x 10 images; shards of 8 -> 3 shards (8, 8, 4); batches of 4 -> 2 + 2 + 1 calls


@pytest.fixture(scope="module")
def enc(lite0) -> Encoder:
    """fp32, whatever the default precision on this CPU: the cache logic compares exact values."""
    return small_input(dataclasses.replace(lite0, precision="fp32"))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_default_cache_is_private():
    assert DEFAULT_CACHE == Path(os.environ["SPIKEBRIDGE_CACHE"])
    assert Path.home() / ".cache" not in DEFAULT_CACHE.parents


def test_cache_miss_then_hit(folder, tmp_path, enc, calls):
    ds = image_folder(folder).train
    first = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert calls == [4, 4, 4, 4, 4]
    assert first.features.shape == (N_TRAIN, 1280) and first.features.dtype == np.float32
    assert np.isfinite(first.features).all()
    assert first.index.tolist() == list(range(N_TRAIN))
    assert first.labels.tolist() == ds.labels.tolist() and first.classes == ["cat", "dog"]
    assert first.key == cache_key(enc, ds) and first.path == tmp_path / "cache" / first.key[:20]
    assert first.skipped == []
    assert sorted(p.name for p in first.path.iterdir()) == [
        "manifest.json", *[f"shard-{i:05d}.{ext}" for i in range(3) for ext in ("json", "safetensors")]]
    # features are those of the encoder run directly on the same image
    direct = enc(enc.transform()(ds.open(13))[None]).numpy()[0]
    np.testing.assert_allclose(first.features[13], direct, rtol=1e-4, atol=1e-5)

    calls.clear()
    second = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert calls == []  # served from the cache
    np.testing.assert_array_equal(second.features, first.features)
    assert second.labels.tolist() == first.labels.tolist() and second.key == first.key
    np.testing.assert_array_equal(load_features(first.path).features, first.features)


def test_changed_image_invalidates(folder, tmp_path, enc, calls):
    ds = image_folder(folder).train
    first = extract_features(ds, enc, tmp_path / "cache", **OPTS)

    # touching a file (same bytes, new mtime) gives a new key
    f = folder / "train" / "dog" / "img004.png"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert cache_key(enc, image_folder(folder).train) != first.key

    # rewriting it with other content: new entry, recomputed, and only that row changes
    from PIL import Image

    Image.open(folder / "train" / "cat" / "img000.png").rotate(90).save(f)
    ds2 = image_folder(folder).train
    calls.clear()
    second = extract_features(ds2, enc, tmp_path / "cache", **OPTS)
    assert second.key != first.key and second.path != first.path and len(calls) == 5
    row = [k for k, _ in ds2.samples].index("train/dog/img004.png")
    changed = np.abs(second.features - first.features).max(axis=1) > 1e-3
    assert changed.tolist() == [i == row for i in range(N_TRAIN)]
    assert first.path.is_dir()  # the old entry is left alone


def test_changed_cut_invalidates(folder, tmp_path, enc, calls):
    ds = image_folder(folder).train
    full = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    stage1 = small_input(create_encoder(cut=1, device="cpu", precision="fp32"))
    assert cache_key(stage1, ds) != full.key
    calls.clear()
    cut = extract_features(ds, stage1, tmp_path / "cache", **OPTS)
    assert len(calls) == 5
    assert cut.key != full.key and cut.features.shape == (N_TRAIN, stage1.feature_dim) == (N_TRAIN, 24)
    assert cut.info["encoder"]["cut"] == 1 and full.info["encoder"]["cut"] is None


def test_resume_after_interrupt(folder, tmp_path, enc, calls):
    ds = image_folder(folder).train
    partial = extract_features(ds, enc, tmp_path / "cache", stop_after_shards=1, **OPTS)
    assert partial is None and calls == [4, 4]
    entry = tmp_path / "cache" / cache_key(enc, ds)[:20]
    assert not (entry / "manifest.json").exists()
    assert sorted(p.name for p in entry.iterdir()) == ["shard-00000.json", "shard-00000.safetensors"]

    calls.clear()
    resumed = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert calls == [4, 4, 4]  # shards 1 and 2 only
    calls.clear()
    fresh = extract_features(ds, enc, tmp_path / "other-cache", **OPTS)
    assert len(calls) == 5
    assert resumed.index.tolist() == fresh.index.tolist() == list(range(N_TRAIN))
    np.testing.assert_array_equal(resumed.features, fresh.features)


def test_two_ranks_fill_one_entry(folder, tmp_path, enc, calls):
    ds = image_folder(folder).train
    assert extract_features(ds, enc, tmp_path / "cache", rank=1, world_size=2, **OPTS) is None
    assert calls == [4, 4]  # shard 1
    calls.clear()
    both = extract_features(ds, enc, tmp_path / "cache", rank=0, world_size=2, **OPTS)
    assert calls == [4, 4, 4]  # shards 0 and 2
    assert both.index.tolist() == list(range(N_TRAIN)) and both.labels.tolist() == ds.labels.tolist()


def test_corrupted_shard_is_recomputed(folder, tmp_path, enc, calls):
    ds = image_folder(folder).train
    first = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    shard = first.path / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    for i in range(1, 9):  # flip bytes inside the tensor data
        data[-i * 97] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(SpikebridgeError, match="shard-00001"):
        load_features(first.path)

    calls.clear()
    with pytest.warns(UserWarning, match="recomputing"):
        again = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert calls == [4, 4]  # shard 1 only
    np.testing.assert_array_equal(again.features, first.features)
    assert again.path == first.path


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_deleted_sidecar_counts_as_incomplete(folder, tmp_path, enc, calls):
    ds = image_folder(folder).train
    first = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    (first.path / "shard-00002.json").unlink()
    calls.clear()
    with pytest.warns(UserWarning, match="recomputing"):
        again = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert calls == [4]
    np.testing.assert_array_equal(again.features, first.features)


def _break_one_image(folder: Path) -> tuple[Path, str]:
    bad = folder / "train" / "dog" / "img002.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    return bad, "train/dog/img002.png"


def test_bad_image_skipped_with_warning(folder, tmp_path, enc, calls):
    bad, key = _break_one_image(folder)
    ds = image_folder(folder).train
    row = [k for k, _ in ds.samples].index(key)
    with pytest.warns(UserWarning, match="img002.png"):
        fs = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert len(fs) == N_TRAIN - 1 and fs.features.shape == (N_TRAIN - 1, 1280)
    assert row not in fs.index.tolist() and sorted(fs.index.tolist() + [row]) == list(range(N_TRAIN))
    assert fs.labels.tolist() == ds.labels[fs.index].tolist()
    assert [k for k, _ in fs.skipped] == [key] and str(bad) in fs.skipped[0][1]
    assert sum(calls) == N_TRAIN - 1

    calls.clear()
    with pytest.warns(UserWarning, match="lack 1 unreadable image"):  # said again from the cache
        cached = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert calls == [] and cached.skipped == fs.skipped
    np.testing.assert_array_equal(cached.index, fs.index)


def test_bad_image_strict_raises(folder, tmp_path, enc):
    bad, _ = _break_one_image(folder)
    ds = image_folder(folder).train
    with pytest.raises(SpikebridgeError) as info:
        extract_features(ds, enc, tmp_path / "cache", strict=True, **OPTS)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_nothing_written_into_dataset(folder, tmp_path, enc):
    before = snapshot(folder)
    splits = image_folder(folder)
    for ds in (splits.train, splits.val):
        extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert snapshot(folder) == before
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 2


def test_embedded_array_dataset(tmp_path, enc):
    val = digits().val
    small = ImageDataset("digits", "val", val.classes, val.samples[:6], None, val.array)
    fs = extract_features(small, enc, tmp_path / "cache", **OPTS)
    assert fs.features.shape == (6, 1280) and fs.labels.tolist() == small.labels.tolist()
    assert fs.info["dataset"]["name"] == "digits" and fs.info["dataset"]["n"] == 6


# --------------------------------------------------------------------------- precision, workers, options
def test_bf16_gets_its_own_cache_entry(folder, tmp_path, enc, calls):
    ds = image_folder(folder).train
    bf16 = dataclasses.replace(enc, precision="bf16")
    assert cache_key(bf16, ds) != cache_key(enc, ds)
    fp32 = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    calls.clear()
    low = extract_features(ds, bf16, tmp_path / "cache", **OPTS)
    assert len(calls) == 5  # computed, not served from the fp32 entry
    assert low.path != fp32.path and low.info["encoder"]["precision"] == "bf16"
    assert fp32.info["encoder"]["precision"] == "fp32"
    cosine = (low.features * fp32.features).sum(1) / np.linalg.norm(low.features, axis=1) / np.linalg.norm(fp32.features, axis=1)
    # bf16 rounding on tiny upscaled crops at 64 px (far from ImageNet statistics): close, not equal
    assert cosine.mean() > 0.98 and cosine.min() > 0.9, cosine


def test_draft_setting_is_in_the_cache_key(folder, enc):
    ds = image_folder(folder).train
    assert cache_key(dataclasses.replace(enc, jpeg_draft=False), ds) != cache_key(enc, ds)


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_worker_processes_give_the_same_features(folder, tmp_path, enc):
    ds = image_folder(folder).train
    inline = extract_features(ds, enc, tmp_path / "a", **OPTS)
    pooled = extract_features(ds, enc, tmp_path / "b", **{**OPTS, "workers": 1})
    np.testing.assert_array_equal(pooled.features, inline.features)


def test_default_workers(monkeypatch):
    from spikebridge import features

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)))
    assert features.default_workers("cpu") == 0  # 2 cores: decode between batches, in this process
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    assert features.default_workers("cpu") == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))
    assert features.default_workers("cpu") == 4 and features.default_workers("cuda") == 8


def test_bad_extraction_options_are_one_line_errors(folder, tmp_path, enc):
    ds = image_folder(folder).train
    for kw, word in (({"workers": -1}, "workers"), ({"batch_size": 0}, "batch_size")):
        with pytest.raises(SpikebridgeError) as info:
            extract_features(ds, enc, tmp_path / "cache", **{**OPTS, **kw})
        assert word in str(info.value) and "\n" not in str(info.value)


def test_dataset_features_precision_checks(enc, tmp_path):
    from spikebridge.features import dataset_features

    with pytest.raises(SpikebridgeError, match="'fp16'"):
        dataset_features("digits", precision="fp16", cache_dir=tmp_path)
    with pytest.raises(SpikebridgeError, match="conflicts"):
        dataset_features("digits", encoder=enc, precision="bf16", cache_dir=tmp_path)
    with pytest.raises(SpikebridgeError, match="cut= and weights="):
        dataset_features("digits", encoder=enc, cut=2, cache_dir=tmp_path)


# ------------------------------------------------------------------ issue 21: nothing silent, errors before work
@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_cached_entry_with_skipped_images_warns_each_time_it_is_used(folder, tmp_path, enc, calls):
    bad, key = _break_one_image(folder)
    ds = image_folder(folder).train
    with pytest.warns(UserWarning, match="img002.png"):
        extract_features(ds, enc, tmp_path / "cache", **OPTS)
    calls.clear()
    with pytest.warns(UserWarning, match=rf"cached features .* lack 1 unreadable image\(s\).*e\.g\. {key}"):
        cached = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert calls == [] and [k for k, _ in cached.skipped] == [key]


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_symlink_loop_named_like_an_image_is_skipped_and_listed(folder, tmp_path, enc):
    loop = folder / "train" / "cat" / "loop.jpg"
    loop.symlink_to(loop.name)  # points at itself: ELOOP on open
    ds = image_folder(folder).train
    assert "train/cat/loop.jpg" in [k for k, _ in ds.samples] and ds.manifest()["n"] == N_TRAIN + 1
    with pytest.warns(UserWarning, match="loop.jpg"):
        fs = extract_features(ds, enc, tmp_path / "cache", **OPTS)
    assert [k for k, _ in fs.skipped] == ["train/cat/loop.jpg"] and "symbolic links" in fs.skipped[0][1]
    assert len(fs) == N_TRAIN


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_unwritable_cache_is_one_line_before_any_image(kind, folder, tmp_path, enc, calls):
    if kind == "file":
        cache = tmp_path / "cache-file"
        cache.write_text("")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        cache = tmp_path / "ro"
        cache.mkdir()
        cache.chmod(0o555)
    try:
        with pytest.raises(SpikebridgeError) as info:
            extract_features(image_folder(folder).train, enc, cache, **OPTS)
    finally:
        if cache.is_dir():
            cache.chmod(0o755)
    msg = str(info.value)
    assert msg.startswith(f"cannot write the feature cache {cache}") and "--cache-dir" in msg and "\n" not in msg
    assert calls == []
