"""bf16 against fp32 on a CoLaNET model: speed of each current path and agreement of decisions."""

from __future__ import annotations

import functools
import time
from typing import Callable

import torch

from .current_paths import spike_density
from .currents import resolve_method, synaptic_currents
from .timing import time_interleaved


@torch.no_grad()
def precision_agreement(model, spikes: torch.Tensor) -> dict:
    """bf16 against fp32 on each path (``"dense"``, ``"event"``) of a CoLaNET ``model``: the
    fraction of examples whose decision (``model.column_decision``) agrees, and of neurons
    (member, example, neuron) whose spike count and first-spike step agree."""
    out = {"examples": int(spikes.shape[-2])}
    for path in ("dense", "event"):
        ref, low = model.simulate(spikes, method=path), model.simulate(spikes, method=path, bf16=True)
        out[path] = {"decisions": float((model.column_decision(ref) == model.column_decision(low)).float().mean()),
                     "counts": float((ref.counts == low.counts).float().mean()),
                     "first_spike": float((ref.first_spike == low.first_spike).float().mean())}
    return out


@torch.no_grad()
def compare_precision(model, spikes: torch.Tensor, repeats: int = 3,
                      timer: Callable[[], float] = time.perf_counter) -> dict:
    """Speed and agreement of bf16 against fp32 on a CoLaNET ``model`` and its input ``spikes``.

    For each path and precision the minimum seconds over ``repeats`` interleaved rounds of
    the currents alone and of ``model.simulate``; the agreement of `precision_agreement()`.
    ``bf16_recommended``: the path ``"auto"`` takes for these spikes is faster in bf16 and at
    least 99.9 % of its decisions agree."""
    weights = model.effective_weights()
    precisions = {"float32": False, "bfloat16": True}
    calls = {}
    for path in ("dense", "event"):
        for name, bf16 in precisions.items():
            calls[("currents", path, name)] = functools.partial(synaptic_currents, spikes, weights, path, bf16=bf16)
            calls[("simulate", path, name)] = functools.partial(model.simulate, spikes, method=path, bf16=bf16)
    best = time_interleaved(calls, repeats, timer)
    density = spike_density(spikes)
    K, J, _ = weights.shape
    auto = resolve_method(spikes, "auto", K * J if spikes.dim() == 3 else J, density)
    agreement = precision_agreement(model, spikes)
    out = {"input_density": density, "examples": agreement.pop("examples"), "repeats": repeats,
           "threads": torch.get_num_threads(), "auto_path": auto, "agreement": agreement,
           "currents_s": {p: {n: best[("currents", p, n)] for n in precisions} for p in ("dense", "event")},
           "simulate_s": {p: {n: best[("simulate", p, n)] for n in precisions} for p in ("dense", "event")}}
    out["bf16_recommended"] = bool(out["simulate_s"][auto]["bfloat16"] < out["simulate_s"][auto]["float32"]
                                   and agreement[auto]["decisions"] >= 0.999)
    return out
