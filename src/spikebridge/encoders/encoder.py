"""The `Encoder`: a frozen feature extractor, its identity (the feature cache key), and
the engines that run it (PyTorch eager, ``torch.compile``, OpenVINO fp32 and int8)."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import SpikebridgeError
from .compiled import graph_input
from .openvino_engine import (convert_to_openvino, file_sha256, import_nncf, import_openvino, int8_entry_complete, nncf_quiet,
                              openvino_config, openvino_core, openvino_telemetry_declined)
from .options import (AUTO_COMPILE_MIN_IMAGES, AUTO_OPENVINO_MIN_IMAGES, DEFAULT_CALIBRATION_IMAGES, INT8_SETTINGS, check_backend,
                      check_calibration, cxx_compiler, openvino_installed, valid_compile)
from .preprocess import Normalized, Preprocess

if TYPE_CHECKING:
    from ..data import ImageDataset


@dataclass
class Encoder:
    """A frozen feature extractor plus everything that identifies its output (build one with
    [`create_encoder()`][spikebridge.encoders.create_encoder]).

    Parameters
    ----------
    name : str
        The timm model name.
    net : torch.nn.Module
        The frozen network (pooled features out).
    data_config : dict
        timm's data config: input size, interpolation, crop, mean and std.
    weight_source, weight_checksum : str
        Where the weights came from and their SHA-256 (part of `identity()`).
    cut : int or None
        Stage whose pooled output is the feature (None: the whole network).
    feature_dim : int
        Features per image.
    device : torch.device
    channels_last : bool
    precision : str
        ``"fp32"``, ``"bf16"`` (autocast: convolutions and matrix products in bf16, features
        returned as float32) or ``"int8"``; part of `identity()`, so the feature cache never
        mixes them.
    jpeg_draft : bool
        Decode large JPEGs at reduced scale (`Preprocess`); part of the identity.
    compile : bool or "auto"
        Run the network through ``torch.compile`` (inductor, weights frozen, static shapes).
    folded_bn : int
        BatchNorms folded into convolutions.
    backend : str
        ``"auto"``, ``"torch"`` or ``"openvino"``; see `prepare()`. After ``prepare``,
        ``engine`` names what runs the batches.
    calibration_images, calibration_seed : int
        int8: the train images NNCF calibrates on and their seeded draw.
    """

    name: str
    net: nn.Module
    data_config: dict[str, Any]
    weight_source: str
    weight_checksum: str
    cut: int | None
    feature_dim: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    channels_last: bool = True
    precision: str = "fp32"
    jpeg_draft: bool = True
    compile: bool | str = False
    folded_bn: int = 0  # BatchNorms folded into convs (fold_batchnorm)
    backend: str = "torch"
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES  # int8: train images NNCF calibrates on
    calibration_seed: int = 0  # int8: seed of their class-stratified draw
    engine: str = field(default="torch eager", init=False, compare=False)
    #: int8: what `calibrate()` recorded (part of `identity()`); ``None`` until then
    calibration: dict | None = field(default=None, init=False, compare=False)
    _compiled: dict | None = field(default=None, init=False, repr=False, compare=False)
    _openvino: dict | None = field(default=None, init=False, repr=False, compare=False)
    _int8_path: Path | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16", "int8"):
            raise SpikebridgeError(f"Encoder precision must be 'fp32', 'bf16' or 'int8' (resolve 'auto' first), "
                                   f"not {self.precision!r}")
        if not valid_compile(self.compile):
            raise SpikebridgeError(f"compile must be True, False or 'auto', not {self.compile!r}")
        check_calibration(self.calibration_images, self.calibration_seed)
        check_backend(self.backend, self.device, self.precision, self.compile)

    def preprocess(self) -> Preprocess:
        """The split transform: ``pixels`` in the loader workers, ``normalize`` on batches."""
        return Preprocess(self.data_config, self.jpeg_draft)

    def transform(self) -> Callable:
        """PIL image -> normalised tensor ``[3, H, W]``, from the model's own data config
        (bit-identical to timm's eval transform for an image decoded in full)."""
        return self.preprocess()

    def identity(self) -> dict[str, Any]:
        """What determines this encoder's features (the feature cache key uses it)."""
        out = self.identity_without_calibration()
        if self.precision == "int8":
            if self.calibration is None:
                raise SpikebridgeError("an int8 encoder is identified by its calibration: call "
                                       "encoder.calibrate(<train split>, cache_dir) first (extracting the train split does it)")
            out["calibration"] = dict(self.calibration)
        return out

    def identity_without_calibration(self) -> dict[str, Any]:
        """`identity()` less the int8 calibration (what the calibration is applied to)."""
        pre = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(self.data_config.items())}
        pre["jpeg_draft"] = self.preprocess().jpeg_draft
        return {
            "encoder": self.name,
            "weights_sha256": self.weight_checksum,
            "cut": self.cut,
            "preprocessing": pre,
            "precision": self.precision,
        }

    # ---------------------------------------------------------------- int8 (NNCF + OpenVINO)
    def calibrate(self, dataset: ImageDataset, cache_dir: str | Path, progress: bool = False) -> dict:
        """Quantise the network to int8 (``precision="int8"`` only) with NNCF post-training
        quantisation, calibrated on `calibration_images` rows of ``dataset`` (the *train*
        split of the data set being extracted; never val) drawn class-stratified with
        `calibration_seed` (`stratified_sample()`); returns the
        calibration record (also `calibration`, part of `identity()`).

        The images go through the extraction pipeline (`pixels()`, JPEG draft
        included) and the model takes ``uint8 [B, H, W, 3]`` pixels (normalisation in the graph,
        as the fp32 OpenVINO engine). NNCF settings: preset ``performance`` (symmetric
        activations and weights), target device ``ANY``, fast bias correction, every calibration
        image used (``subset_size``). The quantised model is saved as OpenVINO IR under
        ``<cache_dir>/int8-models/<key[:20]>/`` (key: encoder identity + calibration) and read
        from there by later calls; one process quantises while others wait (``flock``).
        """
        if self.precision != "int8":
            raise SpikebridgeError(f"calibrate() is for precision='int8' encoders (this one is {self.precision!r})")
        if dataset.split != "train":
            raise SpikebridgeError(f"int8 calibration uses the train split of the data set, not {dataset.split!r}")
        if len(dataset) == 0:
            raise SpikebridgeError(f"int8 calibration: {dataset.name}/{dataset.split} has no images")
        from ..energy import stratified_sample

        nncf = import_nncf()
        rows = stratified_sample(dataset.labels, self.calibration_images, self.calibration_seed)
        subset = dataclasses.replace(dataset, samples=[dataset.samples[int(i)] for i in rows])
        record = {"dataset": dataset.name, "split": dataset.split, "images": len(rows),
                  "images_requested": self.calibration_images, "seed": self.calibration_seed,
                  "sampling": "class-stratified, seeded (spikebridge.energy.stratified_sample)",
                  "manifest_sha256": subset.manifest()["sha256"], "nncf": nncf.__version__, **INT8_SETTINGS}
        if self.calibration == record and self._int8_path is not None and self._int8_path.is_file():
            return record
        # the output size too: a classifier (logits) and its feature extractor share weights and identity
        blob = {"encoder": self.identity_without_calibration(), "calibration": record, "output_dim": self.feature_dim}
        key = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
        folder = Path(cache_dir) / "int8-models"
        folder.mkdir(parents=True, exist_ok=True)
        entry = folder / key[:20]
        lock = os.open(folder / f".{key[:20]}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not int8_entry_complete(entry):
                self._quantize(subset, record, key, entry, nncf, progress)
        finally:
            os.close(lock)  # releases the flock
        self.calibration, self._int8_path = record, entry / "model.xml"
        if self._openvino is not None:
            self._openvino.clear()  # a model compiled for another calibration
        return record

    def _quantize(self, subset, record: dict, key: str, entry: Path, nncf, progress: bool) -> None:
        from ..data import UnreadableImage

        pre = self.preprocess()
        pixels, unreadable = [], []
        for row in range(len(subset)):
            try:
                pixels.append(pre.pixels(subset.open(row, draft_to=pre.draft_target))[None].numpy())
            except UnreadableImage as exc:
                unreadable.append(str(exc))
        if not pixels:
            raise SpikebridgeError(f"int8 calibration: none of the {len(subset)} calibration images could be read, "
                                   f"e.g. {unreadable[0]}")
        if unreadable:
            warnings.warn(f"int8 calibration: skipped {len(unreadable)} unreadable image(s), e.g. {unreadable[0]}", stacklevel=3)
        ov = import_openvino()
        graph = convert_to_openvino(Normalized(self.net, pre), torch.from_numpy(pixels[0]))
        with openvino_telemetry_declined(), nncf_quiet(progress):
            quantized = nncf.quantize(graph, nncf.Dataset(pixels), preset=nncf.QuantizationPreset.PERFORMANCE,
                                      target_device=nncf.TargetDevice.ANY, subset_size=len(pixels),
                                      fast_bias_correction=INT8_SETTINGS["fast_bias_correction"])
        tmp = entry.with_name(f".{entry.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ov.save_model(quantized, str(tmp / "model.xml"), compress_to_fp16=False)
        info = {"key": key, "encoder": self.identity_without_calibration(), "calibration": record,
                "calibration_images_read": len(pixels), "unreadable": unreadable, "openvino": ov.__version__,
                "bin_sha256": file_sha256(tmp / "model.bin"), "xml_sha256": file_sha256(tmp / "model.xml")}
        (tmp / "calibration.json").write_text(json.dumps(info, indent=1) + "\n")
        shutil.rmtree(entry, ignore_errors=True)  # an incomplete entry left by a killed process
        os.replace(tmp, entry)

    def _int8_model(self, x: torch.Tensor):
        key = ("int8", *x.shape[1:])
        if self._openvino is None:
            self._openvino = {}
        model = self._openvino.get(key)
        if model is None:
            graph = openvino_core().read_model(str(self._int8_path))
            compiled = openvino_core().compile_model(graph, "CPU", openvino_config())
            model = self._openvino[key] = (compiled, compiled.create_infer_request())
        return model[1]

    def prepare(self, n_images: int, batch_size: int) -> bool:
        """Get ready to encode ``n_images`` in batches of ``batch_size``; returns whether the
        first batch builds a graph (a one-off cost). ``engine`` then names what runs:

        * ``"openvino"``: ``backend="openvino"``, or ``"auto"`` for an fp32 CPU job of >=
          `AUTO_OPENVINO_MIN_IMAGES` images with OpenVINO installed (and ``compile`` not
          True). The network (normalisation included for ``uint8`` pixels) is converted with
          ``openvino.convert_model`` and compiled for the CPU at fp32, batch dimension dynamic.
        * ``"torch compiled"``: ``compile`` True, or ``"auto"`` with >=
          `AUTO_COMPILE_MIN_IMAGES` images on a CPU with a C++ compiler present. One
          static-shape graph per input kind -- ``uint8`` pixels (normalisation fused into the
          graph) or float images -- built at its first batch (tens of seconds); shorter
          batches are padded with zeros, longer ones split.
        * ``"torch eager"``: otherwise.
        """
        if batch_size < 1:
            raise SpikebridgeError(f"batch_size must be >= 1, not {batch_size}")
        if self.precision == "int8":
            self.engine = "openvino int8"
            return True
        if self.backend == "openvino" or (
                self.backend == "auto" and self.compile is not True and n_images >= AUTO_OPENVINO_MIN_IMAGES
                and self.device.type == "cpu" and self.precision == "fp32" and openvino_installed()):
            self.engine = "openvino"
            if self._openvino is None:
                self._openvino = {}  # converted models by input kind and shape, kept across jobs
            return True
        self.engine = "torch eager"
        want = self.compile is True or (self.compile == "auto" and n_images >= AUTO_COMPILE_MIN_IMAGES
                                        and self.device.type == "cpu" and cxx_compiler() is not None)
        if not want:
            return False
        if self.compile is True and self.device.type == "cpu" and cxx_compiler() is None:
            raise SpikebridgeError(f"compile=True needs a C++ compiler for torch.compile (not found: "
                                   f"{os.environ.get('CXX', 'g++')}); install one or use compile=False")
        if self._compiled is None or self._compiled["batch"] != batch_size:
            self._compiled = {"batch": batch_size}
        self.engine = "torch compiled"
        return True

    def _openvino_model(self, x: torch.Tensor, kind: str):
        """The OpenVINO model for inputs shaped like ``x`` (one per input kind and image size)."""
        key = (kind, *x.shape[1:])
        model = self._openvino.get(key)
        if model is None:
            module = Normalized(self.net, self.preprocess()) if kind == "pixels" else self.net
            graph = convert_to_openvino(module, x)
            compiled = openvino_core().compile_model(graph, "CPU", openvino_config())
            model = self._openvino[key] = (compiled, compiled.create_infer_request())
        return model[1]

    def _graph(self, kind: str) -> Callable:
        graph = self._compiled.get(kind)
        if graph is None:
            module = Normalized(self.net, self.preprocess()) if kind == "pixels" else self.net
            graph = self._compiled[kind] = torch.compile(module, dynamic=False)
        return graph

    def _forward(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        """``kind`` "pixels": ``x`` is uint8 ``[B, H, W, 3]``; "float": normalised ``[B, 3, H, W]``."""
        if self.precision == "int8":  # whatever engine prepare() last picked: never fp32 features in its name
            if self._int8_path is None:
                raise SpikebridgeError("an int8 encoder runs its quantised model: call encoder.calibrate(<train split>, "
                                       "cache_dir) first (extracting the train split does it)")
            if kind != "pixels":
                raise SpikebridgeError("the int8 encoder takes uint8 pixels [B, H, W, 3] (Preprocess.pixels; its "
                                       "quantised graph includes the normalisation), not normalised float images")
            x = x.contiguous()
            out = self._int8_model(x).infer({0: x.numpy()})[0]
            return torch.from_numpy(np.array(out, dtype=np.float32, copy=True))
        if self.engine == "openvino":
            x = x.contiguous()
            out = self._openvino_model(x, kind).infer({0: x.numpy()})[0]
            return torch.from_numpy(np.array(out, dtype=np.float32, copy=True))
        if self.engine == "torch eager":
            if kind == "pixels":
                x = self.preprocess().normalize(x)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
            return self.net(x)
        graph, size = self._graph(kind), self._compiled["batch"]
        outs = []
        for chunk in x.split(size):
            # freezing (weights as constants: BatchNorm folding, oneDNN weight packing and conv +
            # activation fusion) is read when the graph compiles, at its first call
            with torch._inductor.config.patch(freezing=True):
                outs.append(graph(graph_input(chunk, size, kind == "float" and self.channels_last))[:len(chunk)])
        return torch.cat(outs)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> ``[B, D]`` float32 features on the CPU. ``images``: normalised float
        ``[B, 3, H, W]`` (the output of `transform()`), or ``uint8 [B, H, W, 3]`` pixels
        (of `pixels()`), normalised here on the encoder's device."""
        if images.dtype == torch.uint8 and images.dim() == 4 and images.shape[-1] == 3:
            x, kind = images.to(self.device), "pixels"
        elif images.is_floating_point() and images.dim() == 4 and images.shape[1] == 3:
            x, kind = images.to(self.device, torch.float32), "float"
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        else:
            raise SpikebridgeError(f"encoder input must be float [B, 3, H, W] or uint8 [B, H, W, 3], "
                                   f"got {images.dtype} {list(images.shape)}")
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self._forward(x, kind)
        return out.float().cpu()
