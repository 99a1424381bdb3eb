"""Image data sets: the embedded digits default, ImageFolder trees, and the ImageNet-64 task.

Every data set is a list of ``(key, label)`` samples plus class names and a way to open a
key as an RGB PIL image. Its *manifest* (relative paths, sizes, mtimes, or the bytes of an
embedded array) identifies its content for the feature cache.

Specs understood by [`open_dataset()`][spikebridge.data.open_dataset]:

* ``digits`` -- scikit-learn's bundled 1,797 handwritten digits (8x8, 10 classes), upscaled
  to 64x64 RGB; fixed stratified split, 75 % train / 25 % val (``random_state=0``).
* a directory with ``train/<class>/*`` and ``val/<class>/*`` (e.g. Imagenette).
* ``imagenet64:<ILSVRC-2012 root>`` -- the 64 mini-ImageNet training classes
  (``spikebridge/data/imagenet64_classes.tsv``) from a standard ILSVRC-2012 tree
  (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``); optionally capped per class
  (the first ``max_per_class`` files in sorted order, e.g. 600 as in mini-ImageNet).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .errors import SpikebridgeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
SPLITS = ("train", "val")


class UnreadableImage(SpikebridgeError):
    """An image file that cannot be decoded (truncated, not an image, ...)."""


@dataclass
class ImageDataset:
    """One split of a data set: ``samples[i] = (key, label)``; ``open(key)`` gives RGB PIL."""

    name: str
    split: str
    classes: list[str]
    samples: list[tuple[str, int]]
    root: Path | None = None
    array: np.ndarray | None = field(default=None, repr=False)  # embedded images [n, H, W, 3] uint8

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def open(self, index: int, draft_to: Callable[[tuple[int, int]], tuple[int, int]] | None = None) -> Image.Image:
        """Decode sample ``index`` as an RGB image; `UnreadableImage` names the file.

        ``draft_to`` maps the stored size ``(w, h)`` to the size the caller will resize the
        image to. A JPEG at least twice that size in both dimensions is then decoded at 1/2,
        1/4 or 1/8 scale in DCT space (PIL's ``draft``; the largest reduction that keeps both
        sides >= the target), which is cheaper than a full decode followed by a large
        downscale. Such an image records ``info["draft"] = {"size": stored (w, h), "scale": s}``
        so the caller can map its resize onto the original geometry. Other formats, embedded
        arrays and smaller JPEGs decode at full size, exactly as without ``draft_to``.
        """
        key = self.samples[index][0]
        if self.array is not None:
            return Image.fromarray(self.array[int(key)])
        path = self.root / key
        try:
            with Image.open(path) as img:
                draft = None
                if draft_to is not None and img.format == "JPEG":
                    stored, target = img.size, tuple(draft_to(img.size))
                    scale = draft_scale(stored, target)
                    # PIL picks the same scale from the target (and declines some multi-tile files)
                    if scale > 1 and img.draft("RGB", target) is not None and img.size != stored:
                        draft = {"size": stored, "scale": scale}
                img.load()
                rgb = to_rgb(img)
        except Exception as exc:
            raise UnreadableImage(f"unreadable image {path}: {exc}".splitlines()[0]) from exc
        if draft is not None:
            expect = (-(-draft["size"][0] // draft["scale"]), -(-draft["size"][1] // draft["scale"]))
            if rgb.size != expect:  # PIL's draft rule changed: the resize geometry below would be wrong
                raise RuntimeError(f"JPEG draft of {path} gave {rgb.size}, expected {expect} (1/{draft['scale']} of {draft['size']})")
            rgb.info["draft"] = draft
        return rgb

    def manifest(self) -> dict:
        """Content identity: relative paths + sizes + mtimes (files) or an array digest."""
        h = hashlib.sha256()
        if self.array is not None:
            h.update(self.array.tobytes())
            h.update(json.dumps(self.samples).encode())
        else:
            for key, label in self.samples:
                h.update(f"{key}\t{label}\t{_file_state(self.root / key)}\n".encode())
        return {"name": self.name, "split": self.split, "classes": self.classes, "n": len(self), "sha256": h.hexdigest()}

    def rows_digest(self, start: int, stop: int) -> str:
        """SHA-256 of the manifest entries of rows ``start:stop`` (key, label, and size + mtime
        of a file or the bytes of an embedded image): what a cache shard of those rows holds."""
        h = hashlib.sha256(f"{start}:{stop}\n".encode())
        for key, label in self.samples[start:stop]:
            if self.array is not None:
                h.update(f"{key}\t{label}\t".encode())
                h.update(self.array[int(key)].tobytes())
            else:
                h.update(f"{key}\t{label}\t{_file_state(self.root / key)}\n".encode())
        return h.hexdigest()


def _file_state(path: Path) -> str:
    """Size and mtime of a file, or why it cannot be read (a dangling link or a symlink loop
    stays a row of the data set: extraction skips it with a warning and lists it as skipped)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    return f"{st.st_size}\t{st.st_mtime_ns}"


#: 16-bit pixel modes of PIL (``I;16`` little-endian, ``B`` big-endian, ``N`` native order)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB. 16-bit pixels (a 16-bit grayscale PNG or TIFF opens as ``I;16`` or,
    in some versions and formats, as 32-bit ``I`` with values in ``[0, 65535]``) are scaled to
    8 bits, ``round(v / 257)`` (PIL's ``convert`` would clip them: a white image); 32-bit
    integer pixels outside that range and floating-point pixels (``F``) have no defined 8-bit
    scale and are refused (`ValueError`, reported as an unreadable image)."""
    if img.mode in SIXTEEN_BIT_MODES or img.mode == "I":
        values = np.asarray(img)
        if img.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"32-bit integer pixels from {values.min()} to {values.max()} (outside 0..65535) have no "
                             "defined 8-bit scale; convert the image to 8 or 16 bits")
        gray = np.round(values.astype(np.float64) / 257.0).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if img.mode == "F":
        raise ValueError("floating-point pixels (mode F) have no defined 8-bit scale; convert the image to 8 or 16 bits")
    return img.convert("RGB")


def draft_scale(size: tuple[int, int], target: tuple[int, int]) -> int:
    """JPEG DCT-domain reduction (1, 2, 4 or 8) for an image of ``size`` that will be resized
    to ``target``: the largest one that keeps both sides >= the target, i.e. > 1 only when
    the image is at least twice the target in both dimensions."""
    if min(target) < 1:
        raise SpikebridgeError(f"resize target must be positive, not {target}")
    ratio = min(size[0] // target[0], size[1] // target[1])
    return next(s for s in (8, 4, 2, 1) if ratio >= s or s == 1)


@dataclass
class DataSplits:
    train: ImageDataset
    val: ImageDataset

    @property
    def classes(self) -> list[str]:
        return self.train.classes


def digits(size: int = 64) -> DataSplits:
    """scikit-learn's handwritten digits as ``size`` x ``size`` RGB images, fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    gray = (bunch.images / 16.0 * 255).round().astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(g).resize((size, size), Image.BILINEAR)) for g in gray])
    rgb = np.repeat(big[..., None], 3, axis=-1)
    idx = np.arange(len(rgb))
    train_idx, val_idx = train_test_split(idx, test_size=0.25, stratify=bunch.target, random_state=0)
    classes = [str(c) for c in range(10)]

    def split(name: str, ids: np.ndarray) -> ImageDataset:
        samples = [(str(i), int(bunch.target[i])) for i in sorted(ids)]
        return ImageDataset("digits", name, classes, samples, None, rgb)

    return DataSplits(split("train", train_idx), split("val", val_idx))


def _class_files(folder: Path) -> list[str]:
    """Image file names of a class folder. Symbolic links that lead nowhere (dangling, loops) are
    kept: opening them fails, so extraction skips and lists them like any unreadable image;
    other entries with an image name that are no files (pipes, sockets) are skipped with a warning."""
    names = []
    for p in folder.iterdir():
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.is_dir():
            continue
        if p.is_file() or p.is_symlink():
            names.append(p.name)
        else:
            warnings.warn(f"skipped {p}: not a regular file", stacklevel=1)
    return sorted(names)


def _scan(root: Path, split: str, classes: list[str], max_per_class: int | None, name: str) -> ImageDataset:
    samples = []
    for label, cls in enumerate(classes):
        folder = root / split / cls
        if not folder.is_dir():
            raise SpikebridgeError(f"missing class folder: {folder}")
        files = _class_files(folder)
        if not files:
            raise SpikebridgeError(f"empty class folder: {folder}")
        samples += [(f"{split}/{cls}/{f}", label) for f in files[:max_per_class]]
    return ImageDataset(name, split, classes, samples, root)


def image_folder(root: str | Path, max_per_class: int | None = None) -> DataSplits:
    """``root/train/<class>/*`` and ``root/val/<class>/*``; class sets must match."""
    root = Path(root)
    if not root.is_dir():
        raise SpikebridgeError(f"data set folder not found: {root}")
    found = {}
    for split in SPLITS:
        if not (root / split).is_dir():
            raise SpikebridgeError(f"{root} has no {split}/ folder (expected {root}/{split}/<class>/<image>)")
        found[split] = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    if found["train"] != found["val"]:
        only_train = sorted(set(found["train"]) - set(found["val"]))
        only_val = sorted(set(found["val"]) - set(found["train"]))
        raise SpikebridgeError(f"class folders differ between {root}/train and {root}/val: only in train {only_train}, only in val {only_val}")
    if not found["train"]:
        raise SpikebridgeError(f"no class folders in {root}/train")
    name = root.name
    return DataSplits(*(_scan(root, s, found["train"], max_per_class, name) for s in SPLITS))


def imagenet64_classes() -> list[tuple[str, str]]:
    """The 64 (wnid, name) pairs of the reference task, shipped as package data."""
    text = resources.files("spikebridge").joinpath("data/imagenet64_classes.tsv").read_text()
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    return [(wnid, name) for wnid, name in rows]


def imagenet64(ilsvrc_root: str | Path, max_per_class: int | None = None) -> DataSplits:
    """The 64-class ImageNet task: ILSVRC-2012 train images of the 64 wnids (capped per
    class if asked) for training, the official val images of those wnids for testing."""
    root = Path(ilsvrc_root)
    if not root.is_dir():
        raise SpikebridgeError(f"ILSVRC-2012 folder not found: {root}")
    wnids = [w for w, _ in imagenet64_classes()]
    for split in SPLITS:
        missing = [w for w in wnids if not (root / split / w).is_dir()]
        if missing:
            raise SpikebridgeError(f"{root}/{split} lacks {len(missing)} of the 64 class folders, e.g. {missing[:3]}")
    train = _scan(root, "train", wnids, max_per_class, "imagenet64")
    val = _scan(root, "val", wnids, None, "imagenet64")
    return DataSplits(train, val)


def open_dataset(spec: str, max_per_class: int | None = None) -> DataSplits:
    """Open a data set's train and val splits (images are decoded when read, not here).

    Parameters
    ----------
    spec : str
        ``"digits"`` (scikit-learn's bundled handwritten digits, offline), ``"imagenet64:<root>"``
        (the 64 mini-ImageNet training classes from an ILSVRC2012 folder) or a folder with
        ``train/<class>/*`` and ``val/<class>/*`` (e.g. ``../shared/datasets/imagenette``).
    max_per_class : int, optional
        Keep at most this many training images per class.

    Returns
    -------
    DataSplits
        ``.train`` and ``.val`` (`ImageDataset`) and ``.classes``.
    """
    if spec == "digits":
        return digits()
    try:
        if spec.startswith("imagenet64:"):
            return imagenet64(spec.split(":", 1)[1], max_per_class)
        return image_folder(spec, max_per_class)
    except OSError as exc:  # a name too long, a folder without permission, ...
        raise SpikebridgeError(f"cannot open data set {_shorten(spec)}: {exc.strerror or exc}") from exc


def _shorten(text: str, limit: int = 80) -> str:
    """``text``, or its start and its length when longer than ``limit`` (one-line messages)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"

