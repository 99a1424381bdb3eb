"""Compute and energy per inference: the encoder that runs, an ANN head, and the spiking head.

Counts (per image, one inference):

* **Encoder MACs** -- multiply-accumulates of the convolution and matrix layers of the part
  of the encoder that runs (``cut`` prunes the later stages), counted by
  `FlopCounterMode` on one image of the encoder's input
  size (``MACs = FLOPs / 2``). Element-wise work (batch norm, activations, pooling) is not
  counted; for EfficientNet-Lite0 it is about 1 % of the convolution MACs.
* **ANN head MACs** -- a dense classifier on the same features: ``n_features x n_classes``
  (the logistic-regression baseline) plus any hidden layers.
* **SNN head operations** -- synaptic operations (SynOps) = input spikes x feedforward
  fan-out (recruited plastic neurons over all ensemble members) + output spikes x lateral
  fan-out; each is one accumulate (AC), a weight added to a membrane. Also listed and
  charged: the membrane updates (``T x neurons``, one multiply-add each for the leak, as
  MACs) and the rate coder (``T x n_features`` accumulates, ``phase += a``).

Energy = MACs x ``pj_mac`` + ACs x ``pj_ac``. Defaults are Horowitz (ISSCC 2014), 45 nm CMOS,
32-bit floating point: 3.7 pJ multiply + 0.9 pJ add = **4.6 pJ per MAC**, **0.9 pJ per AC**.
For an int8 encoder (``--precision int8``) the same table gives 0.2 pJ per 8-bit multiply +
0.03 pJ per 8-bit add = **0.23 pJ per int8 MAC** (`INT8_PJ_MAC`; ``pj_mac_encoder`` of
[`energy_report()`][spikebridge.energy.energy_report]) and 0.03 pJ per int8 accumulate (`INT8_PJ_AC`).
These are arithmetic-only figures: memory traffic (a 32-bit DRAM read costs ~640 pJ in the
same table) is not modelled, which flatters every part equally per operation but ignores
that the sparse spiking head reads one weight per SynOp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SpikebridgeError

if TYPE_CHECKING:  # torch is imported where it is used, so registering the CLI command stays cheap
    import torch
    from torch import nn

DEFAULT_PJ_MAC = 4.6
DEFAULT_PJ_AC = 0.9
ENERGY_SOURCE = "Horowitz, ISSCC 2014, 45 nm CMOS, 32-bit float: MAC = 3.7 pJ mult + 0.9 pJ add; AC = 0.9 pJ add"
INT8_PJ_MAC = 0.23
INT8_PJ_AC = 0.03
INT8_SOURCE = "Horowitz, ISSCC 2014, 45 nm CMOS, 8-bit integer: MAC = 0.2 pJ mult + 0.03 pJ add; AC = 0.03 pJ add"


# ---------------------------------------------------------------------------------- counts
def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """MACs of one forward pass of ``module`` on ``inputs`` (torch's FLOP counter / 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(*inputs)
    return int(counter.get_total_flops()) // 2


def encoder_macs(encoder, input_size: tuple[int, int, int] | None = None) -> int:
    """MACs per image of the part of ``encoder`` that runs (an `Encoder`
    or a plain module). ``input_size`` ``(C, H, W)`` defaults to the encoder's data config."""
    import torch

    net = getattr(encoder, "net", encoder)
    if input_size is None:
        cfg = getattr(encoder, "data_config", None)
        if not cfg or "input_size" not in cfg:
            raise SpikebridgeError("input_size is needed for a module without a timm data config")
        input_size = tuple(cfg["input_size"])
    if len(input_size) != 3 or min(input_size) < 1:
        raise SpikebridgeError(f"input_size must be (channels, height, width), not {input_size}")
    param = next(net.parameters(), None)
    x = torch.zeros(1, *input_size, device=param.device if param is not None else "cpu")
    return count_macs(net.eval(), x)


def ann_head_macs(n_features: int, n_classes: int, hidden: tuple[int, ...] = ()) -> int:
    """MACs of a dense ANN head ``n_features -> hidden... -> n_classes`` (biases not counted)."""
    sizes = [int(n_features), *map(int, hidden), int(n_classes)]
    if min(sizes) < 1:
        raise SpikebridgeError(f"layer sizes must be positive, got {sizes}")
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


@dataclass
class SpikingOps:
    """Operations of the spiking head per inference."""

    input_spikes: float
    output_spikes: float
    synops: float  # accumulates: input spikes x fan-out + output spikes x lateral fan-out
    neuron_updates: float  # membrane leak multiply-adds: T x neurons
    coder_ops: float  # rate coder accumulates: T x n_features

    @property
    def accumulates(self) -> float:
        return self.synops + self.coder_ops


def spiking_synops(input_spikes: float, output_spikes: float, fan_out: float, lateral_fan_out: float,
                   steps: int = 0, neurons: int = 0, n_features: int = 0) -> SpikingOps:
    """Spiking-head operations from spike counts per inference (e.g. the
    ``input_spikes_per_inference`` / ``output_spikes_per_inference`` of
    `evaluate()`) and fan-outs (``learner.synaptic_fan_out()``)."""
    values = (input_spikes, output_spikes, fan_out, lateral_fan_out, steps, neurons, n_features)
    if min(values) < 0:
        raise SpikebridgeError("spike counts, fan-outs, steps and sizes must be >= 0")
    synops = input_spikes * fan_out + output_spikes * lateral_fan_out
    return SpikingOps(float(input_spikes), float(output_spikes), float(synops), float(steps * neurons),
                      float(steps * n_features))


def learner_ops(learner, features, steps: int, max_examples: int | None = None) -> tuple[SpikingOps, torch.Tensor]:
    """Simulate ``learner`` on ``features`` for ``steps`` and count its operations per inference.
    Returns ``(ops, scores)``."""
    import numpy as np

    x = np.asarray(features)[:max_examples] if max_examples else np.asarray(features)
    if len(x) == 0:
        raise SpikebridgeError("no examples to count spikes on")
    scores, spikes = learner.scores(x, steps)
    fan_out, lateral = learner.synaptic_fan_out()
    neurons = int(learner.n_neurons())  # simulated neurons (CoLaNET: the recruited ones)
    return spiking_synops(spikes["input_spikes"], spikes["output_spikes"], fan_out, lateral, steps, neurons,
                          x.shape[1]), scores


def stratified_sample(labels, n: int, seed: int = 0):
    """Sorted indices of ``n`` of ``labels``' rows, drawn without replacement with a seeded
    generator, with every class represented in proportion (largest remainders get the rest)."""
    import numpy as np

    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(labels)
    take = np.floor(quota).astype(int)
    for c in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[c] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def balanced_sample(labels, size: int, seed: int = 0):
    """``size`` row indices of ``labels``, ``size // C`` of every class (the remainder to randomly
    chosen classes), drawn without replacement with a seeded generator, in shuffled order."""
    import numpy as np

    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = np.full(len(classes), size // len(classes))
    per[rng.choice(len(classes), size % len(classes), replace=False)] += 1
    idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in zip(classes, per)])
    return rng.permutation(idx)


# ---------------------------------------------------------------------------------- energy
def energy_report(encoder_mac_count: float, ann_head_mac_count: float, spiking: SpikingOps | None = None,
                  pj_mac: float = DEFAULT_PJ_MAC, pj_ac: float = DEFAULT_PJ_AC, pj_mac_encoder: float | None = None) -> dict:
    """Energy per inference of each part (pJ) and of the two pipelines.

    ``ann pipeline`` = encoder + ANN head; ``snn pipeline`` = encoder + spiking head (SynOps
    and coder at ``pj_ac``, membrane updates at ``pj_mac``). ``pj_mac_encoder``: the encoder's
    MACs at another price than the heads' (e.g. `INT8_PJ_MAC` for an int8 encoder);
    default ``pj_mac``.
    """
    pj_enc = pj_mac if pj_mac_encoder is None else pj_mac_encoder
    if pj_mac < 0 or pj_ac < 0 or pj_enc < 0:
        raise SpikebridgeError(f"energy per operation must be >= 0 (got {pj_mac} pJ/MAC, {pj_ac} pJ/AC, "
                               f"{pj_enc} pJ/encoder MAC)")
    if encoder_mac_count < 0 or ann_head_mac_count < 0:
        raise SpikebridgeError("MAC counts must be >= 0")
    out = {
        "pj_per_mac": pj_mac,
        "pj_per_ac": pj_ac,
        "source": ENERGY_SOURCE,
        "pj_per_encoder_mac": pj_enc,
        "encoder": {"macs": float(encoder_mac_count), "pJ": encoder_mac_count * pj_enc},
        "ann_head": {"macs": float(ann_head_mac_count), "pJ": ann_head_mac_count * pj_mac},
    }
    out["ann_pipeline_pJ"] = out["encoder"]["pJ"] + out["ann_head"]["pJ"]
    if spiking is not None:
        parts = {"synops": spiking.synops * pj_ac, "coder": spiking.coder_ops * pj_ac,
                 "membrane": spiking.neuron_updates * pj_mac}
        out["snn_head"] = {"input_spikes": spiking.input_spikes, "output_spikes": spiking.output_spikes,
                           "synops": spiking.synops, "coder_acs": spiking.coder_ops,
                           "membrane_macs": spiking.neuron_updates, "pJ_parts": parts, "pJ": sum(parts.values())}
        out["snn_pipeline_pJ"] = out["encoder"]["pJ"] + out["snn_head"]["pJ"]
        total = out["snn_pipeline_pJ"]
        out["encoder_share_snn"] = out["encoder"]["pJ"] / total if total > 0 else 0.0
        out["snn_head_vs_ann_head"] = (out["snn_head"]["pJ"] / out["ann_head"]["pJ"]) if out["ann_head"]["pJ"] > 0 else None
        parts_all = {"encoder": out["encoder"]["pJ"], "spiking head": out["snn_head"]["pJ"]}
    else:
        total = out["ann_pipeline_pJ"]
        out["encoder_share_ann"] = out["encoder"]["pJ"] / total if total > 0 else 0.0
        parts_all = {"encoder": out["encoder"]["pJ"], "ANN head": out["ann_head"]["pJ"]}
    out["dominant"] = max(parts_all, key=parts_all.get)
    return out


def format_energy(pj: float) -> str:
    """Human units for an energy given in pJ."""
    for unit, scale in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def report_rows(rep: dict) -> list[tuple[str, str]]:
    """Table rows (name, value) of an [`energy_report()`][spikebridge.energy.energy_report]."""
    rows = [("encoder MACs / inference", f"{rep['encoder']['macs']:.4g}"),
            ("ANN head MACs / inference", f"{rep['ann_head']['macs']:.4g}")]
    if "snn_head" in rep:
        s = rep["snn_head"]
        rows += [("SNN head input spikes / inference", f"{s['input_spikes']:.4g}"),
                 ("SNN head output spikes / inference", f"{s['output_spikes']:.4g}"),
                 ("SNN head SynOps / inference", f"{s['synops']:.4g}"),
                 ("SNN head membrane updates (MACs)", f"{s['membrane_macs']:.4g}"),
                 ("SNN head rate-coder ACs", f"{s['coder_acs']:.4g}")]
    rows += [(f"energy: encoder ({rep.get('pj_per_encoder_mac', rep['pj_per_mac'])} pJ/MAC)", format_energy(rep["encoder"]["pJ"])),
             ("energy: ANN head", format_energy(rep["ann_head"]["pJ"]))]
    if "snn_head" in rep:
        rows += [(f"energy: SNN head ({rep['pj_per_ac']} pJ/AC)", format_energy(rep["snn_head"]["pJ"])),
                 ("energy: encoder + ANN head", format_energy(rep["ann_pipeline_pJ"])),
                 ("energy: encoder + SNN head", format_energy(rep["snn_pipeline_pJ"])),
                 ("encoder share of the SNN pipeline", f"{100 * rep['encoder_share_snn']:.3f} %"),
                 ("SNN head / ANN head energy", f"{rep['snn_head_vs_ann_head']:.3g} x"
                  if rep.get("snn_head_vs_ann_head") is not None else "-")]
    else:
        rows.append(("energy: encoder + ANN head", format_energy(rep["ann_pipeline_pJ"])))
    rows.append(("dominant part", rep["dominant"]))
    return rows
