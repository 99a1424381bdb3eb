"""The encoder on Akida 2.0 (QuantizeML + CNN2SNN in their own environment, ``.ci/akida-full-env``;
``$SPIKEBRIDGE_AKIDA_FULL_PYTHON``): skipped without it, failed without it under ``CI=true``."""

import os

import numpy as np
import pytest

from spikebridge.data import open_dataset
from spikebridge.deploy.akida_encoder import AKIDA_FULL_ENV, akida_features, convert_encoder, dataset_pixels
from spikebridge.errors import SpikebridgeError


def require_akida_full():
    python = os.environ.get(AKIDA_FULL_ENV)
    if not python or not os.path.exists(python):
        missing = f"no Akida encoder environment (${AKIDA_FULL_ENV}); build one with .ci/akida-full-env"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI=true: .ci/run builds it, so this test must run)")
        pytest.skip(missing)
    return python


@pytest.fixture(scope="module")
def lite0():
    from spikebridge.encoders import create_encoder

    return create_encoder("efficientnet_lite0", device="cpu")


def test_conversion_is_calibrated_on_train_and_needs_its_environment(lite0, tmp_path, monkeypatch):
    splits = open_dataset("digits")
    with pytest.raises(SpikebridgeError, match="calibrated on the train split, not 'val'"):
        convert_encoder(lite0, splits.val, tmp_path / "enc.fbz")
    monkeypatch.delenv(AKIDA_FULL_ENV, raising=False)
    with pytest.raises(SpikebridgeError, match="no Akida encoder environment .* build one with .ci/akida-full-env"):
        convert_encoder(lite0, splits.train, tmp_path / "enc.fbz")


@pytest.mark.slow
def test_lite0_converts_to_akida_maps_and_gives_the_pipelines_features(lite0, tmp_path):
    import torch

    require_akida_full()
    splits = open_dataset("digits")
    side = convert_encoder(lite0, splits.train, tmp_path / "enc.fbz", calibration_images=16)
    assert side["akida_version"] == "AkidaVersion.v2" and side["layers"] > 50
    assert side["calibration"]["split"] == "train" and side["calibration"]["images"] == 16
    assert any(m["mapped"] for m in side["mappings"].values())  # onto some virtual Akida 2.0 device
    assert (tmp_path / "enc.fbz.json").is_file()
    pixels = dataset_pixels(lite0, splits.val, range(8))
    ours = akida_features(tmp_path / "enc.fbz", pixels)
    with torch.no_grad():
        x = lite0.preprocess().normalize(torch.from_numpy(pixels))
        ref = lite0.net(x).numpy()
    assert ours.shape == ref.shape == (8, 1280)
    cosine = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert cosine.min() > 0.8, cosine  # 8-bit weights and activations: close to, not equal to, the fp32 features


def test_export_with_encoder_options_are_checked_first(tmp_path, monkeypatch, capsys):
    from spikebridge.cli.entry_point import main

    model = tmp_path / "model.safetensors"
    model.write_bytes(b"not read: the options are refused first")
    for argv, expected in (
            (["--format", "nir", "--with-encoder", "digits"], "--with-encoder does not apply to --format nir"),
            (["--format", "akida", "--calibration-images", "8"], "--calibration-images applies to --with-encoder"),
            (["--format", "akida", "--with-encoder", "digits", "--calibration-images", "0"], "must be >= 1")):
        assert main(["export", "--model", str(model), *argv]) == 2
        assert expected in capsys.readouterr().err
    monkeypatch.delenv(AKIDA_FULL_ENV, raising=False)
    assert main(["export", "--model", str(model), "--format", "akida", "--with-encoder", "digits"]) == 2
    assert "no Akida encoder environment" in capsys.readouterr().err


@pytest.mark.slow
def test_spikebridge_export_akida_with_encoder_writes_both_models(tmp_path, capsys):
    import json

    from spikebridge.cli.entry_point import main

    require_akida_full()
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--run-dir", str(run)]) == 0
    out = tmp_path / "pipeline.fbz"
    assert main(["export", "--model", str(run / "model.safetensors"), "--format", "akida", "--out", str(out),
                 "--with-encoder", "digits", "--calibration-images", "16"]) == 0
    printed = capsys.readouterr().out
    assert "Akida encoder:" in printed and out.is_file() and (tmp_path / "pipeline.encoder.fbz").is_file()
    side = json.loads((tmp_path / "pipeline.encoder.fbz.json").read_text())
    assert side["encoder"] == "efficientnet_lite0" and side["calibration"] == {**side["calibration"], "dataset": "digits",
                                                                                "split": "train", "images": 16}
