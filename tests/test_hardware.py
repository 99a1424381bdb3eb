"""Hardware limits: core counts of hand-made shapes (worked out by hand below) and fit reports."""

import pytest
import torch

from spikebridge import create_learner, train
from spikebridge.colanet import CoLaNETConfig
from spikebridge.deploy.fixed_point import Int8CoLaNET
from spikebridge.deploy.hardware import CHIPS, ModelShape, fit_all, fit_report, model_shape, speck_layer_memory, \
    truenorth_cores
from spikebridge.errors import SpikebridgeError

IMAGENETTE = ModelShape(inputs=2560, members=(50,), classes=10, weight_bits=8, lateral=True)


def test_truenorth_small_layer_fits_one_core():
    # 100 inputs x 1 copy = 100 axons <= 256, 10 neurons <= 256, no lateral: one core, no merge, no splitter
    plan = truenorth_cores(ModelShape(100, (10,), 10, lateral=False), copies=1)
    assert (plan["slices"], plan["partial"], plan["merge"], plan["splitter"], plan["total"]) == (1, 0, 1, 0, 1)


def test_truenorth_split_and_merge_counts():
    # 4 copies: S = ceil(4 * 2560 / 256) = 40 slices of partial neurons (50 <= 256 per core) -> 40 cores;
    # a merge core: floor((256 - 50 lateral axons) / 40) = 5 neurons -> ceil(50 / 5) = 10 cores;
    # each spike to 10 merge cores + output: 50 * 11 = 550 splitter neurons -> ceil(550 / 256) = 3 cores
    plan = truenorth_cores(IMAGENETTE, copies=4)
    assert (plan["slices"], plan["partial"], plan["merge"], plan["splitter"], plan["total"]) == (40, 40, 10, 3, 53)
    # 1 copy: S = 10; floor(206 / 10) = 20 per merge core -> 3; 50 * 4 = 200 splitters -> 1 core
    plan = truenorth_cores(IMAGENETTE, copies=1)
    assert (plan["slices"], plan["partial"], plan["merge"], plan["splitter"], plan["total"]) == (10, 10, 3, 1, 14)


def test_truenorth_ensemble_members_on_their_own_cores():
    # members of 10 and 12 neurons, 100 inputs: 100 + 10 and 100 + 12 axons fit one core each;
    # spikes go to 1 core + output: 20 and 24 splitter neurons, one splitter core per member
    plan = truenorth_cores(ModelShape(100, (10, 12), 10, lateral=True), copies=1)
    assert (plan["merge"], plan["splitter"], plan["total"]) == (2, 2, 4)


def test_truenorth_rejects_impossible_fan_in():
    shape = ModelShape(300 * 256, (10,), 10, lateral=False)
    assert truenorth_cores(shape, copies=1)["total"] is None  # 300 slices > 256 axons of a merge core
    fit = fit_all(shape)["truenorth"]
    assert not fit.fits and fit.cores is None
    assert "fan-in 76800 > 256 axons per core" in fit.reasons
    with pytest.raises(SpikebridgeError, match="copies"):
        truenorth_cores(shape, copies=5)


def test_speck_layer_memory_formula():
    # sinabs' memory model: kernel c * 2^(ceil log2(kx ky) + ceil log2 f), neurons f * 2^(ceil log2 h + ceil log2 w)
    assert speck_layer_memory(2, 8, kernel=(3, 3), out_size=(32, 32)) == (2 * 2 ** (4 + 3), 8 * 2 ** (5 + 5))
    assert speck_layer_memory(2560, 50) == (2560 * 64, 50)


def test_speck_split_by_neurons():
    fit = fit_all(IMAGENETTE)["speck"]
    assert not fit.fits
    assert any("kernel memory 2560 x 2^6 = 160 Ki words > 64 Ki" in r for r in fit.reasons)
    assert any("recurrent" in r for r in fit.reasons)
    # 64 Ki / 2560 = 25.6 -> 16 neurons (cores 5, 6), 32 Ki -> 8 (cores 3, 4), 16 Ki -> 4: 16+16+8+8+4 >= 50
    assert fit.detail["neurons_per_core_split"] == [16, 16, 8, 8, 4, 4, 4, 4, 4]
    assert fit.cores == 5
    small = fit_all(ModelShape(100, (10,), 10, lateral=False))["speck"]
    assert small.cores == 1 and not any("kernel" in r for r in small.reasons)  # 100 * 16 words fit a core
    huge = fit_all(ModelShape(70_000, (10,), 10, lateral=False))["speck"]
    assert huge.cores is None  # one input channel per neuron already exceeds every core


def test_loihi2_counts_cores_by_synaptic_memory():
    fit = fit_all(IMAGENETTE)["loihi2"]
    # 2560 * 50 + 50 * 49 = 130,450 synapses x 8 bits = 1,043,600 bits > 937,500 per core -> 2 cores
    assert fit.fits and fit.cores == 2 and fit.detail["synapses"] == 130_450
    big = fit_all(ModelShape(256, (8192 * 130,), 10, lateral=False))["loihi2"]
    assert not big.fits and any("> 128 per chip" in r for r in big.reasons)
    wide = fit_all(ModelShape(200_000, (10,), 10, lateral=False))["loihi2"]
    assert not wide.fits and wide.cores is None and any("fan-in" in r for r in wide.reasons)


def test_xylo_limits():
    fits = fit_all(IMAGENETTE)
    assert "2560 input channels > 16" in fits["xylo_audio2"].reasons
    assert any("10 classes > 8 output neurons" in r for r in fits["xylo_audio2"].reasons)
    assert not any("classes" in r for r in fits["xylo_imu"].reasons)  # 16 output neurons on Xylo IMU
    imu = fit_all(ModelShape(16, (200,), 4, lateral=True))["xylo_imu"]
    assert any("200 neurons receive input > 128" in r for r in imu.reasons)


@pytest.fixture(scope="module")
def small_ensemble(pixel_digits):
    xt, _, yt, _ = pixel_digits
    learner = create_learner("colanet", xt.shape[1], 10, config=CoLaNETConfig(ensemble=2, microcolumns=2))
    return train(learner, xt[:400], yt[:400], epochs=1, batch_size=64, progress=False)[0].model


def test_fit_report_of_a_trained_model(small_ensemble):
    model = small_ensemble
    shape = model_shape(model)
    assert shape.inputs == model.n_channels == 128
    assert shape.members == tuple(int(n) for n in model.active.sum(1)) and shape.lateral
    assert model_shape(Int8CoLaNET.quantise(model)) == shape
    lines = fit_report(model)
    assert len(lines) == 1 + len(CHIPS)
    assert lines[0].startswith(f"hardware fit of 128 inputs -> {shape.neurons} LIF neurons (2 member(s)")
    assert all(c.name in "\n".join(lines) for c in CHIPS.values())
    assert "Xylo Audio 2 (SYNS61201) [Rockpool]: does not fit as exported: 128 input channels > 16" in lines[2]
    with pytest.raises(SpikebridgeError, match="not Tensor"):
        fit_report(torch.zeros(3))
