"""The public API: the rule registry and the scikit-learn estimator (issue 15, section 2)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import spikebridge as sb
from spikebridge import SpikingClassifier, create_learner
from spikebridge.learner import list_rules, register_rule
from spikebridge.errors import SpikebridgeError
from spikebridge.learner import Learner, rule_settings
from spikebridge.rules import SupervisedSTDP, SupervisedSTDPConfig

# Every applicable sklearn check passes (none is expected to fail); sklearn itself skips the
# array-API check (SCIPY_ARRAY_API unset) and the pandas checks (pandas not installed).
@pytest.mark.slow
@parametrize_with_checks([SpikingClassifier(seed=0, steps=16), SpikingClassifier("sstdp", seed=0, steps=16)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_registry_lists_builtin_rules_and_refuses_unknown_names():
    assert list_rules()[:4] == ["colanet", "rstdp", "sstdp", "diehl-cook"]
    with pytest.raises(SpikebridgeError, match="unknown rule 'hebb'"):
        create_learner("hebb", 4, 2)
    with pytest.raises(SpikebridgeError, match="has no setting microcolumns"):
        create_learner("rstdp", 4, 2, microcolumns=3)
    assert "learn_mode" in rule_settings("colanet") and "eta" in rule_settings("diehl-cook")
    for name in list_rules():
        assert isinstance(create_learner(name, 4, 2), Learner)


def test_a_registered_rule_is_created_trained_and_offered_by_the_cli(pixel_digits):
    from spikebridge.cli import build_parser

    @dataclasses.dataclass
    class LazyConfig(SupervisedSTDPConfig):
        teacher_period: int = 4

    @register_rule("lazy-teacher")
    class LazyTeacher(SupervisedSTDP):
        config_class = LazyConfig

    xt, xv, yt, yv = pixel_digits
    learner = create_learner("lazy-teacher", 64, 10, seed=1)
    assert learner.config.teacher_period == 4 and "lazy-teacher" in list_rules()
    clf = SpikingClassifier("lazy-teacher", epochs=1).fit(xt, yt)
    assert clf.score(xv, yv) > 0.3
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    assert "lazy-teacher" in next(a for a in train_parser._actions if a.dest == "rule").choices


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_classifier_with_arbitrary_labels_proba_save_load(pixel_digits, tmp_path):
    xt, xv, yt, yv = pixel_digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = SpikingClassifier(seed=0, steps=16).fit(xt, names[yt])
    assert sorted(clf.classes_) == sorted(names)
    proba = clf.predict_proba(xv)
    assert proba.shape == (len(xv), 10) and np.allclose(proba.sum(1), 1) and (proba >= 0).all()
    assert (clf.classes_[proba.argmax(1)] == clf.predict(xv)).all()
    assert clf.score(xv, names[yv]) >= 0.85
    again = SpikingClassifier.load(clf.save(tmp_path / "clf.safetensors"))
    assert (again.predict(xv) == clf.predict(xv)).all() and again.get_params() == clf.get_params()


def test_params_reach_the_rule_and_grid_search_works(pixel_digits):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xt, _, yt, _ = pixel_digits
    clf = SpikingClassifier(eta_plus=0.05)
    assert clf.get_params()["eta_plus"] == 0.05
    clf.set_params(margin=0.2, seed=3)
    assert clf.fit(xt[:300], yt[:300]).learner_.config.margin == 0.2 and clf.learner_.config.seed == 3
    with pytest.raises(ValueError, match="Invalid parameter 'microcolumn'"):
        clf.set_params(microcolumn=2)
    pipe = make_pipeline(StandardScaler(), SpikingClassifier(seed=0, epochs=3))
    search = GridSearchCV(pipe, {"spikingclassifier__margin": [0.0, 0.1]}, cv=2).fit(xt[:400], yt[:400])
    assert search.best_params_["spikingclassifier__margin"] in (0.0, 0.1) and search.best_score_ > 0.7


@pytest.mark.parametrize("rule", ["colanet", "sstdp"])
def test_partial_fit_streams_and_colanet_adds_classes(rule, pixel_digits):
    xt, xv, yt, yv = pixel_digits
    clf = SpikingClassifier(rule, seed=0)
    if rule == "colanet":  # class-incremental: 0-7 first, 8 and 9 later
        old = yt < 8
        for b in range(0, old.sum(), 100):
            clf.partial_fit(xt[old][b : b + 100], yt[old][b : b + 100])
        clf.partial_fit(xt[~old], yt[~old])
        assert clf.classes_.tolist() == list(range(10))
    else:
        for b in range(0, len(yt), 300):
            clf.partial_fit(xt[b : b + 300], yt[b : b + 300], classes=np.arange(10))
        with pytest.raises(ValueError, match="cannot add classes"):
            clf.partial_fit(xt[:5], yt[:5] + 10)
    assert clf.score(xv, yv) >= 0.5


@pytest.mark.slow
def test_features_is_one_call_from_data_set_to_arrays(digits_features):
    train_fs, _ = digits_features  # fills the session cache that spikebridge.features reads
    X, y = sb.dataset_features("digits", encoder="efficientnet_lite0", split="train")
    assert np.array_equal(X, train_fs.features) and np.array_equal(y, train_fs.labels)
    with pytest.raises(SpikebridgeError, match="split must be one of"):
        sb.dataset_features("digits", split="test")


def test_the_package_offers_a_few_plain_names():
    """A plain module: a dozen public names (imported on first use), no callable submodule,
    ``spikebridge.train`` the training function (its module is ``spikebridge.training``)."""
    import types

    import spikebridge.features
    import spikebridge.training

    assert type(sb) is types.ModuleType
    assert sb.__all__ == ["CoLaNET", "CoLaNETConfig", "SpikebridgeError", "SpikingClassifier", "create_encoder",
                          "create_learner", "dataset_features", "export", "extract_features", "load", "open_dataset",
                          "train"]
    for name in sb.__all__:
        assert getattr(sb, name) is not None and name in dir(sb)
    assert sb.train is spikebridge.training.train and sb.dataset_features is spikebridge.features.dataset_features
    assert isinstance(sb.features, types.ModuleType) and not callable(sb.features)
    with pytest.raises(AttributeError, match="make_learner"):
        sb.make_learner


@pytest.mark.parametrize("params, expected", [
    ({"epochs": 0}, "epochs must be >= 1 (got 0)"),
    ({"batch_size": -3}, "batch_size must be >= 1 (got -3)"),
    ({"steps": 0}, "steps must be >= 1 (got 0)"),
    ({"eta_plus": float("nan")}, "eta_plus must be a finite number (got nan)"),
    ({"saturation": 0}, "saturation must be > 0.0 (got 0)"),
])
def test_bad_params_are_one_line_value_errors_before_any_work(params, expected, pixel_digits, monkeypatch):
    """set_params stays silent (scikit-learn's rule); fit and partial_fit refuse the value
    with the config type's one-line error before training (not deep inside it)."""
    import importlib
    import re

    train_module = importlib.import_module("spikebridge.training")
    xt, _, yt, _ = pixel_digits
    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("trained with a bad setting"))
    clf = SpikingClassifier(seed=0).set_params(**params)
    for fit in (clf.fit, clf.partial_fit):
        with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
            fit(xt[:40], yt[:40])
    assert not hasattr(clf, "learner_")
