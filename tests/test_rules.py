"""The plasticity of R-STDP, supervised STDP and Diehl & Cook against plain loops of the
equations in :mod:`spikebridge.rules` (like test_colanet's reference of CoLaNET's rule), and
learning that depends on plasticity (disabled plasticity must fail the bar)."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from conftest import MARGIN, frozen_learner
from spikebridge import create_learner, train
from spikebridge.learner import list_rules
from spikebridge.rules import DiehlCook


def _traces(seq: np.ndarray, lam: float) -> np.ndarray:
    """x~[t] = lambda x~[t-1] + x[t], one step at a time."""
    out, tr = np.zeros_like(seq), np.zeros_like(seq[0])
    for t in range(len(seq)):
        tr = lam * tr + seq[t]
        out[t] = tr
    return out


def _normalise(w: np.ndarray, resource: float, w_max: float) -> np.ndarray:
    """Weights in [0, w_max], each neuron's synaptic sum rescaled to the initial resource."""
    w = np.clip(w, 0, w_max)
    for j in range(len(w)):
        w[j] *= resource / max(w[j].sum(), 1e-9)
    return np.clip(w, 0, w_max)


def _homeostasis(adaptive: np.ndarray, post: np.ndarray, cfg) -> np.ndarray:
    for b in range(post.shape[1]):  # example by example: a <- d a + theta_plus * spikes
        adaptive = cfg.theta_decay * adaptive + cfg.theta_plus * post[:, b].sum(0)
    return adaptive


def _simulate(ref, r):
    """The shared part (coder and LIF layer) exactly as the learner runs it, from its generator."""
    x = ref._spikes(r, seed=int(torch.randint(1 << 30, (1,), generator=ref.generator)))
    return x, ref._post_spikes(x)


def reference_rstdp(ref, r: torch.Tensor, y: torch.Tensor) -> int:
    cfg = ref.config
    x, post = _simulate(ref, r)
    x, post, rr = x.double().numpy(), post.double().numpy(), r.double().numpy()
    lam = math.exp(-cfg.dt / cfg.tau_trace)
    pre_tr, post_tr = _traces(x, lam), _traces(post, lam)
    T, B, J = post.shape
    w = ref.weights.double().numpy().copy()
    baseline = float(ref.reward_baseline)
    delta, wrong, mean_reward = np.zeros_like(w), 0, 0.0
    for b in range(B):
        counts = post[:, b].sum(0)
        correct = float(counts.argmax() == int(y[b]) and counts.max() > 0)
        wrong += int(correct == 0)
        mean_reward += (2 * correct - 1) / B
        reward = 2 * correct - 1 - baseline
        for j in range(J):  # e[j,i] = sum_t (s_j[t] x~_i[t] - a_minus x_i[t] s~_j[t])
            elig = sum(post[t, b, j] * pre_tr[t, b] - cfg.a_minus * x[t, b] * post_tr[t, b, j] for t in range(T))
            delta[j] += cfg.eta * reward * elig / B
    w += delta
    for b in range(B):
        if post[:, b].sum() == 0:  # a silent layer nudges the target neuron
            w[int(y[b])] += cfg.eta * rr[b]
    ref.reward_baseline = torch.tensor([0.99 * baseline + 0.01 * mean_reward], dtype=torch.float32)
    ref.weights = torch.from_numpy(_normalise(w, float(ref.resource), cfg.w_max)).float()
    ref.adaptive = torch.from_numpy(_homeostasis(ref.adaptive.double().numpy(), post, cfg)).float()
    return wrong


def reference_sstdp(ref, r: torch.Tensor, y: torch.Tensor) -> int:
    cfg = ref.config
    x, post = _simulate(ref, r)
    x, post = x.double().numpy(), post.double().numpy()
    pre_tr = _traces(x, math.exp(-cfg.dt / cfg.tau_trace))
    T, B, J = post.shape
    w = ref.weights.double().numpy().copy()
    wrong = 0
    for b in range(B):
        target, fired_wrong = int(y[b]), False
        for t in range(T):
            if (t + 1) % cfg.teacher_period == 0:  # teacher spike of the target neuron: potentiation
                w[target] += cfg.eta * pre_tr[t, b] / (B * T)
            for j in range(J):
                if j != target and post[t, b, j]:  # a wrong neuron fired: depression
                    w[j] -= cfg.eta * pre_tr[t, b] / (B * T)
                    fired_wrong = True
        wrong += fired_wrong
    ref.weights = torch.from_numpy(_normalise(w, float(ref.resource), cfg.w_max)).float()
    return wrong


def reference_diehl_cook(ref, r: torch.Tensor, y: torch.Tensor) -> int:
    cfg = ref.config
    x, post = _simulate(ref, r)
    x, post = x.double().numpy(), post.double().numpy()
    pre_tr = _traces(x, math.exp(-cfg.dt / cfg.tau_trace))
    T, B, J = post.shape
    w = ref.weights.double().numpy().copy()
    for b in range(B):
        for t in range(T):
            for j in range(J):  # dW[j,i] = eta * sum_t s_j[t] (x~_i[t] - x_tar), averaged over the batch
                if post[t, b, j]:
                    w[j] += cfg.eta * (pre_tr[t, b] - cfg.x_tar) / B
    ref.weights = torch.from_numpy(_normalise(w, float(ref.resource), cfg.w_max)).float()
    ref.adaptive = torch.from_numpy(_homeostasis(ref.adaptive.double().numpy(), post, cfg)).float()
    return B


REFERENCES = {"rstdp": reference_rstdp, "sstdp": reference_sstdp, "diehl-cook": reference_diehl_cook}


@pytest.mark.parametrize("rule", sorted(REFERENCES))
def test_learn_matches_plain_reference_of_the_rule(rule, pixel_digits):
    xt, _, yt, _ = pixel_digits
    settings = {"eta": 0.05, "steps": 16} | ({"neurons_per_class": 2} if rule == "diehl-cook" else {})
    fast, ref = (create_learner(rule, 64, 10, **settings) for _ in range(2))
    for learner in (fast, ref):
        learner.prepare(xt, yt)
    r, y = fast.rates(xt), torch.as_tensor(yt)
    events = []
    for b in range(0, 96, 8):
        events.append((fast.learn(r[None, b : b + 8], y[None, b : b + 8]),
                       REFERENCES[rule](ref, r[b : b + 8], y[b : b + 8])))
        # the reference state drives the next batch's simulation; keep the two bit-identical
        assert torch.allclose(fast.weights, ref.weights, atol=1e-5), (rule, b)
        ref.weights, ref.adaptive = fast.weights.clone(), fast.adaptive.clone()
    for a, b in events:
        assert a == b
    assert torch.allclose(fast.adaptive, ref.adaptive, atol=1e-5)
    assert not torch.equal(fast.weights, create_learner(rule, 64, 10, **settings).weights)  # it did learn


def _accuracy(learner, x, y) -> float:
    return float((learner.scores(x)[0].argmax(1).numpy() == y).mean())


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
@pytest.mark.parametrize("rule", ["colanet", "rstdp", "sstdp", "diehl-cook"])
def test_every_rule_learns_beyond_its_frozen_network(rule, pixel_digits):
    """Above chance *because of plasticity*: the frozen network must fail the bar (Diehl & Cook
    with eta = 0 labels a random network's neurons, 0.53 on these pixels, far above chance)."""
    xt, xv, yt, yv = pixel_digits
    n = None if rule == "diehl-cook" else 600  # measured: 0.89 / 0.76 / 0.81 learned vs 0.10 / 0.07 / 0.53 frozen
    xt, yt = xt[:n], yt[:n]
    learner, _ = train(create_learner(rule, 64, 10), xt, yt, epochs=2, batch_size=16, progress=False)
    frozen, _ = train(frozen_learner(rule, 64), xt, yt, epochs=2, batch_size=16, progress=False)
    plastic, baseline = _accuracy(learner, xv, yv), _accuracy(frozen, xv, yv)
    assert plastic >= 0.5 and plastic >= baseline + MARGIN, (rule, plastic, baseline)


# ------------------------------------------------------------------ settings checked once, in each rule's config
BAD_SETTINGS = [
    ("steps", 0, "steps must be >= 1 (got 0)"),
    ("steps", 5000, "steps must be <= 4096 (got 5000)"),
    ("eta", float("nan"), "eta must be a finite number (got nan)"),
    ("eta", -0.1, "eta must be >= 0.0 (got -0.1)"),
    ("teacher_period", 0, "teacher_period must be >= 1 (got 0)"),
    ("neurons_per_class", 0, "neurons_per_class must be >= 1 (got 0)"),
    ("theta_decay", 1.5, "theta_decay must be <= 1.0 (got 1.5)"),
    ("tau", 0.0, "tau must be > 0.0 (got 0.0)"),
    ("seed", -1, "seed must be >= 0 (got -1)"),
]


def _settings_of(rule: str) -> set:
    from spikebridge.learner import rule_class

    return {f.name for f in dataclasses.fields(rule_class(rule).config_class)}


@pytest.mark.parametrize("rule, setting, value, expected", [
    (rule, *bad) for rule in ("rstdp", "sstdp", "diehl-cook") for bad in BAD_SETTINGS if bad[0] in _settings_of(rule)])
def test_rule_config_refuses_useless_settings(rule, setting, value, expected):
    from spikebridge.errors import SpikebridgeError
    from spikebridge.learner import rule_class

    config_class = rule_class(rule).config_class
    for make in (lambda: config_class(**{setting: value}), lambda: create_learner(rule, 64, 10, **{setting: value})):
        with pytest.raises(SpikebridgeError, match=f"^{re.escape(expected)}$"):
            make()


def test_a_rule_model_whose_recorded_sizes_disagree_is_refused_on_load(pixel_digits, tmp_path):
    from spikebridge.learner import load_learner
    from spikebridge.errors import SpikebridgeError
    from spikebridge.io import save_tensors

    xt, _, yt, _ = pixel_digits
    learner, _ = train(create_learner("rstdp", 64, 10), xt[:100], yt[:100], epochs=1, progress=False)
    path = tmp_path / "m.safetensors"
    save_tensors(path, learner.tensors(), {**learner.metadata(), "n_inputs": 1280})
    with pytest.raises(SpikebridgeError, match=r"its weights are \[10, 64\] but its recorded sizes \(n_inputs 1280"):
        load_learner(path)


def test_each_rule_accepts_only_its_own_settings():
    """One config per rule: a setting of another rule is refused, not silently ignored."""
    from spikebridge.errors import SpikebridgeError

    for rule, foreign in (("sstdp", "neurons_per_class"), ("sstdp", "x_tar"), ("rstdp", "teacher_period"),
                          ("diehl-cook", "a_minus"), ("rstdp", "neurons_per_class")):
        with pytest.raises(SpikebridgeError, match=f"rule {rule!r} has no setting {foreign}"):
            create_learner(rule, 64, 10, **{foreign: 1})
    assert create_learner("diehl-cook", 64, 10, neurons_per_class=3).n_neurons() == 30


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_rules_share_the_learner_base_class_and_its_defaults(pixel_digits):
    """Every rule is a Learner: partial_fit learns online (prepare on the first call), add_classes
    is refused by the single-layer rules and offered by CoLaNET, state_bytes counts the state."""
    import torch

    from spikebridge.errors import SpikebridgeError
    from spikebridge.learner import Learner, register_rule

    xt, _, yt, _ = pixel_digits
    for rule in list_rules():
        learner = create_learner(rule, 64, 10)
        assert isinstance(learner, Learner)
        learner.partial_fit(xt[:200], yt[:200], batch_size=16)
        assert learner.prepared and learner.state_bytes() > 0
        before = {k: v.clone() for k, v in learner.tensors().items() if isinstance(v, torch.Tensor)}
        if rule == "colanet":
            learner.add_classes(1)
            assert learner.model.n_classes == 11
        else:
            with pytest.raises(SpikebridgeError, match=f"rule {rule!r} cannot add classes"):
                learner.add_classes(1)
            assert all(torch.equal(before[k], v) for k, v in learner.tensors().items() if k in before)
    with pytest.raises(TypeError, match="must subclass spikebridge.learner.Learner"):
        register_rule("not-a-learner")(type("NotALearner", (), {}))


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
