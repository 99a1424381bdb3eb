"""Tests of spikebridge.baselines."""

from spikebridge.baselines import choose_logistic_c, mlp_baseline, tuned_logistic


def test_tuned_logistic_choice_is_interior_and_uses_train_only(pixel_digits):
    xt, xv, yt, yv = pixel_digits
    C, cv = choose_logistic_c(xt, yt)
    assert min(cv) < C < max(cv)  # the grid was widened until the best is not at an edge
    out = tuned_logistic(xt, yt, xv, yv)
    assert out["C"] == C and 0.9 < out["top1"] <= 1.0
    # the choice does not depend on the val split at all
    assert tuned_logistic(xt, yt, xv[:10], yv[:10])["C"] == C


def test_mlp_reference_learns(pixel_digits):
    xt, xv, yt, yv = pixel_digits
    out = mlp_baseline(xt, yt, xv, yv, hidden=64)
    assert out["top1"] > 0.9 and out["epochs"] >= 1
