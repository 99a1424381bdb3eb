"""The one LIF population loop and the dense / event-driven currents reproduce the plain
equations (and therefore the loop CoLaNET.simulate ran before they were merged)."""
import pytest
import torch

from spikebridge.coding import encode
from spikebridge.colanet import CoLaNET, CoLaNETConfig
from spikebridge.current_paths import event_lists
from spikebridge.currents import spike_currents, synaptic_currents
from spikebridge.neurons import PopulationParameters, lif_population


def _reference_population(currents, beta, threshold, lateral=0.0, silent=None, reset="subtract", strict=False):
    """Plain loop of the documented equations, the reference the library's population loop
    must reproduce bit for bit: counts, first-spike steps, final membrane and all spikes."""
    K, T, B, J = currents.shape
    theta = threshold.view(K, 1, 1).to(currents.dtype)
    g = lateral * theta
    blocked = torch.zeros(K, 1, J, dtype=torch.bool) if silent is None else silent.view(K, 1, J)
    v = torch.zeros(K, B, J, dtype=currents.dtype)
    counts, prev = torch.zeros_like(v), torch.zeros_like(v)
    first = torch.full_like(v, float(T + 1))
    spikes = torch.zeros(T, K, B, J, dtype=currents.dtype)
    for t in range(T):
        v = beta * v + currents[:, t]
        if lateral:
            v = v - g * (prev.sum(-1, keepdim=True) - prev)
        s = ((v > theta) if strict else (v >= theta)) & ~blocked
        sf = s.to(v.dtype)
        v = v - theta * sf if reset == "subtract" else v * (1 - sf)
        counts += sf
        first = torch.where(s & (first > T), torch.full_like(first, t + 1.0), first)
        spikes[t] = prev = sf
    return counts, first, v, spikes


@pytest.mark.parametrize("lateral", [0.0, 2.0])
@pytest.mark.parametrize("with_silent", [False, True])
@pytest.mark.parametrize("reset,strict", [("subtract", False), ("zero", True)])
def test_population_bit_identical(lateral, with_silent, reset, strict):
    g = torch.Generator().manual_seed(0)
    currents = torch.randn(2, 20, 7, 9, generator=g)
    theta = torch.tensor([0.7, 1.3])
    silent = (torch.rand(2, 9, generator=g) < 0.3) if with_silent else None
    ref = _reference_population(currents, 0.9, theta, lateral, silent, reset, strict)
    rec = lif_population(currents, PopulationParameters(0.9, theta, lateral, reset, strict, silent), keep_spikes=True)
    for a, b in zip(ref, rec):
        assert torch.equal(a, b)


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
    counts, first, v, raster = _reference_population(currents, model.config.beta, model.threshold,
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
