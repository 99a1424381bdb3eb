"""Plasticity in integer arithmetic (spikebridge.deploy.integer_learning): no float in the
learning loop, one learning step re-implemented from the sidecar alone in plain Python
integers and matched bit for bit, the int8 inference model, persistence, accuracy vs float."""

import json

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from spikebridge import create_learner, train
from spikebridge.colanet import schedule_rate
from spikebridge.errors import SpikebridgeError
from spikebridge.deploy.fixed_point import Int8CoLaNET
from spikebridge.deploy.formats import sidecar_path
from spikebridge.deploy.integer_learning import (
    IntegerCoLaNET, IntegerRuleSidecar, integer_learner, rng_draws, stochastic_round, weight_limit)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


def _learner(pixel_digits, bits=8, epochs=2, **cfg):
    xt, _, yt, _ = pixel_digits
    learner = integer_learner(xt.shape[1], 10, bits, **{"microcolumns": 3, "seed": 0, **cfg})
    return train(learner, xt, yt, epochs=epochs, batch_size=16, progress=False)[0]


@pytest.fixture(scope="module")
def trained(pixel_digits):
    """An 8-bit integer learner after one epoch of 3 (mid-schedule, a free microcolumn left in
    some columns) on the raw 64-pixel digits."""
    xt, _, yt, _ = pixel_digits
    learner = integer_learner(xt.shape[1], 10, 8, microcolumns=4, seed=0)
    return train(learner, xt, yt, epochs=3, batch_size=16, progress=False, stop_after_epoch=1)[0]


# --------------------------------------------------------------------------- the plain-Python rule
def _draw(rng: dict, s: int) -> tuple[int, int]:
    """One step of the generator written in the sidecar: returns (new state, 32-bit draw)."""
    mask = (1 << 32) - 1
    s = (s + rng["increment"]) & mask
    (m1, m2), (s1, s2, s3) = rng["multipliers"], rng["shifts"]
    z = s
    z ^= z >> s1
    z = (z * m1) & mask
    z ^= z >> s2
    z = (z * m2) & mask
    z ^= z >> s3
    return s, z


def _plain_step(side: dict, W: list, active: list, s: int, counts: list, labels: list, R: int):
    """One learning step from the sidecar's constants and order of operations, in Python ints
    and lists only. Returns (W, active, rng state, errors)."""
    k, rng = side["constants"], side["rng"]
    M, N, T = side["sizes"]["microcolumns"], side["sizes"]["channels"], k["steps"]
    hi, lo = k["weight_max"], k["weight_min"]
    W, active = [row[:] for row in W], active[:]
    J = len(W)
    # 1-3 with the weights before this step
    events, errors = [], 0
    decisions = []
    for c, y in zip(counts, labels):
        A = [sum(w * x for w, x in zip(W[j], c)) for j in range(J)]
        target = [j for j in range(J) if active[j] and j // M == y]
        wrong = [j for j in range(J) if active[j] and j // M != y]
        jp = max(target, key=lambda j: (A[j], -j)) if target else None  # lowest j on ties
        jm = max(wrong, key=lambda j: (A[j], -j)) if wrong else None
        margin = (k["margin_num"] * hi * sum(c)) >> k["margin_shift"]
        err = jp is None or (jm is not None and A[jm] + margin >= A[jp])
        mis = jp is None or (jm is not None and A[jm] > A[jp])
        decisions.append((c, y, jp, jm, err, mis))
        errors += err
    # 4 recruitment in batch order
    for n, (c, y, jp, jm, err, mis) in enumerate(decisions):
        recruited = False
        if mis:
            free = [j for j in range(y * M, (y + 1) * M) if not active[j]]
            if free:
                active[free[0]] = True
                W[free[0]] = [(2 * hi * x + T) // (2 * T) for x in c]
                recruited = True
        if err and not recruited and jp is not None:
            events.append((jp, +((R * k["eta_plus_num"]) >> k["rate_shift"]), c))
        if err and jm is not None:
            events.append((jm, -((R * k["eta_minus_num"]) >> k["rate_shift"]), c))
    # 5-7 summed updates, stochastic rounding, bounds
    shift = k["eta_shift"]
    for j in sorted({e[0] for e in events}):
        D = [0] * N
        for row, step, c in events:
            if row == j:
                D = [d + step * x for d, x in zip(D, c)]
        for i in range(N):
            if D[i] != 0:
                s, z = _draw(rng, s)
                dw = (D[i] >> shift) + ((z >> (32 - shift)) < (D[i] & ((1 << shift) - 1)))
                W[j][i] = min(hi, max(lo, W[j][i] + dw))
    return W, active, s, errors


def _plain_calibration(side: dict, W: list, active: list, counts: list) -> tuple[int, int, int]:
    """gamma_q, theta8, lateral8 from the sidecar's calibration rule, in Python ints."""
    k = side["constants"]
    N, T, e = side["sizes"]["channels"], k["steps"], k["fold_shift"]
    rows = [j for j in range(len(W)) if active[j]]
    den = len(rows) * N
    gamma = (2 * sum(sum(W[j]) for j in rows) + den) // (2 * den)
    fold = lambda w: max(-k["int8_limit"], min(k["int8_limit"], (w - gamma + (1 << (e - 1) if e else 0)) >> e))  # noqa: E731
    W8 = {j: [fold(w) for w in W[j]] for j in rows}
    best = sorted(v for v in (max(sum(w * x for w, x in zip(W8[j], c)) for j in rows) for c in counts) if v > 0)
    med = best[(len(best) - 1) // 2] if best else T
    fs = k["first_spike_shift"]
    theta = max(1, (k["first_spike_num"] * med + (T << (fs - 1))) // (T << fs))
    lateral = (k["lateral_num"] * theta + (1 << (k["lateral_shift"] - 1))) >> k["lateral_shift"]
    return gamma, theta, lateral


def test_one_learning_step_from_the_sidecar_alone_matches_bit_for_bit(trained, pixel_digits, tmp_path):
    xt, _, yt, _ = pixel_digits
    learner = trained
    learner.save(tmp_path / "int.safetensors")
    side = json.loads(sidecar_path(tmp_path / "int.safetensors").read_text())  # the rule, from the file only
    assert side["format"] == "spikebridge-integer-rule" and side["rng"]["state"] == int(learner.rng_state)
    counts = learner.rates(xt[:400])
    W0, A0, s0 = learner.weights.tolist(), learner.active.tolist(), int(learner.rng_state)
    # an example that both potentiates and depresses (error with both winners recruited)
    k = side["constants"]
    chosen = None
    for b in range(len(counts)):
        *_, jp, jm, err, mis = _plain_step_decisions(side, W0, A0, counts[b].tolist(), int(yt[b]))
        if err and jp is not None and jm is not None and not mis:
            chosen = b
            break
    assert chosen is not None, "no example with an error and both winners in the first 400"
    R = 2345  # an annealing numerator mid-schedule
    c, y = counts[chosen : chosen + 1], torch.as_tensor(yt[chosen : chosen + 1])
    W1, A1, s1, errors = _plain_step(side, W0, A0, s0, c.tolist(), y.tolist(), R)
    assert learner.learn(c, y, rate=R) == errors == 1
    assert learner.weights.tolist() == W1 and learner.active.tolist() == A1 and int(learner.rng_state) == s1
    changed = [abs(a - b) for r1, r0 in zip(W1, W0) for a, b in zip(r1, r0) if a != b]
    assert changed and s1 != s0  # the step changed weights and drew random numbers
    # each change is D / 2^16 rounded down or up, D at most step * T
    step = (R * max(k["eta_plus_num"], k["eta_minus_num"])) >> k["rate_shift"]
    assert max(changed) <= -(-step * k["steps"] // 2**16)


def _plain_step_decisions(side, W, active, c, y):
    k, M = side["constants"], side["sizes"]["microcolumns"]
    A = [sum(w * x for w, x in zip(row, c)) for row in W]
    target = [j for j in range(len(W)) if active[j] and j // M == y]
    wrong = [j for j in range(len(W)) if active[j] and j // M != y]
    jp = max(target, key=lambda j: (A[j], -j)) if target else None
    jm = max(wrong, key=lambda j: (A[j], -j)) if wrong else None
    margin = (k["margin_num"] * k["weight_max"] * sum(c)) >> k["margin_shift"]
    err = jp is None or (jm is not None and A[jm] + margin >= A[jp])
    mis = jp is None or (jm is not None and A[jm] > A[jp])
    return jp, jm, err, mis


def test_a_batch_with_recruitment_and_the_calibration_match_the_plain_rule(pixel_digits, tmp_path):
    """A fresh 6-bit learner (recruitment, then updates) over several batches, and the
    integer calibration, against the plain-Python rule."""
    xt, _, yt, _ = pixel_digits
    learner = integer_learner(xt.shape[1], 10, 6, microcolumns=2, seed=7)
    learner.prepare(xt, yt)
    counts, labels = learner.rates(xt[:96]), torch.as_tensor(yt[:96])
    side = learner.rule_sidecar().to_dict()
    W, A, s = learner.weights.tolist(), learner.active.tolist(), int(learner.rng_state)
    for b, R in zip(range(0, 96, 8), range(4096, 0, -300)):
        W, A, s, errors = _plain_step(side, W, A, s, counts[b : b + 8].tolist(), labels[b : b + 8].tolist(), R)
        assert learner.learn(counts[b : b + 8], labels[b : b + 8], rate=R) == errors
        assert learner.weights.tolist() == W and learner.active.tolist() == A and int(learner.rng_state) == s
    assert sum(A) > 10  # recruitment happened in several columns
    learner.calibrate(counts)
    gamma, theta, lateral = _plain_calibration(side, W, A, counts.tolist())
    assert (int(learner.gamma), int(learner.threshold[0]), int(learner.lateral[0])) == (gamma, theta, lateral)


def test_generator_and_rounding_from_the_sidecar(trained):
    side = trained.rule_sidecar().to_dict()
    s = 123456789
    z, state = rng_draws(torch.tensor(s), 1000)
    expected = []
    for _ in range(1000):
        s, out = _draw(side["rng"], s)
        expected.append(out)
    assert z.tolist() == expected and int(state) == s
    assert 0 <= min(expected) and max(expected) < 2**32 and len(set(expected)) == 1000
    # stochastic rounding is unbiased: the mean of many roundings of D / 2^16 is D / 2^16
    D = torch.tensor([-70000, -3, 0, 5, 40000, 98304], dtype=torch.int64)
    draws, _ = rng_draws(torch.tensor(1), 6 * 20000)
    rounded = stochastic_round(D.repeat(20000), draws).view(20000, 6).double()
    assert torch.allclose(rounded.mean(0), D.double() / 65536, atol=0.01)
    assert bool(((rounded == torch.floor(D.double() / 65536)) | (rounded == torch.ceil(D.double() / 65536))).all())


# --------------------------------------------------------------------------- no float in the loop
class NoFloat(TorchFunctionMode):
    """Fails on any torch call that returns a floating-point or complex tensor; counts calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.calls += 1
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
                raise AssertionError(f"{getattr(func, '__name__', func)} returned a {t.dtype} tensor")
        return out


def test_the_learning_loop_uses_integers_only(pixel_digits):
    xt, _, yt, _ = pixel_digits
    learner = integer_learner(xt.shape[1], 10, 4, microcolumns=3, seed=1)
    learner.prepare(xt, yt)
    counts = learner.rates(xt)  # host side: float normaliser and coder, integer counts out
    assert counts.dtype == torch.int64 and int(counts.min()) >= 0 and int(counts.max()) <= learner.steps
    labels = torch.as_tensor(yt)
    mode = NoFloat()
    with mode:
        with pytest.raises(AssertionError, match="float32"):  # the mode does catch floats
            torch.ones(2) * 0.5
        for b in range(0, 480, 16):
            learner.learn(counts[b : b + 16], labels[b : b + 16], rate=learner.rate_at(b, 480, 1))
            for name in ("weights", "active", "rng_state", "gamma", "threshold", "lateral"):
                assert not getattr(learner, name).is_floating_point(), name
        learner.end_epoch(counts, labels)  # integer calibration
    assert mode.calls > 300
    assert learner.weights.dtype == torch.int8 and learner.rng_state.dtype == torch.int64
    assert learner.threshold.dtype == torch.int32 and int(learner.threshold[0]) >= 1
    assert int(learner.weights.abs().max()) <= 7 and bool(learner.active.any())


# --------------------------------------------------------------------------- inference, accuracy, files
def test_the_int8_model_decays_as_int8colanet_quantise(trained):
    """The integer learner and Int8CoLaNET.quantise share one decay constant (fixed_point.decay_dv)."""
    from spikebridge.deploy import fixed_point

    model = trained.to_int8()
    assert model.decay_dv == fixed_point.decay_dv(trained.config.beta)
    assert trained.rule_sidecar().inference["dynamics"].startswith("v <- trunc(v*(4096-dv)/4096) + ")
    assert model.metadata()["dynamics"].startswith("v <- trunc(v*(4096-dv)/4096) + ")


def test_trained_integer_model_is_an_int8_colanet_near_float_accuracy(pixel_digits, tmp_path):
    xt, xv, yt, yv = pixel_digits
    flt = train(create_learner("colanet", xt.shape[1], 10, seed=0, microcolumns=3), xt, yt, epochs=10,
                progress=False)[0]
    float_top1 = float((flt.model.predict_spiking(xv).numpy() == yv).mean())
    learner = _learner(pixel_digits, 8, epochs=10)
    model = learner.to_int8()
    assert isinstance(model, Int8CoLaNET) and model.weights.dtype == torch.int8
    assert len(model.member) == int(learner.active.sum()) and model.exponent == 0
    pred = learner.predict(xv)
    int_top1 = float((pred.numpy() == yv).mean())
    assert int_top1 > 0.85 and abs(int_top1 - float_top1) < 0.03, (int_top1, float_top1)
    # the saved int8 file is the same network
    model.save(tmp_path / "m.int8.safetensors")
    assert torch.equal(Int8CoLaNET.load(tmp_path / "m.int8.safetensors").predict(xv), pred)
    scores, stats = learner.scores(xv[:50])
    assert torch.equal(scores.argmax(1), pred[:50]) and stats["output_spikes"] > 0


def test_altai_range_and_narrow_weights(pixel_digits):
    altai = _learner(pixel_digits, "altai", epochs=1)
    assert altai.weights.dtype == torch.int16 and int(altai.weights.abs().max()) > 127
    assert altai.to_int8().exponent == 1  # one shift folds [-255, 255] into int8
    narrow = _learner(pixel_digits, 4, epochs=1)
    assert set(narrow.weights.unique().tolist()) <= set(range(-7, 8))
    assert weight_limit(6) == 31 and weight_limit("altai") == 255


def test_save_load_and_resume_reach_the_same_integer_state(pixel_digits, tmp_path):
    xt, _, yt, _ = pixel_digits
    full = _learner(pixel_digits, 6, epochs=2)
    part = integer_learner(xt.shape[1], 10, 6, microcolumns=3, seed=0)
    train(part, xt, yt, epochs=2, batch_size=16, progress=False, run_dir=tmp_path, stop_after_epoch=1)
    resumed = train(integer_learner(xt.shape[1], 10, 6, microcolumns=3, seed=0), xt, yt, epochs=2, batch_size=16,
                    progress=False, run_dir=tmp_path, resume=True)[0]
    for name in ("weights", "active", "rng_state", "threshold", "lateral"):
        assert torch.equal(getattr(resumed, name), getattr(full, name)), name
    full.save(tmp_path / "int.safetensors")
    back = IntegerCoLaNET.load(tmp_path / "int.safetensors")
    assert torch.equal(back.weights, full.weights) and int(back.rng_state) == int(full.rng_state)
    side = IntegerRuleSidecar.read(sidecar_path(tmp_path / "int.safetensors"))
    assert side.weight_bits == 6 and side.constants["weight_max"] == 31
    assert side.schedule["rate_start"] == round(schedule_rate(0, 1, 2) * 4096) > 4096  # short runs start higher


def test_bad_input_is_refused_with_one_line(pixel_digits, tmp_path):
    xt, _, yt, _ = pixel_digits
    for bits in (1, 17, "int8", 8.0, True):
        with pytest.raises(SpikebridgeError, match="weight bits"):
            integer_learner(64, 10, bits)
    with pytest.raises(SpikebridgeError, match="ensemble"):
        integer_learner(64, 10, 8, ensemble=3)
    with pytest.raises(SpikebridgeError, match="no setting"):
        integer_learner(64, 10, 8, etaplus=0.1)
    learner = integer_learner(xt.shape[1], 10, 8, microcolumns=2)
    learner.prepare(xt, yt)
    counts, labels = learner.rates(xt[:4]), torch.as_tensor(yt[:4])
    with pytest.raises(SpikebridgeError, match="integer numerator"):
        learner.learn(counts, labels, rate=0.5)
    with pytest.raises(SpikebridgeError, match="integer spike counts"):
        learner.learn(counts.float(), labels)
    with pytest.raises(SpikebridgeError, match="no recruited"):
        learner.to_int8()
    path = tmp_path / "rule.json"
    path.write_text(json.dumps({**learner.rule_sidecar().to_dict(), "version": 99}))
    with pytest.raises(SpikebridgeError, match="version 99"):
        IntegerRuleSidecar.read(path)
    path.write_text(json.dumps({"format": "spikebridge-nir"}))
    with pytest.raises(SpikebridgeError, match="not a spikebridge integer-rule sidecar"):
        IntegerRuleSidecar.read(path)
    with pytest.raises(SpikebridgeError, match="not found"):
        IntegerRuleSidecar.read(tmp_path / "missing.json")
