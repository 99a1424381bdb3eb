"""Tests of spikebridge.tune."""

import json

import numpy as np
import pytest

from spikebridge.colanet import CoLaNETConfig


def test_tune_does_not_mutate_the_trial_config(pixel_digits):
    from spikebridge.tune import _fit_score

    xt, _, yt, _ = pixel_digits
    cfg = CoLaNETConfig(microcolumns=2, seed=11)
    learner, _ = _fit_score(cfg, {"epochs": 1, "train_batch": 16}, xt[:300], yt[:300], np.arange(200), np.arange(200, 300), 4)
    assert cfg.seed == 11 and learner.config.seed == 4


@pytest.mark.slow  # an Optuna study of several trials
def test_tune_writes_config_that_train_accepts(pixel_digits, tmp_path):
    pytest.importorskip("optuna")
    from spikebridge.tune import carve_validation, cross_validation_folds, tune

    xt, _, yt, _ = pixel_digits
    fit, val = carve_validation(yt, 0.2)
    assert not set(fit) & set(val) and abs(len(val) - 0.2 * len(yt)) <= 1
    folds = cross_validation_folds(yt, 3)
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(len(yt)))  # each example validated once
    result = tune(xt, yt, tmp_path / "t", trials=3, timeout=None, progress=False)
    assert result["study"]["trials"] == 3
    again = tune(xt, yt, tmp_path / "t", trials=4, timeout=None, progress=False)  # resumes: one more trial
    assert again["study"]["trials"] == 4
    best = json.loads((tmp_path / "t" / "best.json").read_text())
    assert 0.5 <= best["validation"]["continuous_top1"] <= 1.0 and best["validation"]["folds"] == 3
    cfg = CoLaNETConfig(**best["colanet"])
    assert cfg.steps in (8, 16, 32)
