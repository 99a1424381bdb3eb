"""Data sets: embedded digits, ImageFolder trees, the ImageNet-64 builder."""

from __future__ import annotations

import io
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image_folder, require_shared, sample_photos
from spikebridge.data import (
    UnreadableImage,
    digits,
    image_folder,
    imagenet64,
    imagenet64_classes,
    open_dataset,
)
from spikebridge.errors import SpikebridgeError


# --------------------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def digit_splits():
    return digits()


def test_digits_split_sizes_and_stratification(digit_splits):
    train, val = digit_splits.train, digit_splits.val
    assert (len(train), len(val)) == (1347, 450)
    assert digit_splits.classes == [str(c) for c in range(10)]
    rows_train = {int(k) for k, _ in train.samples}
    rows_val = {int(k) for k, _ in val.samples}
    assert not rows_train & rows_val and len(rows_train | rows_val) == 1797
    # stratified: every class keeps its share (within one image) in both splits
    total = Counter(train.labels.tolist()) + Counter(val.labels.tolist())
    for c, n in total.items():
        assert abs(Counter(val.labels.tolist())[c] - n * 0.25) <= 1
    from sklearn.datasets import load_digits

    target = load_digits().target
    assert all(target[int(k)] == y for k, y in train.samples + val.samples)


def test_digits_images_are_rgb_64(digit_splits):
    img = digit_splits.train.open(0)
    assert img.mode == "RGB" and img.size == (64, 64)
    arr = np.asarray(img)
    assert (arr[..., 0] == arr[..., 1]).all() and arr.max() > 200 and arr.min() < 30


def test_digits_deterministic_manifest(digit_splits):
    again = digits()
    for a, b in ((digit_splits.train, again.train), (digit_splits.val, again.val)):
        assert a.samples == b.samples
        assert a.manifest() == b.manifest()
    assert digit_splits.train.manifest()["sha256"] != digit_splits.val.manifest()["sha256"]
    assert digits(size=32).train.manifest() != digit_splits.train.manifest()


def test_open_dataset_digits_spec():
    splits = open_dataset("digits")
    assert len(splits.train) == 1347 and splits.train.name == "digits"


# --------------------------------------------------------------------------- image folders
def test_image_folder_basic(tmp_path):
    root = make_image_folder(tmp_path / "pets", classes=("cat", "dog", "eel"), per_class=2)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    splits = image_folder(root)
    assert splits.classes == ["cat", "dog", "eel"]
    assert splits.train.name == "pets" and splits.train.split == "train" and splits.val.split == "val"
    assert len(splits.train) == len(splits.val) == 6
    assert splits.train.samples[0] == ("train/cat/img000.png", 0)
    assert splits.train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    img = splits.val.open(5)
    assert img.mode == "RGB" and img.size == (32, 32)
    assert open_dataset(str(root)).train.samples == splits.train.samples


def test_image_folder_max_per_class(tmp_path):
    root = make_image_folder(tmp_path / "pets", per_class=3)
    splits = image_folder(root, max_per_class=2)
    assert Counter(splits.train.labels.tolist()) == {0: 2, 1: 2}
    assert [k for k, _ in splits.train.samples][:2] == ["train/cat/img000.png", "train/cat/img001.png"]


def test_image_folder_mismatched_classes_named(tmp_path):
    root = make_image_folder(tmp_path / "ds", classes=("cat", "dog"), per_class=1)
    make_image_folder(root, classes=("bird",), per_class=1, splits=("train",))
    make_image_folder(root, classes=("fish",), per_class=1, splits=("val",))
    with pytest.raises(SpikebridgeError) as info:
        image_folder(root)
    message = str(info.value)
    assert "bird" in message and "fish" in message and "cat" not in message


def test_image_folder_empty_class_folder_named(tmp_path):
    root = make_image_folder(tmp_path / "ds", per_class=1)
    empty = root / "val" / "dog"
    for f in empty.iterdir():
        f.unlink()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(SpikebridgeError) as info:
        image_folder(root)
    assert str(empty) in str(info.value) and "empty" in str(info.value)


def test_image_folder_missing_split_and_root(tmp_path):
    root = make_image_folder(tmp_path / "ds", per_class=1, splits=("train",))
    with pytest.raises(SpikebridgeError, match="no val/ folder"):
        image_folder(root)
    with pytest.raises(SpikebridgeError) as info:
        open_dataset(str(tmp_path / "absent"))
    assert str(tmp_path / "absent") in str(info.value)
    (tmp_path / "bare" / "train").mkdir(parents=True)
    (tmp_path / "bare" / "val").mkdir()
    with pytest.raises(SpikebridgeError, match="no class folders"):
        image_folder(tmp_path / "bare")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "I;16", "CMYK"])
def test_non_rgb_modes_open_as_rgb(tmp_path, mode):
    root = make_image_folder(tmp_path / "ds", per_class=1)
    photo = Image.fromarray(sample_photos()[0]).resize((40, 30))
    converted = photo.convert("I").convert("I;16") if mode == "I;16" else photo.convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    target = root / "train" / "cat" / f"odd{suffix}"
    converted.save(target)
    assert Image.open(target).mode == mode
    ds = image_folder(root).train
    row = [k for k, _ in ds.samples].index(f"train/cat/odd{suffix}")
    img = ds.open(row)
    assert img.mode == "RGB" and img.size == (40, 30)
    assert np.asarray(img).std() > 0  # real content, not a blank frame


@pytest.mark.parametrize("mode, suffix", [("I;16", ".png"), ("I;16", ".tif"), ("I", ".tif")])
def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped(tmp_path, mode, suffix):
    """A 16-bit photo opens scaled to 8 bits, not as a white frame (PIL's convert clips I;16 at 255)."""
    root = make_image_folder(tmp_path / "ds", per_class=1)
    gray8 = np.asarray(Image.fromarray(sample_photos()[0]).convert("L").resize((40, 30)))
    wide = gray8.astype(np.uint16) * 257  # the same picture over the whole 16-bit range
    img = Image.fromarray(wide) if mode == "I;16" else Image.fromarray(wide.astype(np.int32))
    target = root / "train" / "cat" / f"deep{suffix}"
    img.save(target)
    assert Image.open(target).mode == mode
    ds = image_folder(root).train
    rgb = ds.open([k for k, _ in ds.samples].index(f"train/cat/deep{suffix}"))
    assert rgb.mode == "RGB" and np.array_equal(np.asarray(rgb)[..., 0], gray8)
    assert np.array_equal(np.asarray(rgb)[..., 2], gray8)


@pytest.mark.parametrize("values, expected", [
    (np.linspace(0, 1, 1200, dtype=np.float32), "floating-point pixels (mode F) have no defined 8-bit scale"),
    (np.arange(1200, dtype=np.int32) * 100_000, "outside 0..65535"),
])
def test_pixels_without_an_8_bit_scale_are_refused_naming_the_file(tmp_path, values, expected):
    root = make_image_folder(tmp_path / "ds", per_class=1)
    target = root / "train" / "cat" / "wide.tif"
    Image.fromarray(values.reshape(30, 40)).save(target)
    ds = image_folder(root).train
    with pytest.raises(UnreadableImage) as info:
        ds.open([k for k, _ in ds.samples].index("train/cat/wide.tif"))
    assert str(target) in str(info.value) and expected in str(info.value) and "\n" not in str(info.value)


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(sample_photos()[1]).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("content", ["truncated", "garbage", "empty"])
def test_unreadable_image_names_the_file(tmp_path, content):
    root = make_image_folder(tmp_path / "ds", per_class=1)
    data = {"truncated": _jpeg_bytes()[:4000], "garbage": b"\x00\xffnot an image" * 64, "empty": b""}[content]
    bad = root / "train" / "dog" / "broken.jpg"
    bad.write_bytes(data)
    ds = image_folder(root).train
    row = [k for k, _ in ds.samples].index("train/dog/broken.jpg")
    with pytest.raises(UnreadableImage) as info:
        ds.open(row)
    assert isinstance(info.value, SpikebridgeError)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert ds.open(0).mode == "RGB"  # the readable neighbours still open


def test_manifest_tracks_file_changes(tmp_path):
    import os

    root = make_image_folder(tmp_path / "ds", per_class=2)
    before = image_folder(root).train.manifest()
    assert image_folder(root).train.manifest() == before
    f = root / "train" / "dog" / "img001.png"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    touched = image_folder(root).train.manifest()
    assert touched["sha256"] != before["sha256"]
    assert image_folder(root).val.manifest() == image_folder(root).val.manifest()


# --------------------------------------------------------------------------- imagenet64
def test_imagenet64_classes_packaged():
    classes = imagenet64_classes()
    assert len(classes) == 64 and len({w for w, _ in classes}) == 64
    assert all(w.startswith("n") and len(w) == 9 and w[1:].isdigit() and name for w, name in classes)


def test_imagenet64_classes_match_shared_tsv():
    tsv = require_shared("imagenet64_classes.tsv")
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:] if line.strip()]
    assert imagenet64_classes() == [(w, n) for w, n in rows]


@pytest.fixture
def fake_ilsvrc(tmp_path) -> Path:
    """A fake ILSVRC-2012 tree: the 64 wnids (3 train / 2 val tiny JPEGs each) + 2 extra wnids."""
    root = tmp_path / "ILSVRC2012"
    buf = io.BytesIO()
    Image.fromarray(sample_photos()[2]).resize((8, 8)).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    wnids = [w for w, _ in imagenet64_classes()] + ["n00000001", "n00000002"]
    for split, n in (("train", 3), ("val", 2)):
        for w in wnids:
            folder = root / split / w
            folder.mkdir(parents=True)
            for j in range(n):
                (folder / f"{w}_{j}.JPEG").write_bytes(jpeg)
    return root


def test_imagenet64_builder(fake_ilsvrc):
    wnids = [w for w, _ in imagenet64_classes()]
    splits = imagenet64(fake_ilsvrc)
    assert splits.classes == wnids and splits.train.name == "imagenet64"
    assert len(splits.train) == 64 * 3 and len(splits.val) == 64 * 2
    assert Counter(splits.val.labels.tolist()) == {c: 2 for c in range(64)}
    assert all(k.split("/")[1] == wnids[y] for k, y in splits.train.samples + splits.val.samples)
    assert splits.train.open(0).mode == "RGB"


def test_imagenet64_cap_applies_to_train_only(fake_ilsvrc):
    splits = open_dataset(f"imagenet64:{fake_ilsvrc}", max_per_class=2)
    assert Counter(splits.train.labels.tolist()) == {c: 2 for c in range(64)}
    first = splits.train.samples[0][0]
    assert first.endswith("_0.JPEG") and splits.train.samples[1][0].endswith("_1.JPEG")
    assert len(splits.val) == 64 * 2  # val keeps every image


def test_imagenet64_missing_wnid_folder(fake_ilsvrc):
    gone = imagenet64_classes()[10][0]
    shutil.rmtree(fake_ilsvrc / "val" / gone)
    with pytest.raises(SpikebridgeError) as info:
        imagenet64(fake_ilsvrc)
    message = str(info.value)
    assert gone in message and "1 of the 64" in message


def test_imagenet64_missing_root(tmp_path):
    with pytest.raises(SpikebridgeError) as info:
        open_dataset(f"imagenet64:{tmp_path / 'nope'}")
    assert str(tmp_path / "nope") in str(info.value)


def test_imagenette_layout_if_present():
    root = require_shared("imagenette")
    splits = image_folder(root, max_per_class=1)
    assert len(splits.classes) == 10 and splits.classes[0] == "n01440764"
    assert splits.train.open(0).mode == "RGB"


# --------------------------------------------------------------------------- JPEG draft decoding
def _jpeg(tmp_path: Path, photo: np.ndarray, name: str = "photo.jpg") -> Path:
    path = tmp_path / "data" / "val" / "x" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo).save(path, quality=92)
    return path


def _one_file_dataset(path: Path):
    from spikebridge.data import ImageDataset

    root = path.parents[2]
    return ImageDataset("one", "val", ["x"], [(str(path.relative_to(root)), 0)], root)


@pytest.mark.parametrize("size, target, scale", [
    ((500, 375), (341, 256), 1),  # a typical ImageNet photo at Lite0's 256-px resize: below 2x
    ((682, 511), (341, 256), 1),  # one pixel short of 2x in height
    ((683, 512), (341, 256), 2),
    ((1024, 768), (341, 256), 2),  # 3x -> the largest power of two not above it
    ((1400, 1050), (341, 256), 4),
    ((4000, 3000), (341, 256), 8),  # never more than 1/8
    ((224, 224), (256, 256), 1),  # upscaling
])
def test_draft_scale(size, target, scale):
    from spikebridge.data import draft_scale

    assert draft_scale(size, target) == scale


def test_draft_scale_rejects_empty_target():
    from spikebridge.data import draft_scale

    with pytest.raises(SpikebridgeError, match="positive"):
        draft_scale((100, 100), (0, 10))


def test_jpeg_draft_only_at_twice_the_target(tmp_path):
    photo = sample_photos()[1]  # astronaut, 512 x 512
    ds = _one_file_dataset(_jpeg(tmp_path, photo))
    full = ds.open(0)
    assert full.size == (512, 512) and "draft" not in full.info
    # target 256: exactly 2x -> decoded at 1/2 in DCT space, and it says so
    half = ds.open(0, draft_to=lambda size: (256, 256))
    assert half.size == (256, 256) and half.info["draft"] == {"size": (512, 512), "scale": 2}
    assert half.mode == "RGB"
    # target 257: below 2x -> the very same full decode
    same = ds.open(0, draft_to=lambda size: (257, 257))
    assert "draft" not in same.info and np.array_equal(np.asarray(same), np.asarray(full))
    # target 64: 8x
    assert ds.open(0, draft_to=lambda size: (64, 64)).size == (64, 64)


def test_jpeg_draft_leaves_other_formats_alone(tmp_path):
    photo = sample_photos()[1]
    path = tmp_path / "data" / "val" / "x" / "photo.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(photo).save(path)
    img = _one_file_dataset(path).open(0, draft_to=lambda size: (64, 64))
    assert img.size == (512, 512) and "draft" not in img.info
    # embedded arrays (digits) likewise
    d = digits().val
    assert np.array_equal(np.asarray(d.open(0, draft_to=lambda size: (8, 8))), np.asarray(d.open(0)))


def test_jpeg_draft_unreadable_still_names_the_file(tmp_path):
    path = _jpeg(tmp_path, sample_photos()[1])
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UnreadableImage, match="photo.jpg"):
        _one_file_dataset(path).open(0, draft_to=lambda size: (64, 64))


def test_shared_images_are_never_drafted_at_native_size():
    """The shared data sets are all < 2x Lite0's 256-px resize: draft mode never changes them."""
    from spikebridge.data import draft_scale

    for name in ("imagenette", "imagenet64", "imagenet-sample"):
        folder = require_shared(name)
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[::97]
        assert files, name
        for f in files:
            with Image.open(f) as img:
                w, h = img.size
            target = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
            assert draft_scale((w, h), target) == 1, (f, (w, h))


# --------------------------------------------------------------------------- issue 21
def test_symlink_loop_and_dangling_link_stay_rows_that_fail_to_open(tmp_path):
    root = make_image_folder(tmp_path / "ds", per_class=2)
    loop, dangling = root / "train" / "cat" / "loop.jpg", root / "train" / "dog" / "gone.png"
    loop.symlink_to("loop.jpg")
    dangling.symlink_to(tmp_path / "nowhere.png")
    ds = image_folder(root).train
    keys = [k for k, _ in ds.samples]
    assert "train/cat/loop.jpg" in keys and "train/dog/gone.png" in keys  # listed, not dropped without a word
    assert len(ds.manifest()["sha256"]) == 64 and ds.rows_digest(0, len(ds))
    for path, key in ((loop, "train/cat/loop.jpg"), (dangling, "train/dog/gone.png")):
        with pytest.raises(UnreadableImage, match=str(path)):
            ds.open(keys.index(key))


def test_a_fifo_named_like_an_image_is_skipped_with_a_warning(tmp_path):
    root = make_image_folder(tmp_path / "ds", per_class=2)
    os_fifo = root / "train" / "cat" / "pipe.jpg"
    import os

    os.mkfifo(os_fifo)
    with pytest.warns(UserWarning, match=r"skipped .*pipe\.jpg: not a regular file"):
        ds = image_folder(root).train
    assert "train/cat/pipe.jpg" not in [k for k, _ in ds.samples]


def test_a_dataset_name_too_long_for_the_file_system_is_one_line(tmp_path):
    spec = str(tmp_path / ("x" * 10_000))
    with pytest.raises(SpikebridgeError) as info:
        open_dataset(spec)
    msg = str(info.value)
    assert msg.startswith("cannot open data set ") and "(10,0" in msg and "characters)" in msg
    assert len(msg) < 300 and "\n" not in msg
