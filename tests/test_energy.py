import argparse
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from spikebridge.cli.energy import add_energy_command
from spikebridge.energy import (DEFAULT_PJ_AC, DEFAULT_PJ_MAC, ann_head_macs, count_macs, encoder_macs, energy_report,
                                format_energy, learner_ops, report_rows, spiking_synops)
from spikebridge.errors import SpikebridgeError
from spikebridge.features import extract_features


def test_flop_counter_matches_hand_count_on_tiny_conv_linear_model():
    H = W = 10
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=True),  # 8 x 10 x 10 outputs, 3*3*3 MACs each
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),  # depthwise: 8 x 5 x 5 outputs, 9 MACs each
        nn.Conv2d(8, 16, 1),  # pointwise: 16 x 5 x 5 outputs, 8 MACs each
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 7),  # 400 x 7
    )
    hand = 8 * H * W * 27 + 8 * 5 * 5 * 9 + 16 * 5 * 5 * 8 + 400 * 7
    assert count_macs(net, torch.zeros(1, 3, H, W)) == hand
    assert encoder_macs(net, (3, H, W)) == hand
    assert count_macs(net, torch.zeros(2, 3, H, W)) == 2 * hand  # linear in the batch


def test_encoder_macs_need_an_input_size():
    with pytest.raises(SpikebridgeError):
        encoder_macs(nn.Linear(3, 2))
    with pytest.raises(SpikebridgeError):
        encoder_macs(nn.Linear(3, 2), (3, 0, 1))


def test_lite0_macs_full_vs_cut(lite0):
    from spikebridge.encoders import create_encoder

    full = encoder_macs(lite0)
    # EfficientNet-Lite0 at 224 x 224: ~0.39 G MACs of convolutions (classifier removed)
    assert 3.5e8 < full < 4.2e8
    cut = create_encoder(cut=3, device="cpu")
    macs_cut = encoder_macs(cut)
    assert 0 < macs_cut < 0.8 * full
    assert cut.feature_dim == 112


def test_ann_head_macs():
    assert ann_head_macs(1280, 10) == 12_800
    assert ann_head_macs(1280, 10, hidden=(256,)) == 1280 * 256 + 256 * 10
    with pytest.raises(SpikebridgeError):
        ann_head_macs(0, 10)


def test_energy_arithmetic_defaults_and_overrides():
    ops = spiking_synops(input_spikes=100.0, output_spikes=4.0, fan_out=40.0, lateral_fan_out=39.0,
                         steps=32, neurons=40, n_features=128)
    assert ops.synops == 100 * 40 + 4 * 39
    assert ops.neuron_updates == 32 * 40 and ops.coder_ops == 32 * 128
    rep = energy_report(1e6, 1280.0, ops)
    assert rep["pj_per_mac"] == DEFAULT_PJ_MAC == 4.6 and rep["pj_per_ac"] == DEFAULT_PJ_AC == 0.9
    assert rep["encoder"]["pJ"] == pytest.approx(4.6e6)
    assert rep["ann_head"]["pJ"] == pytest.approx(1280 * 4.6)
    head = (4156 + 32 * 128) * 0.9 + 32 * 40 * 4.6
    assert rep["snn_head"]["pJ"] == pytest.approx(head)
    assert rep["snn_pipeline_pJ"] == pytest.approx(4.6e6 + head)
    assert rep["ann_pipeline_pJ"] == pytest.approx(4.6e6 + 1280 * 4.6)
    assert rep["encoder_share_snn"] == pytest.approx(4.6e6 / (4.6e6 + head))
    assert rep["dominant"] == "encoder"
    cheap = energy_report(1e6, 1280.0, ops, pj_mac=1.0, pj_ac=0.5)
    assert cheap["encoder"]["pJ"] == pytest.approx(1e6)
    assert cheap["snn_head"]["pJ"] == pytest.approx((4156 + 32 * 128) * 0.5 + 32 * 40 * 1.0)
    # a tiny encoder: the spiking head dominates
    assert energy_report(10.0, 10.0, ops)["dominant"] == "spiking head"
    assert energy_report(10.0, 100.0)["dominant"] == "ANN head"
    labels = [k for k, _ in report_rows(rep)]
    assert "dominant part" in labels and "SNN head SynOps / inference" in labels
    assert format_energy(4.6e6) == "4.6 uJ" and format_energy(12.0) == "12 pJ" and format_energy(2.5e9) == "2.5 mJ"


def test_int8_encoder_energy_preset():
    """Horowitz 2014, 45 nm: int8 MAC = 0.2 pJ multiply + 0.03 pJ add; the encoder can be priced
    apart from the heads (an int8 encoder in front of fp32 heads)."""
    from spikebridge.energy import INT8_PJ_AC, INT8_PJ_MAC, INT8_SOURCE

    assert INT8_PJ_MAC == 0.23 and INT8_PJ_AC == 0.03 and "8-bit" in INT8_SOURCE
    ops = spiking_synops(100.0, 4.0, 40.0, 39.0, steps=32, neurons=40, n_features=128)
    fp32 = energy_report(1e6, 1280.0, ops)
    mixed = energy_report(1e6, 1280.0, ops, pj_mac_encoder=INT8_PJ_MAC)
    assert mixed["encoder"]["pJ"] == pytest.approx(0.23e6) and mixed["pj_per_encoder_mac"] == INT8_PJ_MAC
    assert mixed["snn_head"]["pJ"] == pytest.approx(fp32["snn_head"]["pJ"])  # heads keep their own price
    assert mixed["ann_head"]["pJ"] == pytest.approx(fp32["ann_head"]["pJ"])
    assert fp32["encoder"]["pJ"] / mixed["encoder"]["pJ"] == pytest.approx(4.6 / 0.23)
    assert any("0.23 pJ/MAC" in k for k, _ in report_rows(mixed))
    with pytest.raises(SpikebridgeError):
        energy_report(1.0, 1.0, pj_mac_encoder=-0.1)


def test_energy_rejects_bad_input():
    with pytest.raises(SpikebridgeError):
        energy_report(1.0, 1.0, pj_mac=-1)
    with pytest.raises(SpikebridgeError):
        energy_report(-1.0, 1.0)
    with pytest.raises(SpikebridgeError):
        spiking_synops(-1.0, 0.0, 1.0, 1.0)


@pytest.fixture
def one_thread():
    """Small-tensor loops: one intra-op thread (on a loaded 2-core machine, OpenMP's spinning
    makes them up to 100x slower with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _trained_colanet(pixel_digits, steps=16):
    from spikebridge import create_learner, train

    xtr, xva, ytr, yva = pixel_digits
    learner = create_learner("colanet", xtr.shape[1], 10, steps=steps)
    learner, _ = train(learner, xtr, ytr, epochs=1, batch_size=16, progress=False)
    return learner, xva[:120], yva[:120]


def test_synops_consistent_with_spike_counts(pixel_digits, one_thread):
    from spikebridge.current_paths import event_lists
    from spikebridge.report import evaluate

    steps = 16
    learner, xva, yva = _trained_colanet(pixel_digits, steps)
    model = learner.model
    metrics = evaluate(learner, xva, yva, [str(c) for c in range(10)], steps, steps_sweep=())
    ops, scores = learner_ops(learner, xva, steps)
    # independent count: simulate and count input events and output spikes directly
    spikes = model.spikes_for(xva, steps)
    rec = model.simulate(spikes)
    n = len(xva)
    events, _ = event_lists(spikes)
    assert len(events) == int(spikes.sum())
    in_per_inf = len(events) / n
    out_per_inf = float(rec.counts.sum()) / n
    fan_out = float(model.active.sum())  # every recruited plastic neuron receives every input spike
    lateral = float(model.active.sum() - 1)  # K = 1: a spike inhibits every other recruited neuron
    direct = in_per_inf * fan_out + out_per_inf * lateral
    assert ops.input_spikes == pytest.approx(in_per_inf)
    assert ops.output_spikes == pytest.approx(out_per_inf)
    assert ops.synops == pytest.approx(direct)
    assert metrics["synops_per_inference"] == pytest.approx(direct)
    assert ops.neuron_updates == steps * model.active.sum().item()
    assert ops.coder_ops == steps * xva.shape[1]
    assert scores.shape == (n, 10)
    # spikes scale with T: twice the steps, about twice the input events
    ops2, _ = learner_ops(learner, xva, 2 * steps)
    assert ops2.input_spikes == pytest.approx(2 * ops.input_spikes, rel=0.05)


def test_energy_command_registers_and_rejects_bad_input(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="spikebridge")
    sub = parser.add_subparsers(dest="command", required=True)
    add_energy_command(sub)
    args = parser.parse_args(["energy", "--model", str(tmp_path / "missing.safetensors")])
    assert args.pj_mac == DEFAULT_PJ_MAC and args.pj_ac == DEFAULT_PJ_AC
    with pytest.raises(SpikebridgeError, match="model file not found"):
        args.func(args)
    args = parser.parse_args(["energy", "--model", "x", "--pj-mac", "-2"])
    with pytest.raises(SpikebridgeError, match="pj"):
        args.func(args)


@pytest.mark.parametrize("flag, value, expected", [
    ("--pj-mac", "nan", "--pj-mac must be a finite number (got nan)"),
    ("--pj-ac", "inf", "--pj-ac must be a finite number (got inf)"),
    ("--pj-ac", "-1", "--pj-ac must be >= 0.0 (got -1.0)"),
])
def test_energy_refuses_per_operation_energies_that_print_nan(flag, value, expected, tmp_path):
    """Per-operation energies that would print NaN energies (--pj-mac nan, ...) are refused."""
    parser = argparse.ArgumentParser(prog="spikebridge")
    add_energy_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["energy", "--model", str(tmp_path / "never-read.safetensors"), flag, value])
    with pytest.raises(SpikebridgeError) as info:
        args.func(args)
    assert str(info.value) == expected  # before the model is even looked for


def test_energy_command_end_to_end_on_digits_pixels(tmp_path, pixel_digits, capsys, monkeypatch, one_thread):
    """The command on a model trained on raw digit pixels, with the encoder and features faked
    (the real encoder path is covered by test_lite0_macs_full_vs_cut)."""
    import json

    import spikebridge.data as data
    import spikebridge.encoders as encoders
    import spikebridge.features as features
    from spikebridge.io import save_tensors

    learner, xva, yva = _trained_colanet(pixel_digits, 8)
    meta = {**learner.metadata(), "classes": [str(c) for c in range(10)],
            "encoder": {"encoder": "tiny", "cut": None}}
    save_tensors(tmp_path / "model.safetensors", learner.tensors(), meta)

    class Splits:
        classes = [str(c) for c in range(10)]
        val = None

    class FakeEncoder:
        feature_dim = 64
        net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64))
        data_config = {"input_size": (3, 8, 8)}

    class FS:
        features, labels = xva, yva

    monkeypatch.setattr(data, "open_dataset", lambda spec, max_per_class=None: Splits())
    monkeypatch.setattr(encoders, "create_encoder", lambda *a, **k: FakeEncoder())
    monkeypatch.setattr(features, "extract_features", lambda *a, **k: FS())
    parser = argparse.ArgumentParser()
    add_energy_command(parser.add_subparsers(dest="command"))
    out = tmp_path / "energy.json"
    args = parser.parse_args(["energy", "--model", str(tmp_path / "model.safetensors"), "--json", str(out), "--pj-ac", "0.5"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "SNN head SynOps / inference" in text and "dominant part" in text
    rep = json.loads(out.read_text())
    assert rep["encoder"]["macs"] == 3 * 8 * 8 * 64 and rep["ann_head"]["macs"] == 640
    assert rep["pj_per_ac"] == 0.5 and rep["steps"] == 8
    assert math.isclose(rep["snn_head"]["pJ_parts"]["synops"], 0.5 * rep["snn_head"]["synops"])
    # a model trained on another encoder is refused with one line
    args = parser.parse_args(["energy", "--model", str(tmp_path / "model.safetensors"), "--encoder", "other"])
    with pytest.raises(SpikebridgeError, match="trained on features of tiny"):
        args.func(args)
    assert np.isfinite(rep["top1_spiking"])


# ------------------------------------------------------------------ energy's sample
def test_energy_sample_is_stratified_and_seeded():
    from spikebridge.energy import stratified_sample

    labels = np.repeat(np.arange(10), [300, 50, 50, 100, 100, 100, 100, 100, 50, 50])  # class-ordered
    rows = stratified_sample(labels, 200, seed=0)
    assert len(rows) == 200 and len(set(rows.tolist())) == 200 and (np.diff(rows) > 0).all()
    counts = np.bincount(labels[rows], minlength=10)
    assert counts.tolist() == [60, 10, 10, 20, 20, 20, 20, 20, 10, 10]
    assert stratified_sample(labels, 200, seed=0).tolist() == rows.tolist()
    assert stratified_sample(labels, 200, seed=1).tolist() != rows.tolist()
    assert stratified_sample(labels, 5000).tolist() == list(range(len(labels)))


def test_energy_reports_which_examples_it_simulated(tmp_path, pixel_digits, capsys, monkeypatch):
    import argparse

    import spikebridge.data as data
    import spikebridge.encoders as encoders
    import spikebridge.features as features
    from torch import nn

    from spikebridge.io import save_tensors
    from spikebridge.cli.energy import add_energy_command
    from spikebridge import create_learner, train

    xt, xv, yt, yv = pixel_digits
    order = np.argsort(yv, kind="stable")  # class-ordered, like an ImageFolder val split
    xv, yv = xv[order], yv[order]
    learner, _ = train(create_learner("colanet", 64, 10, steps=8), xt, yt, epochs=1, progress=False)
    save_tensors(tmp_path / "model.safetensors", learner.tensors(),
                 {**learner.metadata(), "classes": [str(c) for c in range(10)], "encoder": {"encoder": "tiny", "cut": None}})

    class Splits:
        classes = [str(c) for c in range(10)]
        val = None

    class FakeEncoder:  # the encoder path is covered by test_energy; here: which val rows are simulated
        feature_dim = 64
        net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64))
        data_config = {"input_size": (3, 8, 8)}

    class FS:
        features, labels = xv, yv

    monkeypatch.setattr(data, "open_dataset", lambda spec, max_per_class=None: Splits())
    monkeypatch.setattr(encoders, "create_encoder", lambda *a, **k: FakeEncoder())
    monkeypatch.setattr(features, "extract_features", lambda *a, **k: FS())
    parser = argparse.ArgumentParser()
    add_energy_command(parser.add_subparsers(dest="command"))
    out = tmp_path / "e.json"
    args = parser.parse_args(["energy", "--model", str(tmp_path / "model.safetensors"), "--json", str(out)])
    assert args.func(args) == 0
    assert f"whole val split ({len(yv)} examples)" in capsys.readouterr().out
    assert json.loads(out.read_text())["examples"] == len(yv)
    args = parser.parse_args(["energy", "--model", str(tmp_path / "model.safetensors"), "--json", str(out),
                              "--max-examples", "100", "--seed", "3"])
    assert args.func(args) == 0
    assert f"class-stratified sample of 100 of {len(yv)} val examples (seed 3)" in capsys.readouterr().out
    assert json.loads(out.read_text())["examples"] == 100
