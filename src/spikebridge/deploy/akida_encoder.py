"""The encoder itself on BrainChip Akida 2.0 (optional; its own environment).

The CoLaNET head already exports to Akida ([`akida`][spikebridge.deploy.akida]); this puts the encoder, which is
more than 99.9 % of an inference's arithmetic, on Akida too. Three steps, in two environments:

1. **Here** (PyTorch): the encoder's feature extractor, with its input normalisation inside
   the graph, is exported to ONNX (opset 17). Its input is ``float32 [B, 3, H, W]`` pixels in
   ``0..255`` (the extraction pipeline's resize and crop, `pixels()`),
   its output the pooled features ``[B, D]``.
2. **In the Akida environment** (TensorFlow 2.19, ``quantizeml`` 1.2.5, ``cnn2snn`` 2.19.3; built
   by ``.ci/akida-full-env``, named by ``$SPIKEBRIDGE_AKIDA_FULL_PYTHON``), `akida_encoder_worker`
   runs as a file: onnxscript's optimiser, ``quantizeml.models.quantize`` (8-bit weights and
   activations, ``uint8`` input) calibrated on ``calibration_images`` images of the *train* split
   (class-stratified, seeded: `stratified_sample()`), ``cnn2snn.convert`` to
   Akida 2.0 layers, and a mapping attempt onto each virtual Akida 2.0 device (mapping needs no
   chip; running on one does). The model is saved as ``.fbz`` with a JSON sidecar.
3. **Inference** in Akida's software backend (the worker again): ``uint8 [B, 3, H, W]`` images in,
   dequantised features ``[B, D]`` out. The ON/OFF rate coder and the CoLaNET head run on them
   as on any features (or the head on Akida too, [`akida`][spikebridge.deploy.akida], with the coder on the host).

No Akida 2.0 silicon is on sale; nothing here measures energy.
Files cross between the environments as ONNX, ``.npy`` and JSON only (no pickle).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import SpikebridgeError

AKIDA_FULL_ENV = "SPIKEBRIDGE_AKIDA_FULL_PYTHON"
WORKER = Path(__file__).with_name("akida_encoder_worker.py")
DEFAULT_CALIBRATION_IMAGES = 256  # train images QuantizeML calibrates on
FEATURE_CHUNK = 256  # images per worker call when extracting features
#: virtual Akida 2.0 devices the converted encoder is mapped onto (akida.virtual_devices)
DEVICES = ("TwoNodesIPv2", "FourNodesIPv2", "SixNodesIPv2", "TwelveNodesIPv2")


def akida_full_python(python: str | os.PathLike | None = None) -> Path:
    """The Akida environment's python: ``python``, else ``$SPIKEBRIDGE_AKIDA_FULL_PYTHON``."""
    python = python or os.environ.get(AKIDA_FULL_ENV)
    exe = Path(python) if python else None
    if exe is None or not exe.exists():
        raise SpikebridgeError(f"no Akida encoder environment (${AKIDA_FULL_ENV}={exe}): build one with "
                               f".ci/akida-full-env and set ${AKIDA_FULL_ENV} to the python it prints")
    return exe


class _PixelGraph(torch.nn.Module):
    """``float32 [B, 3, H, W]`` pixels in 0..255 -> the encoder's features, normalisation in the graph."""

    def __init__(self, net: torch.nn.Module, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", 255.0 * torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", 255.0 * torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net((pixels - self.mean) / self.std)


def export_onnx(encoder, path) -> Path:
    """Write the encoder (an fp32 `Encoder`) as ONNX for the Akida toolchain."""
    if encoder.precision != "fp32":
        raise SpikebridgeError(f"the Akida encoder is converted from the fp32 network, not {encoder.precision!r}")
    pre = encoder.preprocess()
    graph = _PixelGraph(encoder.net, pre.mean, pre.std).eval()
    size = encoder.data_config["input_size"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(graph, torch.zeros(1, *size), str(path), input_names=["pixels"], output_names=["features"],
                          opset_version=17, dynamo=False)
    return path


def dataset_pixels(encoder, dataset, rows) -> np.ndarray:
    """``uint8 [n, H, W, 3]`` images of ``dataset`` rows through the extraction pipeline's resize and crop."""
    pre = encoder.preprocess()
    return np.stack([pre.pixels(dataset.open(int(i), pre.draft_target)).numpy() for i in rows])


def _run_worker(python: Path, job: dict, tmp: Path) -> dict:
    (tmp / "job.json").write_text(json.dumps(job))
    run = subprocess.run([str(python), str(WORKER), str(tmp / "job.json")], text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SpikebridgeError(f"the Akida encoder worker failed ({job['action']}): {last}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def convert_encoder(encoder, train_split, path, calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
                    seed: int = 0, python: str | os.PathLike | None = None) -> dict:
    """Convert ``encoder`` to an Akida 2.0 model at ``path`` (``.fbz``, sidecar ``path.json``),
    calibrated on ``calibration_images`` class-stratified images of ``train_split`` (never val).
    Returns the sidecar: sizes, versions, calibration and the mapping onto each of `DEVICES`."""
    from ..energy import stratified_sample

    if train_split.split != "train":
        raise SpikebridgeError(f"the Akida encoder is calibrated on the train split, not {train_split.split!r}")
    exe = akida_full_python(python)
    rows = stratified_sample(train_split.labels, calibration_images, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_onnx(encoder, tmp / "encoder.onnx")
        np.save(tmp / "calibration.npy", dataset_pixels(encoder, train_split, rows))
        report = _run_worker(exe, {"action": "convert", "onnx": str(tmp / "encoder.onnx"),
                                   "calibration": str(tmp / "calibration.npy"), "out": str(path),
                                   "devices": list(DEVICES)}, tmp)
    sidecar = {"format": "spikebridge-akida-encoder", "version": 1, "encoder": encoder.name,
               "weight_sha256": encoder.weight_checksum, "cut": encoder.cut, "feature_dim": encoder.feature_dim,
               "input": "uint8 [B, 3, H, W] pixels after the extraction pipeline's resize and crop",
               "input_size": list(encoder.data_config["input_size"]),
               "calibration": {"dataset": train_split.name, "split": "train", "images": len(rows), "seed": seed,
                               "sampling": "class-stratified, seeded (spikebridge.energy.stratified_sample)"},
               **report}
    Path(f"{path}.json").write_text(json.dumps(sidecar, indent=1))
    return sidecar


def akida_features(model_path, pixels: np.ndarray, python: str | os.PathLike | None = None) -> np.ndarray:
    """Features ``float32 [n, D]`` of ``uint8 [n, H, W, 3]`` images from the Akida encoder at
    ``model_path`` in Akida's software backend."""
    exe = akida_full_python(python)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for b in range(0, len(pixels), FEATURE_CHUNK):
            np.save(tmp / "images.npy", np.ascontiguousarray(pixels[b : b + FEATURE_CHUNK].transpose(0, 3, 1, 2)))
            _run_worker(exe, {"action": "features", "model": str(model_path), "images": str(tmp / "images.npy"),
                              "out": str(tmp / "features.npy")}, tmp)
            out.append(np.load(tmp / "features.npy", allow_pickle=False))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
