"""The dense / event crossover (forced, cached per machine, measured once), the exactness of
integer currents on both paths, and the bf16 option."""
import json
import math

import pytest
import torch

from spikebridge import crossover as autotuner
from spikebridge import current_paths, currents
from spikebridge.colanet import CoLaNET, CoLaNETConfig
from spikebridge.crossover import CROSSOVER_ENV, crossover_from_curve, event_crossover, measure_crossover
from spikebridge.currents import resolve_method, spike_currents, synaptic_currents
from spikebridge.precision_comparison import compare_precision
from spikebridge.errors import SpikebridgeError

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
