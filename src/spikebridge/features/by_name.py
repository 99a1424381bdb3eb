"""Features of a data set split in one call, data set and encoder given by name ([`dataset_features()`][spikebridge.features.by_name.dataset_features])."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..encoders.encoder import Encoder
from ..errors import SpikebridgeError
from .cache import DEFAULT_CACHE
from .extraction import extract_features


def dataset_features(dataset: str = "digits", encoder: str | Encoder = "efficientnet_lite0", split: str = "train", *,
                     cut: int | None = None, weights: str | None = None, cache_dir: str | Path | None = None,
                     max_per_class: int | None = None, device: str = "cpu", batch_size: int = 32,
                     precision: str | None = None, workers: int | None = None,
                     calibration_images: int | None = None, calibration_seed: int | None = None,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Encoder features of one split of a data set, in one call (cached: a second call is a disk read).

    Parameters
    ----------
    dataset : str
        What `open_dataset` accepts: ``"digits"``, a folder with ``train/<class>/*`` and
        ``val/<class>/*``, or ``"imagenet64:<ILSVRC2012 root>"``.
    encoder : str or Encoder
        A timm name (Lite0's weights are installed offline) or an `Encoder`.
    split : str
        ``"train"`` or ``"val"``.
    cut, weights : optional
        With an encoder given by name: its stage cut and weight file (`create_encoder`).
    cache_dir : str or Path, optional
        Default ``$SPIKEBRIDGE_CACHE`` or ``~/.cache/spikebridge``.
    max_per_class : int, optional
        Keep at most this many images per class.
    device, batch_size, workers : optional
        Where the encoder runs, images per batch, loader processes (default `default_workers`).
    precision : str, optional
        ``"fp32"`` (default), ``"bf16"``, ``"auto"`` or ``"int8"`` (`create_encoder`); with an
        `Encoder` it must match the encoder's. Part of the cache key.
    calibration_images, calibration_seed : int, optional
        int8 only: the train images that calibrate the quantisation.
    progress : bool
        Show a progress bar.

    Returns
    -------
    X : ndarray of shape (n, D), float32
    y : ndarray of shape (n,), int64
        Class indices in the order of the data set's class names.
    """
    from ..data import SPLITS, open_dataset
    from ..encoders import DEFAULT_PRECISION, create_encoder, resolve_precision

    if split not in SPLITS:
        raise SpikebridgeError(f"split must be one of {SPLITS}, not {split!r}")
    if isinstance(encoder, Encoder):
        if cut is not None or weights is not None:
            raise SpikebridgeError("cut= and weights= apply when the encoder is given by name; this Encoder "
                                   f"is already built (cut {encoder.cut}, weights {encoder.weight_source})")
        if precision is not None and resolve_precision(precision, encoder.device) != encoder.precision:
            raise SpikebridgeError(f"precision={precision!r} conflicts with the given encoder's precision "
                                   f"{encoder.precision!r}: create the encoder with that precision instead")
    else:
        resolve_precision(precision or DEFAULT_PRECISION, torch.device(device))  # a bad value fails before the data set is scanned
    splits = open_dataset(dataset, max_per_class)
    if isinstance(encoder, str):
        encoder = create_encoder(encoder, weights=weights, cut=cut, device=device, precision=precision or DEFAULT_PRECISION,
                                 calibration_images=calibration_images, calibration_seed=calibration_seed)
    if encoder.precision == "int8" and encoder.calibration is None:  # calibrated on train, whichever split is asked for
        encoder.calibrate(splits.train, cache_dir or DEFAULT_CACHE, progress=progress)
    fs = extract_features(getattr(splits, split), encoder, cache_dir or DEFAULT_CACHE, batch_size=batch_size,
                          workers=workers, progress=progress)
    return fs.features, fs.labels
