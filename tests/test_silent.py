"""Issue 15, section 1: behaviours that must not be silent. Each test fails where they are."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

from spikebridge import create_learner, train
from spikebridge.cli import main
from spikebridge.colanet import CoLaNET, CoLaNETConfig
from spikebridge.errors import SpikebridgeError
from spikebridge.rules import DiehlCook, RSTDPConfig


def _one_line_error(capsys, argv, expected):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


# ------------------------------------------------------------------ configs are copied, never mutated
def test_create_learner_copies_the_config():
    cfg = CoLaNETConfig(seed=5, microcolumns=3)
    learner = create_learner("colanet", 64, 10, cfg)
    assert learner.config.seed == 5  # the config's seed, not 0
    other = create_learner("colanet", 64, 10, cfg, seed=7, steps=8)
    assert (other.config.seed, other.config.steps) == (7, 8)
    assert (cfg.seed, cfg.steps) == (5, 32) and other.config is not cfg
    rule_cfg = RSTDPConfig(eta=0.5)
    assert create_learner("rstdp", 64, 10, rule_cfg, seed=3).config.seed == 3 and rule_cfg.seed == 0


def test_tune_does_not_mutate_the_trial_config(pixel_digits):
    from spikebridge.tune import _fit_score

    xt, _, yt, _ = pixel_digits
    cfg = CoLaNETConfig(microcolumns=2, seed=11)
    learner, _ = _fit_score(cfg, {"epochs": 1, "train_batch": 16}, xt[:300], yt[:300], np.arange(200), np.arange(200, 300), 4)
    assert cfg.seed == 11 and learner.config.seed == 4


# ------------------------------------------------------------------ evaluate checks the model's encoder
def test_evaluate_refuses_features_of_another_encoder(pixel_digits, tmp_path, capsys):
    from spikebridge.io import save_tensors

    xt, _, yt, _ = pixel_digits
    learner, _ = train(create_learner("colanet", 1280, 10), np.tile(xt[:200], 20), yt[:200], epochs=1, progress=False)
    save_tensors(tmp_path / "m.safetensors", learner.tensors(),  # a 1,280-d model of another backbone
                 {**learner.metadata(), "classes": [str(c) for c in range(10)],
                  "encoder": {"encoder": "efficientnet_b0", "cut": None}})
    _one_line_error(capsys, ["evaluate", "--model", str(tmp_path / "m.safetensors"), "--encoder", "efficientnet_lite0",
                             "--cache-dir", str(tmp_path / "cache"), "--no-progress"],
                    "trained on features of efficientnet_b0")
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------ export refuses what it cannot honour
def test_nir_export_refuses_a_convention_the_target_cannot_honour():
    from spikebridge.deploy import nir_graph

    model = CoLaNET(4, 2, CoLaNETConfig(microcolumns=1))
    with pytest.raises(SpikebridgeError, match="needs --convention euler"):
        nir_graph(model, target="snntorch", convention="exact")  # not replaced by "euler" silently


@pytest.mark.parametrize("flags, expected", [
    (["--target", "norse", "--convention", "exact"], "--target norse needs --convention euler"),
    (["--format", "int8", "--convention", "exact"], "--convention does not apply to --format int8"),
    (["--reset", "zero"], "--reset does not apply to --format nir"),
])
def test_export_cli_refuses_options_it_cannot_honour(flags, expected, tmp_path, capsys):
    _one_line_error(capsys, ["export", "--model", str(tmp_path / "absent.safetensors"), *flags], expected)


# ------------------------------------------------------------------ Diehl & Cook homeostasis per example
def test_homeostasis_does_not_depend_on_the_batch_size():
    post = (torch.rand(8, 16, 20, generator=torch.Generator().manual_seed(0)) < 0.2).float()  # [T, B, J]
    one, batched = DiehlCook(4, 2), DiehlCook(4, 2)
    for b in range(16):
        one._homeostasis(post[:, b : b + 1])
    batched._homeostasis(post)
    assert torch.allclose(one.adaptive, batched.adaptive, rtol=1e-5)  # the old rule divided by the batch size
    d, plus = one.config.theta_decay, one.config.theta_plus
    a = torch.zeros(20)
    for b in range(16):  # the documented rule, example by example
        a = d * a + plus * post[:, b].sum(0)
    assert torch.allclose(batched.adaptive, a, rtol=1e-5)


def test_diehl_cook_thresholds_after_an_epoch_similar_at_batch_1_and_16(pixel_digits):
    xt, _, yt, _ = pixel_digits
    means = []
    for batch in (1, 16):
        learner, _ = train(create_learner("diehl-cook", 64, 10, neurons_per_class=2), xt[:240], yt[:240], epochs=1,
                           batch_size=batch, progress=False)
        means.append(float(learner.adaptive.mean()))
    assert means[1] > 0 and 0.5 < means[0] / means[1] < 2, means  # were 5x apart (per-batch mean)


# ------------------------------------------------------------------ partial_fit: theta from a running median
def test_partial_fit_moves_theta_smoothly_and_keeps_no_window(pixel_digits):
    """theta follows a running median of the winner's drive (DRIVE_MEDIAN_STEP per example), so one
    example per call moves it by at most about 2 %; no window of examples is stored."""
    from spikebridge.colanet import DRIVE_MEDIAN_STEP

    xt, _, yt, _ = pixel_digits
    model = CoLaNET(64, 10, CoLaNETConfig(microcolumns=2))
    model.fit_normaliser(xt)
    thetas = []
    for i in range(300):
        model.partial_fit(xt[i : i + 1], yt[i : i + 1])
        thetas.append(float(model.threshold[0]))
    steps = np.abs(np.diff(thetas[150:])) / np.asarray(thetas[150:-1])
    assert steps.max() <= np.exp(DRIVE_MEDIAN_STEP) - 1 + 1e-6, steps.max()  # one example per call: not a jump of up to 30 %
    assert not any(t.shape[0] >= 300 for t in model.tensors().values() if t.dim() > 1)  # nothing of size n_examples
    drives = model.drive(model.rates(xt[:300])).max(-1).values[0]
    assert 0.5 < float(model.drive_median[0] / drives.median()) < 2  # near the median of the recent drives


# ------------------------------------------------------------------ --resume compares settings
def test_resume_compares_settings_and_accepts_adaptive_ones(pixel_digits, tmp_path):
    from spikebridge.cli.run_dir import check_resume

    xt, _, yt, _ = pixel_digits
    train(create_learner("colanet", 64, 10, seed=2), xt, yt, epochs=2, run_dir=tmp_path, progress=False, stop_after_epoch=1)
    check_resume(create_learner("colanet", 64, 10, seed=2), tmp_path)  # microcolumns=None matches the one chosen
    with pytest.raises(SpikebridgeError, match="seed 2 \\(now 3\\)"):
        check_resume(create_learner("colanet", 64, 10, seed=3), tmp_path)
    with pytest.raises(SpikebridgeError, match="microcolumns 1 \\(now 4\\)"):
        check_resume(create_learner("colanet", 64, 10, seed=2, microcolumns=4), tmp_path)


# ------------------------------------------------------------------ options a rule ignores are refused
@pytest.mark.parametrize("flags, expected", [
    (["--microcolumns", "3"], "--microcolumns applies to --rule colanet only, not to rstdp"),
    (["--ensemble", "2"], "--ensemble applies to --rule colanet only"),
    (["--learn-mode", "spiking"], "--learn-mode applies to --rule colanet only"),
])
def test_options_a_rule_ignores_are_refused(flags, expected, tmp_path, capsys):
    _one_line_error(capsys, ["train", "--rule", "rstdp", *flags, "--cache-dir", str(tmp_path / "cache"),
                             "--run-dir", str(tmp_path / "run"), "--no-progress"], expected)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_config_file_of_another_rule_is_refused(tmp_path, capsys):
    (tmp_path / "c.json").write_text('{"colanet": {"microcolumns": 2}, "train": {"epochs": 1}}')
    _one_line_error(capsys, ["train", "--rule", "sstdp", "--config", str(tmp_path / "c.json"),
                             "--cache-dir", str(tmp_path / "cache")], "settings of --rule colanet, not sstdp")


# ------------------------------------------------------------------ warnings and errors keep their message
def test_cli_leaves_warning_filters_and_logging_alone(tmp_path, capsys):
    filters, fmt = list(warnings.filters), warnings.formatwarning
    main(["train", "--epochs", "0"])
    capsys.readouterr()
    assert warnings.filters == filters and warnings.formatwarning is fmt  # torch's UserWarnings are not hidden
    assert logging.root.manager.disable == logging.NOTSET


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
