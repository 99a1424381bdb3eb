"""The dense / event crossover (forced, cached per machine, measured once), the exactness of
integer currents on both paths, and the bf16 option."""
import json
import math

import pytest
import torch

from conftest import reference_population
from spikebridge import crossover as autotuner
from spikebridge import current_paths, currents
from spikebridge.coding import encode
from spikebridge.colanet import CoLaNET, CoLaNETConfig
from spikebridge.crossover import CROSSOVER_ENV, crossover_from_curve, event_crossover, measure_crossover
from spikebridge.current_paths import event_lists
from spikebridge.currents import resolve_method, spike_currents, synaptic_currents
from spikebridge.errors import SpikebridgeError
from spikebridge.precision_comparison import compare_precision


TINY = ((4, 8, 64, 8), (4, 8, 64, 32))  # (T, B, N, neurons): measurements that take milliseconds


@pytest.fixture
def private_crossover(tmp_path, monkeypatch):
    """The cache folder is ``tmp_path``, nothing is forced, nothing remembered from earlier calls."""
    monkeypatch.setenv("SPIKEBRIDGE_CACHE", str(tmp_path))
    monkeypatch.delenv(CROSSOVER_ENV, raising=False)
    monkeypatch.setattr(autotuner, "_crossovers", {})
    monkeypatch.setattr(autotuner, "CROSSOVER_SHAPES", TINY)
    return tmp_path


def _spikes(density, shape=(6, 5, 200), seed=0):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < density).to(torch.uint8)


def test_crossover_measured_once_cached_under_the_cache_folder_and_reused(private_crossover, monkeypatch, capsys):
    calls = []

    def counted(**kw):
        calls.append(kw)
        return measure_crossover(repeats=1, **kw)

    monkeypatch.setattr(autotuner, "measure_crossover", counted)
    first = event_crossover(20)
    err = capsys.readouterr().err.strip().splitlines()
    assert [c["shape"] for c in calls] == list(TINY)  # one curve per shape
    assert len(err) == 1 and "measuring" in err[0] and CROSSOVER_ENV in err[0]
    files = list((private_crossover / "event-crossover").glob("*.json"))
    assert len(files) == 1 and files[0] == autotuner.crossover_path(autotuner.machine_identity())
    record = json.loads(files[0].read_text())
    assert record["identity"] == autotuner.machine_identity() and len(record["curves"]) == 2
    for curve in record["curves"]:
        assert len(curve["densities"]) == len(curve["dense_s"]) == len(curve["event_s"])
    points = [(c["shape"]["neurons"], c["crossover"]) for c in record["curves"]]
    assert first == pytest.approx(autotuner.crossover_at(points, 20))
    monkeypatch.setattr(autotuner, "_crossovers", {})  # a new process: only the file remains
    assert event_crossover(20) == first and len(calls) == 2 and capsys.readouterr().err == ""
    event_crossover(20, bf16=True)  # another precision is another entry
    assert len(calls) == 4 and calls[-1]["bf16"] is True
    assert len(list((private_crossover / "event-crossover").glob("*.json"))) == 2


def test_unusable_cache_file_is_said_and_measured_again(private_crossover, monkeypatch, capsys):
    monkeypatch.setattr(autotuner, "measure_crossover", lambda **kw: measure_crossover(repeats=1, **kw))
    path = autotuner.crossover_path(autotuner.machine_identity())
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    event_crossover(100)
    err = capsys.readouterr().err
    assert "unusable crossover cache" in err and "measuring" in err
    assert len(json.loads(path.read_text())["curves"]) == 2


def test_auto_takes_event_below_and_dense_above_a_forced_crossover(private_crossover, monkeypatch):
    def refuse(**kw):
        raise AssertionError("a forced crossover must not be measured")

    monkeypatch.setattr(autotuner, "measure_crossover", refuse)
    x = _spikes(0.1)
    assert resolve_method(x, "auto", 64, crossover=0.2) == "event"
    assert resolve_method(x, "auto", 64, crossover=0.05) == "dense"
    assert resolve_method(x, "auto", 64, density=0.3, crossover=0.2) == "dense"
    monkeypatch.setenv(CROSSOVER_ENV, "0.2")
    assert resolve_method(x, "auto", 64) == "event" and resolve_method(_spikes(0.4), "auto", 64) == "dense"
    assert resolve_method(x, "auto", 64, crossover=0.01) == "dense"  # the argument wins over the variable
    assert resolve_method(x, "dense", 64) == "dense" and resolve_method(_spikes(0.4), "event", 64) == "event"
    assert not (private_crossover / "event-crossover").exists()


def test_simulate_auto_runs_the_chosen_path(pixel_digits, private_crossover, monkeypatch):
    xtr, xva, ytr, _ = pixel_digits
    model = CoLaNET(64, 10, CoLaNETConfig(microcolumns=2))
    model.fit_normaliser(xtr)
    model.learn(model.rates(xtr[:300]), torch.as_tensor(ytr[:300]))
    model.calibrate(model.rates(xtr[:300]))
    spikes = model.spikes_for(xva[:64])
    used = []
    real = current_paths._event_currents
    monkeypatch.setattr(current_paths, "_event_currents", lambda *a: used.append(1) or real(*a))
    for forced, path in (("1", "event"), ("0", "dense")):
        monkeypatch.setenv(CROSSOVER_ENV, forced)
        used.clear()
        auto, explicit = model.simulate(spikes, method="auto"), model.simulate(spikes, method=path)
        assert torch.equal(auto.counts, explicit.counts) and torch.equal(auto.v_final, explicit.v_final)
        assert len(used) == (2 if path == "event" else 0)


@pytest.mark.parametrize("value", ["fast", "1.5", "-0.1", "nan", ""])
def test_invalid_crossover_is_a_one_line_error(private_crossover, monkeypatch, value):
    monkeypatch.setenv(CROSSOVER_ENV, value)
    with pytest.raises(SpikebridgeError, match=rf"^{CROSSOVER_ENV} must be a spike density in \[0, 1\], not '{value}'$"):
        spike_currents(_spikes(0.1), torch.ones(1, 3, 200), "auto")
    with pytest.raises(SpikebridgeError, match=r"^crossover must be a spike density in \[0, 1\], not 2$"):
        event_crossover(64, 2)


def test_crossover_from_curve_fits_the_event_line_against_the_median_dense_time():
    d = [0.1, 0.2, 0.3, 0.4, 0.5]
    dense = [1.0, 1.0, 5.0, 1.0, 1.0]  # one slow sample of a shared machine does not move it
    event = [0.2 + 2 * x for x in d]  # meets 1.0 at 0.4
    crossover, inside = crossover_from_curve(d, dense, event)
    assert crossover == pytest.approx(0.4) and inside
    assert crossover_from_curve(d, dense, [2 + x for x in d]) == (0.0, False)  # event always slower
    assert crossover_from_curve(d, dense, [0.1 + 0.1 * x for x in d]) == (1.0, False)  # always faster
    assert crossover_from_curve(d, dense, [0.5] * 5) == (1.0, False)  # flat and faster


def test_crossover_at_interpolates_in_log_neurons():
    points = [(64, 0.1), (640, 0.3)]
    assert autotuner.crossover_at(points, 64) == pytest.approx(0.1)
    assert autotuner.crossover_at(points, 202) == pytest.approx(0.1 + 0.2 * math.log(202 / 64) / math.log(10))
    assert autotuner.crossover_at(points, 8) == 0.1 and autotuner.crossover_at(points, 5000) == 0.3


def test_auto_in_simulate_uses_the_crossover_of_its_neuron_count(private_crossover, monkeypatch):
    """Shared input reaches K*J neurons per spike, per-member input J."""
    seen = []
    monkeypatch.setattr(autotuner, "machine_crossovers", lambda bf16=False: [(10, 0.0), (1000, 1.0)])
    real = autotuner.crossover_at
    monkeypatch.setattr(autotuner, "crossover_at", lambda points, n: seen.append(n) or real(points, n))
    w = torch.ones(3, 10, 200)
    spike_currents(_spikes(0.1), w, "auto")
    synaptic_currents(_spikes(0.1, (6, 3, 5, 200)), w, "auto")
    assert seen == [30, 10]


def test_measure_crossover_reports_its_curve_with_the_callers_threads():
    out = measure_crossover(densities=(0.05, 0.3), shape=TINY[0], repeats=2)
    assert 0.0 <= out["crossover"] <= 1.0 and out["threads"] == torch.get_num_threads()
    assert len(out["dense_s"]) == len(out["event_s"]) == 2 and min(out["dense_s"] + out["event_s"]) > 0
    with pytest.raises(ValueError, match="densities"):
        measure_crossover(densities=(0.1,), shape=TINY[0])


@pytest.mark.parametrize("n,dtype", [(132_000, torch.float32), (140_000, torch.float64)])
def test_int8_sums_are_exact_on_both_paths_up_to_the_float32_limit(n, dtype):
    """The int8 model's claim: partial sums of int8 weights are integers of magnitude <= 127 N,
    exact in float32 while 127 N < 2**24 (N = 132,000: 16,764,000), float64 beyond. The
    extreme row (every input spiking, every weight 127) reaches the bound."""
    assert (127 * n < 2**24) == (dtype == torch.float32)
    g = torch.Generator().manual_seed(0)
    w = torch.randint(-127, 128, (1, 3, n), generator=g, dtype=torch.int64)
    w[0, 0] = 127
    x = (torch.rand(2, 2, n, generator=g) < 0.5).to(torch.uint8)
    x[0, 0] = 1
    exact = torch.einsum("tbn,jn->tbj", x.long(), w[0])  # int64 reference
    assert int(exact[0, 0, 0]) == 127 * n
    for method in ("dense", "event"):
        assert torch.equal(spike_currents(x, w.to(dtype), method)[0].long(), exact)


def test_bf16_currents_stay_within_the_rounding_of_weights_and_result():
    """bf16: weights rounded to 8 significant bits (relative error <= 2**-9 each), sums in fp32,
    the result rounded once more; spikes are exact. A bf16 accumulator would exceed the bound."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(2, 30, 700, generator=g)
    x = _spikes(0.3, (5, 4, 700), seed=2)
    magnitude = spike_currents(x, w.abs(), "dense")  # sum_i |w_ji| x_i
    for method in ("dense", "event"):
        ref = spike_currents(x, w, method)
        low, n = synaptic_currents(x, w, method, bf16=True)
        assert low.dtype == torch.float32 and torch.equal(n, synaptic_currents(x, w, method)[1])
        assert ((low - ref).abs() <= 2**-9 * magnitude + 2**-8 * ref.abs() + 1e-5).all()
        assert not torch.equal(low, ref)


def test_compare_precision_reports_speed_and_agreement(pixel_digits, private_crossover, monkeypatch):
    monkeypatch.setenv(CROSSOVER_ENV, "0.2")
    xtr, xva, ytr, _ = pixel_digits
    model = CoLaNET(64, 10, CoLaNETConfig(microcolumns=2))
    model.fit_normaliser(xtr)
    model.learn(model.rates(xtr), torch.as_tensor(ytr))
    model.calibrate(model.rates(xtr))
    out = compare_precision(model, model.spikes_for(xva[:100]), repeats=1)
    assert out["auto_path"] in ("dense", "event") and isinstance(out["bf16_recommended"], bool)
    for path in ("dense", "event"):
        assert set(out["simulate_s"][path]) == set(out["currents_s"][path]) == {"float32", "bfloat16"}
        agreement = out["agreement"][path]
        assert 0.9 <= agreement["decisions"] <= 1.0 and 0.9 <= agreement["counts"] <= 1.0


def test_auto_estimates_the_density_from_a_sample_of_rows():
    """``auto`` counts the spikes of DENSITY_SAMPLE_ROWS evenly spaced rows, not all of them: exact
    for small inputs, within 1e-2 on large ones, and the chosen path follows the crossover."""
    from spikebridge import current_paths as cu
    from spikebridge.currents import resolve_method

    g = torch.Generator().manual_seed(0)
    small = (torch.rand(4, 8, 100, generator=g) < 0.3).to(torch.uint8)
    assert cu.estimated_density(small) == cu.spike_density(small)
    big = (torch.rand(32, 256, 1280, generator=g) < torch.linspace(0.02, 0.2, 256).view(1, 256, 1)).to(torch.uint8)
    assert abs(cu.estimated_density(big) - cu.spike_density(big)) < 1e-2
    density = cu.spike_density(big)
    assert resolve_method(big, "auto", 50, crossover=density + 0.02) == "event"
    assert resolve_method(big, "auto", 50, crossover=density - 0.02) == "dense"


# ------------------------------------------------------------------ issue 21: the same answer on every machine
def _small_model(pixel_digits):
    xtr, xva, ytr, _ = pixel_digits
    model = CoLaNET(64, 10, CoLaNETConfig(microcolumns=2))
    model.fit_normaliser(xtr)
    model.learn(model.rates(xtr[:300]), torch.as_tensor(ytr[:300]))
    model.calibrate(model.rates(xtr[:300]))
    return model, model.spikes_for(xva[:64])


def test_library_default_is_dense_fp32_and_times_nothing(pixel_digits, private_crossover, monkeypatch):
    """Unset variables: dense fp32 even where auto would take the event path (a crossover of 1)
    and the CPU has native bf16; nothing is measured or written under the cache."""
    def refuse(**kw):
        raise AssertionError("the default must not time anything")

    monkeypatch.delenv(currents.METHOD_ENV, raising=False)
    monkeypatch.delenv(currents.PRECISION_ENV, raising=False)
    monkeypatch.setattr(autotuner, "measure_crossover", refuse)
    monkeypatch.setattr(currents, "cpu_has_native_bf16", lambda: True)
    model, spikes = _small_model(pixel_digits)
    used = []
    real = current_paths._event_currents
    monkeypatch.setattr(current_paths, "_event_currents", lambda *a: used.append(1) or real(*a))
    default, fp32_dense = model.simulate(spikes), model.simulate(spikes, method="dense", bf16=False)
    assert torch.equal(default.counts, fp32_dense.counts) and torch.equal(default.v_final, fp32_dense.v_final)
    assert used == [] and not (private_crossover / "event-crossover").exists()
    assert currents.default_method() == "dense" and currents.default_bf16() is False
    scores, _ = model.scores_spiking(torch.randn(8, 64))
    assert used == [] and scores.shape == (8, 10)


def test_simulation_method_variable_opts_in_and_is_checked(pixel_digits, private_crossover, monkeypatch):
    model, spikes = _small_model(pixel_digits)
    used = []
    real = current_paths._event_currents
    monkeypatch.setattr(current_paths, "_event_currents", lambda *a: used.append(1) or real(*a))
    monkeypatch.setenv(currents.METHOD_ENV, "event")
    event = model.simulate(spikes)
    assert used == [1] and torch.equal(event.counts, model.simulate(spikes, method="event").counts)
    monkeypatch.setenv(currents.METHOD_ENV, "auto")
    monkeypatch.setenv(CROSSOVER_ENV, "0")
    used.clear()
    model.simulate(spikes)
    assert used == []  # auto with a crossover of 0: dense
    monkeypatch.setenv(currents.METHOD_ENV, "fastest")
    with pytest.raises(SpikebridgeError, match=r"^\$SPIKEBRIDGE_SIMULATION_METHOD='fastest': expected one of auto, dense, event$"):
        model.simulate(spikes)


def test_opt_in_autotuning_with_an_unwritable_cache_warns_once_and_runs(pixel_digits, private_crossover, monkeypatch):
    """A cache folder that cannot be written (here a file: read-only folders are writable for
    root) costs the crossover its cache, never the call."""
    monkeypatch.setattr(autotuner, "measure_crossover", lambda **kw: measure_crossover(repeats=1, **kw))
    blocker = private_crossover / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("SPIKEBRIDGE_CACHE", str(blocker))
    model, spikes = _small_model(pixel_digits)
    with pytest.warns(UserWarning, match=r"cannot cache the dense/event crossover in .*not-a-folder.*kept for this process"):
        rec = model.simulate(spikes, method="auto")
    assert torch.equal(rec.counts, model.simulate(spikes, method=currents.resolve_method(spikes, "auto", 20)).counts)
    assert blocker.is_file()


def _trained(pixel_digits, ensemble, coder="bernoulli"):
    xtr, xva, ytr, _ = pixel_digits
    model = CoLaNET(64, 10, CoLaNETConfig(microcolumns=6, ensemble=ensemble, coder=coder))
    model.fit_normaliser(xtr)
    r = model.rates(xtr)
    y = torch.as_tensor(ytr)
    for b in range(0, len(r), 16):
        model.learn(r[b : b + 16], y[b : b + 16])
    model.calibrate(r)
    return model, xva


@pytest.mark.parametrize("ensemble", [1, 3])
@pytest.mark.parametrize("per_member", [False, True])
def test_simulate_on_a_trained_model_equals_the_plain_loop(pixel_digits, ensemble, per_member):
    """Spike counts, first-spike steps and v_final of ``CoLaNET.simulate`` on a model trained on
    the digits equal the plain loop's on the same currents (the old in-place loop's outputs)."""
    model, xva = _trained(pixel_digits, ensemble)
    if per_member:
        spikes = encode(model.rates(xva[:200]).unsqueeze(0).expand(ensemble, -1, -1), 24, "bernoulli", seed=1)
    else:
        spikes = model.spikes_for(xva[:200], 24, seed=1)
    rec = model.simulate(spikes, record_raster=True, method="dense")
    x = spikes.float()
    W = model.effective_weights()
    currents = (torch.einsum("tbn,kjn->ktbj", x, W) if x.dim() == 3 else torch.einsum("tkbn,kjn->ktbj", x, W))
    counts, first, v, raster = reference_population(currents, model.config.beta, model.threshold,
                                                     model.config.lateral_inhibition, ~model.active)
    K, J = model.active.shape
    assert counts.sum() > 0
    assert torch.equal(rec.counts, counts) and torch.equal(rec.first_spike, first)
    assert torch.equal(rec.v_final, v.masked_fill(~model.active.view(K, 1, J), -1e9))
    assert torch.equal(rec.raster, raster[:, 0, 0])
    event = model.simulate(spikes, method="event")
    assert torch.equal(model.column_decision(rec), model.column_decision(event))
    assert torch.allclose(rec.v_final, event.v_final, atol=1e-4)
    assert torch.equal(rec.input_spikes, event.input_spikes)


def test_event_currents_equal_dense_and_event_lists():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(5, 6, 50, generator=g) < 0.1).to(torch.uint8)
    w = torch.rand(2, 7, 50, generator=g)
    assert torch.allclose(spike_currents(x, w, "dense"), spike_currents(x, w, "event"), atol=1e-5)
    per_member = x.unsqueeze(1).expand(5, 2, 6, 50)
    assert torch.allclose(synaptic_currents(per_member, w, "dense")[0], synaptic_currents(per_member, w, "event")[0],
                          atol=1e-5)
    cols, offsets = event_lists(x)
    assert len(cols) == int(x.sum()) and offsets.shape == (30,)
    with pytest.raises(ValueError):
        spike_currents(x, w, "sparse")


def _dyadic(model, bits=10):
    """Round the weights and gamma to multiples of ``2**-bits``: every effective weight and every
    partial sum of currents is then a float32 number exactly (below ``2**24`` units of the
    grid), so dense and event-driven currents are identical whatever the summation order."""
    scale = float(2**bits)
    model.weights = torch.round(model.weights * scale) / scale
    model.gamma = torch.round(model.gamma * scale) / scale
    W = model.effective_weights()
    assert torch.equal(W, torch.round(W * scale) / scale)
    assert float(W.abs().sum(-1).max()) * scale < 2**24
    return model


def _assert_identical(model, a, b):
    assert torch.equal(a.counts, b.counts) and torch.equal(a.first_spike, b.first_spike)
    assert torch.equal(a.v_final, b.v_final) and torch.equal(a.input_spikes, b.input_spikes)
    assert torch.equal(model.column_decision(a), model.column_decision(b))


@pytest.mark.parametrize("per_member", [False, True])
def test_dense_and_event_paths_identical_on_a_dyadic_trained_model(pixel_digits, per_member):
    """Exact by construction: the trained model's weights on a 2**-10 grid. Equal spike counts,
    first-spike steps, final membranes and decisions, so a divergence of the paths (a wrong
    row, a dropped spike, another membrane update) fails here."""
    model, xva = _trained(pixel_digits, 3)
    model = _dyadic(model)
    if per_member:
        spikes = encode(model.rates(xva).unsqueeze(0).expand(3, -1, -1), 32, "bernoulli", seed=2)
    else:
        spikes = model.spikes_for(xva, 32, seed=2)
    dense, event = model.simulate(spikes, method="dense"), model.simulate(spikes, method="event")
    assert dense.counts.sum() > 1000
    _assert_identical(model, dense, event)
    W = model.effective_weights()
    assert torch.equal(synaptic_currents(spikes, W, "dense")[0], synaptic_currents(spikes, W, "event")[0])


def test_dense_and_event_paths_agree_on_a_float_trained_model(pixel_digits):
    """The unmodified float weights: the paths sum in different orders (~1e-6 apart), so only
    a neuron sitting on its threshold may differ; >= 99.9 % of spike counts and decisions agree."""
    model, xva = _trained(pixel_digits, 3)
    spikes = torch.cat([model.spikes_for(xva, 32, seed=s) for s in range(4)], 1)  # 4 x 450 examples
    dense, event = model.simulate(spikes, method="dense"), model.simulate(spikes, method="event")
    assert (dense.counts == event.counts).float().mean() >= 0.999
    assert (model.column_decision(dense) == model.column_decision(event)).float().mean() >= 0.999
    assert torch.equal(dense.input_spikes, event.input_spikes)


def test_int8_model_currents_identical_on_both_paths(pixel_digits):
    """Sums of int8 weights are integers below 127 N < 2**24: exact in float32 in any order, so
    the integer model's currents, spikes and decisions do not depend on the path."""
    from spikebridge.deploy.fixed_point import Int8CoLaNET

    model, xva = _trained(pixel_digits, 3)
    q = Int8CoLaNET.quantise(model)
    spikes = q.spikes_for(xva[:120], 32, seed=3)
    assert torch.equal(q.feedforward(spikes, "dense"), q.feedforward(spikes, "event"))
    dense, event = q.simulate(spikes, "dense"), q.simulate(spikes, "event")
    assert dense.counts.sum() > 300
    assert torch.equal(dense.counts, event.counts) and torch.equal(dense.first_spike, event.first_spike)
    assert torch.equal(q.scores(dense).argmax(1), q.scores(event).argmax(1))


def test_dense_fp32_is_the_default_everywhere(monkeypatch):
    """The library's default gives the same decisions on every machine: ``method=None`` resolves
    to dense and ``bf16=None`` to fp32 unless the environment opts in (issue 21)."""
    import inspect

    from spikebridge import currents
    from spikebridge.deploy.fixed_point import Int8CoLaNET

    for f in (CoLaNET.simulate, CoLaNET.scores_spiking, CoLaNET.spiking_activity, Int8CoLaNET.feedforward,
              Int8CoLaNET.simulate, Int8CoLaNET.predict, spike_currents, synaptic_currents):
        assert inspect.signature(f).parameters["method"].default is None, f
    monkeypatch.delenv(currents.METHOD_ENV, raising=False)
    assert currents.default_method() == "dense" and currents.default_method("event") == "event"
    assert inspect.signature(CoLaNET.simulate).parameters["bf16"].default is None  # the inference default
    assert inspect.signature(CoLaNET.spiking_activity).parameters["bf16"].default is False  # plasticity: fp32


def test_inference_precision_default(monkeypatch):
    """bf16=None: $SPIKEBRIDGE_SIMULATION_PRECISION, fp32 when unset on every CPU; ``auto``
    (opt-in) is bf16 on CPUs with native bf16."""
    from spikebridge import currents
    from spikebridge.errors import SpikebridgeError

    monkeypatch.delenv(currents.PRECISION_ENV, raising=False)
    for native in (True, False):
        monkeypatch.setattr(currents, "cpu_has_native_bf16", lambda native=native: native)
        assert currents.default_bf16() is False and currents.default_bf16(False) is False
        assert currents.default_bf16(True) is True
        monkeypatch.setenv(currents.PRECISION_ENV, "auto")
        assert currents.default_bf16() is native
        monkeypatch.delenv(currents.PRECISION_ENV)
    monkeypatch.setenv(currents.PRECISION_ENV, "bf16")
    assert currents.default_bf16() is True
    monkeypatch.setenv(currents.PRECISION_ENV, "fp32")
    monkeypatch.setattr(currents, "cpu_has_native_bf16", lambda: True)
    assert currents.default_bf16() is False
    monkeypatch.setenv(currents.PRECISION_ENV, "half")
    with pytest.raises(SpikebridgeError, match="SPIKEBRIDGE_SIMULATION_PRECISION='half'"):
        currents.default_bf16()


def test_simulate_default_is_fp32_on_every_machine(pixel_digits, monkeypatch):
    """With the variable unset, ``simulate()`` is bit for bit the fp32 run, also on a CPU with
    native bf16; ``SPIKEBRIDGE_SIMULATION_PRECISION=auto`` opts in to bf16 there."""
    from spikebridge import currents

    monkeypatch.delenv(currents.PRECISION_ENV, raising=False)
    monkeypatch.setattr(currents, "cpu_has_native_bf16", lambda: True)
    model, xva = _trained(pixel_digits, 3)
    spikes = model.spikes_for(xva, 32, seed=1)
    fp32 = model.simulate(spikes, method="dense", bf16=False)
    default = model.simulate(spikes, method="dense")
    assert torch.equal(default.counts, fp32.counts) and torch.equal(default.v_final, fp32.v_final)
    monkeypatch.setenv(currents.PRECISION_ENV, "auto")
    bf16 = model.simulate(spikes, method="dense", bf16=True)
    opted = model.simulate(spikes, method="dense")
    assert torch.equal(opted.counts, bf16.counts) and torch.equal(opted.v_final, bf16.v_final)


def test_lite0_features_dense_and_event_identical_and_agree(digits_features):
    """The same two checks on the real pipeline's features (Lite0, 2560 ON/OFF channels)."""
    train_fs, val_fs = digits_features
    model = CoLaNET(train_fs.features.shape[1], 10, CoLaNETConfig(microcolumns=3, ensemble=2))
    model.fit_normaliser(train_fs.features)
    r, y = model.rates(train_fs.features), torch.as_tensor(train_fs.labels)
    for b in range(0, len(r), 32):
        model.learn(r[b : b + 32], y[b : b + 32])
    model.calibrate(r)
    spikes = model.spikes_for(val_fs.features, 32)
    dense, event = model.simulate(spikes, method="dense"), model.simulate(spikes, method="event")
    assert (dense.counts == event.counts).float().mean() >= 0.999
    assert (model.column_decision(dense) == model.column_decision(event)).float().mean() >= 0.999
    model = _dyadic(model)
    _assert_identical(model, model.simulate(spikes, method="dense"), model.simulate(spikes, method="event"))
