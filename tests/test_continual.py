"""Continual-learning protocols (spikebridge.continual), the streaming references, and CoLaNET's
online learning through partial_fit / add_classes (float and integer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikebridge import continual
from spikebridge.baselines import OnlineSoftmax, StreamingLDA, StreamingNCM
from spikebridge.errors import SpikebridgeError
from spikebridge.estimator import SpikingClassifier


class Recorder:
    """An online learner that remembers every row it was given (features carry a row id in column 0)."""

    def __init__(self):
        self.rows, self.calls, self.added = [], 0, []
        self.known: set = set()

    def partial_fit(self, x, y, classes=None):
        self.calls += 1
        if classes is not None:
            self.known |= set(np.asarray(classes).tolist())
        assert set(np.asarray(y).tolist()) <= self.known, "a class came before it was announced"
        self.rows += np.asarray(x)[:, 0].astype(int).tolist()
        return self

    def add_classes(self, classes):
        self.added.append(list(classes))
        self.known |= set(np.asarray(classes).tolist())
        return self

    def predict(self, x):
        return np.full(len(x), -1)

    def state_bytes(self):
        return 0


def id_data(n_classes=6, per_class=10, val_per_class=4):
    """Features whose first column is a unique row id (val ids are negative)."""
    y = np.repeat(np.arange(n_classes), per_class)
    yv = np.repeat(np.arange(n_classes), val_per_class)
    x = np.stack([np.arange(len(y)), y], 1).astype(np.float32)
    xv = np.stack([-1 - np.arange(len(yv)), yv], 1).astype(np.float32)
    return x, y, xv, yv


def test_streaming_shows_every_training_example_once_and_no_val_example():
    x, y, xv, yv = id_data()
    rec = Recorder()
    r = continual.streaming(rec, x, y, xv, yv, seed=3, batch=4)
    assert sorted(rec.rows) == list(range(len(y)))  # each training row exactly once
    assert min(rec.rows) >= 0  # never a val row
    assert rec.rows != sorted(rec.rows)  # shuffled
    assert r["examples"] == len(y)


def test_class_incremental_tasks_partition_the_classes_and_each_example_is_seen_once():
    x, y, xv, yv = id_data(n_classes=6)
    rec = Recorder()
    r = continual.class_incremental(rec, x, y, xv, yv, tasks=3, seed=1, batch=1)
    assert sorted(rec.rows) == list(range(len(y))) and min(rec.rows) >= 0
    order = r["class_order"]
    assert sorted(order) == list(range(6)) and len(r["task_top1"]) == 3
    assert rec.added == [order[2:4], order[4:6]]  # tasks 2 and 3 announced by add_classes
    first_task = set(order[:2])
    assert set(y[rec.rows[:20]]) == first_task  # task 1's examples all come first
    with pytest.raises(SpikebridgeError, match="tasks must be between 1"):
        continual.class_incremental(Recorder(), x, y, xv, yv, tasks=7)


def test_forgetting_is_computed_from_per_class_histories():
    h = continual.History(np.array([0, 1, 2]))
    labels = np.array([0, 0, 1, 1, 2, 2])
    h.record(np.array([0, 0, 1, 1, 9, 9]), labels, np.array([0, 1]))  # classes 0, 1 perfect
    h.record(np.array([0, 2, 1, 1, 2, 2]), labels, np.array([0, 1, 2]))  # class 0 drops to 50 %
    assert h.forgetting(last_task_classes=[2]) == pytest.approx(0.25)  # mean of drops 0.5 (class 0) and 0 (class 1)
    assert h.overall == [pytest.approx(1.0), pytest.approx(5 / 6)]


def test_few_shot_plan_uses_shots_of_train_only():
    x, y, xv, yv = id_data(n_classes=10, per_class=12)
    base, plan = continual.few_shot_plan(y, seed=0, base_fraction=0.6, ways=2, shots=5)
    assert len(base) == 6 and len(plan) == 2
    for group, idx in plan:
        assert len(group) == 2 and len(idx) == 10
        assert np.bincount(y[idx], minlength=10)[group].tolist() == [5, 5]
    rec = Recorder()
    r = continual.few_shot(rec, x, y, xv, yv, seed=0, ways=2, shots=5)
    assert min(rec.rows) >= 0 and len(rec.rows) == len(set(rec.rows)) == 6 * 12 + 2 * 10
    assert r["examples"] == len(rec.rows)


def test_streaming_references_match_their_batch_forms(pixel_digits):
    xt, _, yt, _ = pixel_digits
    x, y = xt[:300].astype(np.float64), yt[:300]
    ncm = StreamingNCM()
    lda = StreamingLDA()
    for i in range(len(y)):
        ncm.partial_fit(x[i : i + 1], y[i : i + 1])
        lda.partial_fit(x[i : i + 1], y[i : i + 1])
    means = np.stack([x[y == c].mean(0) for c in ncm.classes_])
    assert np.allclose(ncm.means, means)
    # the paper's recursion, example by example (without the buffering)
    sigma, mu, n = np.zeros((64, 64)), {c: np.zeros(64) for c in np.unique(y)}, {c: 0 for c in np.unique(y)}
    for t, (xi, c) in enumerate(zip(x, y)):
        d = xi - mu[c]
        sigma = (t * sigma + t / (t + 1) * np.outer(d, d)) / (t + 1)
        n[c] += 1
        mu[c] = mu[c] + d / n[c]
    assert np.allclose(lda.covariance, sigma)
    assert (lda.predict(x) == y).mean() > 0.9
    sgd = OnlineSoftmax(0.01).partial_fit(x, y)
    assert (sgd.predict(x) == y).mean() > 0.8


def test_add_classes_keeps_old_decisions_when_no_new_examples_come(pixel_digits):
    xt, xv, yt, yv = pixel_digits
    old = yt < 6
    clf = SpikingClassifier(seed=0, batch_size=8, steps=16)
    clf.partial_fit(xt[old], yt[old])
    before = clf.predict(xv)
    clf.add_classes([6, 7, 8, 9])
    assert clf.classes_.tolist() == list(range(10))
    assert np.array_equal(clf.predict(xv), before)  # new, empty columns never fire
    with pytest.raises(SpikebridgeError, match="classes already"):
        clf.add_classes([3])


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_colanet_learns_class_incrementally_without_storing_examples(pixel_digits):
    xt, xv, yt, yv = pixel_digits
    clf = SpikingClassifier(seed=0, batch_size=1, steps=16)
    r = continual.class_incremental(clf, xt, yt, xv, yv, tasks=5, seed=0, batch=1)
    model = clf.learner_.model
    assert model.frozen[:8].all() and not model.frozen[8:].any()
    assert r["final_top1"] > 0.5, r["final_top1"]  # 10 classes in 5 tasks, one pass each (chance: 0.1)
    assert r["state_bytes"] == model.state_bytes() < xt.nbytes  # less than the training examples themselves
    assert "rng_state" in model.tensors() and not any("window" in k for k in model.tensors())


def test_covariance_form_while_columns_are_frozen(pixel_digits):
    """After add_classes, a new column's prototype is recruited as w_max * (r - mean rate) and its
    updates use r - mean rate (the covariance form); before, the plain rule (w_max * r)."""
    from spikebridge.colanet import CoLaNET, CoLaNETConfig

    xt, _, yt, _ = pixel_digits
    for centred in (True, False):
        m = CoLaNET(64, 2, CoLaNETConfig(microcolumns=1, stream_centred=centred))
        two = np.flatnonzero(yt < 2)
        m.partial_fit(xt[two], yt[two])
        assert torch.allclose(m.weights[0, :2].clamp(-1, 1), m.weights[0, :2])  # plain rule ran on task 1
        m.add_classes(1)
        first = np.flatnonzero(yt == 2)[:1]
        r = m.rates(xt[first])[0]
        mean_before = m.stream.mean_rate.clone()
        m.partial_fit(xt[first], yt[first])
        mean_after = mean_before + (r - mean_before) / m.stream.rates_seen
        expected = (r - mean_after) if centred else r
        assert torch.allclose(m.weights[0, 2], expected.clamp(-1, 1), atol=1e-6), centred


def test_per_column_schedule_decays_with_each_columns_examples():
    from spikebridge.streaming import StreamStatistics

    st = StreamStatistics(4, 3)
    st.observe(torch.ones(5, 4), torch.tensor([0, 0, 0, 1, 1]))
    rate = st.column_rate(boost=5.0, halflife=2.0)
    assert rate.tolist() == pytest.approx([5 * 2 / 5, 5 * 2 / 4, 5.0])
    assert st.slots(per_microcolumn=2, microcolumns=7).tolist() == [2, 1, 1]


def test_integer_colanet_learns_online_and_adds_classes(pixel_digits):
    from spikebridge.deploy.integer_learning import IntegerCoLaNET, integer_learner

    xt, xv, yt, yv = pixel_digits
    old = yt < 8
    m = integer_learner(64, 8, seed=0, steps=16)
    for i in np.flatnonzero(old):
        m.partial_fit(xt[i : i + 1], yt[i : i + 1])
    acc_old = float((m.predict(xv[yv < 8]).numpy() == yv[yv < 8]).mean())
    m.add_classes(2)
    assert np.array_equal(m.predict(xv[yv < 8]).numpy(), m.predict(xv[yv < 8]).numpy())
    for i in np.flatnonzero(~old):
        m.partial_fit(xt[i : i + 1], yt[i : i + 1])
    new = yv >= 8
    assert acc_old > 0.8 and float((m.predict(xv[new]).numpy() == yv[new]).mean()) > 0.5
    assert m.weights.dtype == torch.int8 and m.frozen[:8].all()
    back = IntegerCoLaNET.from_tensors(m.metadata(), m.tensors())
    assert torch.equal(back.predict(xv), m.predict(xv)) and torch.equal(back.stream.seen, m.stream.seen)


@pytest.mark.slow  # fast lane under 2 minutes: it runs in CI (-m slow included)
def test_train_continual_writes_a_run_folder(pixel_pipeline, pixel_digits, tmp_path, capsys):
    import json

    from spikebridge.cli import main

    xt, xv, yt, yv = pixel_digits
    classes = [str(c) for c in range(10)]
    argv = ["train", "--dataset", "pixels", "--steps", "8", "--no-progress", "--run-dir", "run",
            "--continual", "class-incremental", "--tasks", "5", "--train-batch", "1"]
    assert main(argv) == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["continual"]["protocol"] == "class-incremental" and len(record["continual"]["task_top1"]) == 5
    assert record["examples_learned"] == len(yt) and record["metrics"]["top1"] > 0.5
    model = SpikingClassifier.load(tmp_path / "run" / "model.safetensors")
    assert model.classes_.tolist() == classes  # columns back in the data set's class order
    assert (model.predict(xv).astype(int) == yv).mean() == pytest.approx(record["metrics"]["top1"])
    assert main(["train", "--dataset", "pixels", "--continual", "streaming", "--tasks", "3"]) == 2
    assert "--tasks applies to --continual class-incremental only" in capsys.readouterr().err
    assert main(["train", "--dataset", "pixels", "--continual", "streaming", "--epochs", "3"]) == 2
    assert main(["train", "--dataset", "pixels", "--rule", "rstdp", "--continual", "few-shot"]) == 2


def test_regular_counts_equal_the_spike_trains_summed():
    from spikebridge.coding import regular_counts, regular_spikes

    rates = torch.rand(64, 300, generator=torch.Generator().manual_seed(0))
    rates[0, :5] = torch.tensor([0.0, 1.0, 0.5, 1 / 32, 31 / 32])
    for T in (1, 15, 32, 37):
        assert torch.equal(regular_counts(rates, T), regular_spikes(rates, T).sum(0, dtype=torch.int64))


def test_low_rank_scatter_is_the_pooled_within_class_scatter():
    """The incremental eigen-update gives the exact within-class scatter while its rank allows,
    and its leading directions when truncated; set_from_training agrees with the stream."""
    from spikebridge.streaming import StreamStatistics

    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(40, 12)) * np.linspace(3, 0.2, 12), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 3, 40))
    exact = sum(((x[y == c] - x[y == c].mean(0)).double().T @ (x[y == c] - x[y == c].mean(0)).double()) for c in range(3))
    full = StreamStatistics(12, 3, rank=12)
    for b in range(0, 40, 7):  # batches of several sizes
        full.observe(x[b : b + 7], y[b : b + 7])
    scatter = (full.basis.double() * full.spread.double()) @ full.basis.double().T
    assert torch.allclose(scatter, exact, rtol=1e-4, atol=1e-3)
    low = StreamStatistics(12, 3, rank=3)
    low.observe(x, y)
    top = torch.linalg.eigvalsh(exact).flip(0)[:3]
    assert torch.allclose(low.spread.double(), top, rtol=0.05)  # streaming truncation: close, not exact
    batch = StreamStatistics(12, 3, rank=3)
    batch.set_from_training(x.numpy(), y.numpy())
    assert torch.allclose(batch.spread.double(), top, rtol=1e-5)
    assert StreamStatistics(12, 3).basis.numel() == 0  # rank 0 keeps no directions


def test_low_rank_replay_keeps_each_class_variance_and_shared_correlations():
    from spikebridge.streaming import StreamStatistics

    g = torch.Generator().manual_seed(0)
    shared = torch.randn(5000, 1, generator=g)
    noise = torch.randn(5000, 6, generator=g)
    x = torch.cat([shared * torch.ones(6) + 0.3 * noise[:, :6]], 1)  # correlated features
    y = torch.arange(5000) % 2
    x[y == 1] *= 2.0  # class 1 spreads twice as wide
    stats = StreamStatistics(6, 2, rank=2)
    stats.set_from_training(x.numpy(), y.numpy())
    feats, labels = stats.replay(20000, torch.tensor([True, True]), 1.0, torch.Generator().manual_seed(1))
    for c in (0, 1):
        own, drawn = x[y == c], feats[0][labels[0] == c]
        assert torch.allclose(drawn.var(0), own.var(0), rtol=0.1)
        assert torch.corrcoef(drawn.T)[0, 1] > 0.8  # the shared direction survives (independent: ~0)
    diagonal = StreamStatistics(6, 2, rank=0)
    diagonal.set_from_training(x.numpy(), y.numpy())
    feats, _ = diagonal.replay(5000, torch.tensor([True, True]), 1.0, torch.Generator().manual_seed(1))
    assert abs(float(torch.corrcoef(feats[0].T)[0, 1])) < 0.1


def test_low_rank_statistics_survive_save_and_load(pixel_digits, tmp_path):
    from spikebridge.colanet import CoLaNET, CoLaNETConfig

    x, _, y, _ = pixel_digits
    x, y = x[:200], y[:200]
    model = CoLaNET(x.shape[1], 10, CoLaNETConfig(replay_rank=8)).partial_fit(x, y)
    assert model.stream.basis.shape == (x.shape[1], 8)
    model.save(tmp_path / "m.safetensors")
    loaded = CoLaNET.load(tmp_path / "m.safetensors")
    assert torch.equal(loaded.stream.basis, model.stream.basis) and torch.equal(loaded.stream.spread, model.stream.spread)
    assert loaded.state_bytes() == model.state_bytes()


def test_replay_count_balances_old_and_new_classes():
    """Balanced replay: replay * batch * old/new classes, capped at cap times the unbalanced count;
    classes with fewer than 2 examples cannot be replayed and do not count as old."""
    from spikebridge.streaming import StreamStatistics

    st = StreamStatistics(2, 10)
    st.observe(torch.zeros(17, 2), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 7, 8, 8]))
    frozen = torch.tensor([True] * 7 + [False] * 3)  # 6 replayable old classes (class 6 has 1 example)
    assert st.replay_count(4, frozen, None) == 4  # unbalanced
    assert st.replay_count(4, frozen, cap=4) == 12  # 4 * 6 old / 2 new
    assert st.replay_count(4, frozen, cap=2) == 8  # capped at 2 * 4
    assert st.replay_count(4, torch.zeros(10, dtype=torch.bool), cap=4) == 0  # nothing frozen


@pytest.mark.parametrize("balanced", [True, False])
def test_partial_fit_interleaves_the_balanced_number_of_replays(pixel_digits, balanced, monkeypatch):
    from spikebridge.colanet import CoLaNET, CoLaNETConfig
    from spikebridge.streaming import StreamStatistics

    xt, _, yt, _ = pixel_digits
    m = CoLaNET(64, 6, CoLaNETConfig(microcolumns=1, replay=2, replay_cap=4, balanced_replay=balanced))
    old = np.flatnonzero(yt < 6)
    m.partial_fit(xt[old], yt[old])
    m.add_classes(1)
    asked = []
    replay = StreamStatistics.replay
    monkeypatch.setattr(StreamStatistics, "replay", lambda self, n, *a, **k: asked.append(n) or replay(self, n, *a, **k))
    new = np.flatnonzero(yt == 6)[:3]
    m.partial_fit(xt[new], yt[new], batch_size=1)
    assert asked == ([8, 8, 8] if balanced else [2, 2, 2])  # 2 * min(6 old / 1 new, 4)
