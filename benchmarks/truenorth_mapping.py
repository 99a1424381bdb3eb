r"""Accuracy of the TrueNorth mapping of :mod:`spikebridge.deploy.hardware` (simulated here: no
TrueNorth toolchain or chip is available), step by step, on the full val splits.

    python benchmarks/truenorth_mapping.py                          # Imagenette + imagenet64
    python benchmarks/truenorth_mapping.py --datasets digits

CoLaNET trained with the library defaults (seed 0, T = 32, mini-batch 16). Each row changes one
more thing of the float network (``W - gamma``, our decay, one-step-late lateral inhibition,
subtractive reset) towards the mapping, all on the same input spikes:

* ``reference``: our network as is (sanity row: agrees with ``CoLaNET.predict_spiking``);
* ``levels``: every input on ``c = 4`` axons, one per axon type, each neuron one signed weight per
  type: a neuron's weights take ``{0, s_1..s_4}``, ``s`` fitted per neuron by Lloyd's algorithm
  (the zero level pinned) on its own weights, each weight rounded to the nearest level;
* ``split``: + the fan-in split into ``S = ceil(c N / 256)`` slices of ``256 / c`` inputs; a partial
  neuron per (neuron, slice) integrates its slice's input with no leak (its membrane may go
  negative, TrueNorth's negative threshold left open) and spikes ``v_p >= theta_p`` (one spike per step,
  ``v_p -= theta_p``); the merge neuron (the LIF with lateral inhibition) receives ``theta_p`` per partial
  spike one step later. ``theta_p`` per neuron: the 99th percentile of its positive per-step
  partial inputs on 512 train examples;
* ``split_linear_leak``: + TrueNorth's linear leak instead of the multiplicative one: ``v`` moves
  ``lambda = (1 - beta) theta`` towards 0 each step (leak reversal, not past 0).

Agreement: the same decision as our spiking model (``CoLaNET.predict_spiking``), by the same
readout (counts, first spikes, final membrane). Writes benchmarks/results/truenorth.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spikebridge.currents import PRECISION_ENV

os.environ.setdefault(PRECISION_ENV, "fp32")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

COPIES = 4  # axon types: weight levels per neuron
AXONS = 256
PERCENTILE = 0.99


def weight_levels(w: torch.Tensor, levels: int = COPIES, iters: int = 30) -> torch.Tensor:
    """Per row of ``w [J, N]``: each weight rounded to the nearest of ``{0, s_1..s_levels}``, the
    ``s`` fitted by Lloyd's algorithm with 0 pinned (started at the row's quantiles)."""
    w = w.double()
    q = torch.linspace(0.5 / levels, 1 - 0.5 / levels, levels, dtype=torch.float64)
    s = torch.quantile(w, q, dim=1).T.contiguous()  # [J, levels]
    for _ in range(iters):
        cent = torch.cat([torch.zeros(len(w), 1, dtype=w.dtype), s], 1)
        idx = (w.unsqueeze(-1) - cent.unsqueeze(1)).abs().argmin(-1)  # [J, N], 0 = the zero level
        for k in range(levels):
            m = idx == k + 1
            n = m.sum(1)
            s[:, k] = torch.where(n > 0, (w * m).sum(1) / n.clamp_min(1), s[:, k])
    cent = torch.cat([torch.zeros(len(w), 1, dtype=w.dtype), s], 1)
    idx = (w.unsqueeze(-1) - cent.unsqueeze(1)).abs().argmin(-1)
    return torch.gather(cent, 1, idx).to(torch.float32)


def slices_of(n: int) -> tuple[int, int]:
    per = AXONS // COPIES
    return math.ceil(COPIES * n / AXONS), per


def partial_inputs(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``[T, B, J, S]`` per-slice synaptic sums of spikes ``x [T, B, N]``."""
    T, B, N = x.shape
    S, per = slices_of(N)
    pad = S * per - N
    xs = torch.nn.functional.pad(x.float(), (0, pad)).view(T, B, S, per)
    ws = torch.nn.functional.pad(w, (0, pad)).view(len(w), S, per)
    return torch.einsum("tbsp,jsp->tbjs", xs, ws)


def simulate(net, x: torch.Tensor, w: torch.Tensor, theta_p: torch.Tensor | None, linear_leak: bool):
    """Counts, 1-based first spikes, final v ``[B, J]`` of the merge LIF (module docstring)."""
    T, B, _ = x.shape
    J = len(w)
    theta = net.threshold[net.member].double()
    lateral = net.lateral[net.member].double()
    same = (net.member.view(-1, 1) == net.member.view(1, -1)).double() - torch.eye(J, dtype=torch.float64)
    if theta_p is None:
        cur = (x.float().reshape(T * B, -1) @ w.T).view(T, B, J).double()
    else:
        part = partial_inputs(x, w).double()
        vp = torch.zeros(part.shape[1:], dtype=torch.float64)
        cur = torch.zeros(T, B, J, dtype=torch.float64)
        tp = theta_p.double().view(1, J, 1)
        for t in range(T - 1):  # a partial spike at t reaches the merge neuron at t + 1
            vp = vp + part[t]
            sp = vp >= tp
            vp = vp - tp * sp
            cur[t + 1] = (sp.double() * tp).sum(-1)
    lam = (1 - net.beta) * theta
    v = torch.zeros(B, J, dtype=torch.float64)
    prev = torch.zeros(B, J, dtype=torch.float64)
    counts = torch.zeros(B, J, dtype=torch.int64)
    first = torch.full((B, J), T + 1, dtype=torch.int64)
    for t in range(T):
        leaked = torch.sign(v) * (v.abs() - lam).clamp_min(0) if linear_leak else net.beta * v
        v = leaked + cur[t] - lateral * (prev @ same)
        s = v >= theta
        v = v - theta * s
        counts += s
        first = torch.where(s & (first > T), torch.full_like(first, t + 1), first)
        prev = s.double()
    return counts, first, v


def one(name: str, args) -> dict:
    from lava_deploy import features, train_colanet

    from spikebridge.deploy.fixed_point import Int8CoLaNET
    from spikebridge.deploy.network import network_of, readout_scores

    tr, va, _ = features(name, args.cache_dir)
    model, train_s = train_colanet(tr, args.steps, args.seed, args.train_batch)
    net = network_of(model)
    spikes_of = Int8CoLaNET.quantise(model).spikes_for  # the model's own coder and normaliser
    y = torch.as_tensor(va.labels)
    ours = model.predict_spiking(va.features, args.steps)
    wl = weight_levels(net.weights)
    calib = partial_inputs(spikes_of(tr.features[:: max(1, len(tr.features) // 512)][:512]), wl)
    pos = calib.permute(2, 0, 1, 3).reshape(len(wl), -1)
    theta_p = torch.stack([torch.quantile(r[r > 0].double(), PERCENTILE) if bool((r > 0).any()) else torch.ones((), dtype=torch.float64)
                           for r in pos]).float()
    S, per = slices_of(net.weights.shape[1])
    variants = {"reference": (net.weights, None, False), "levels": (wl, None, False), "split": (wl, theta_p, False),
                "split_linear_leak": (wl, theta_p, True)}
    out = {"n_val": len(y), "neurons": len(wl), "inputs": int(net.weights.shape[1]), "slices": S,
           "inputs_per_slice": per, "train_seconds": train_s, "spiking_top1": float((ours == y).double().mean()),
           "theta_p_over_theta": float((theta_p / net.threshold[net.member]).mean()), "variants": {}}
    for key, (w, tp, lin) in variants.items():
        t0 = time.perf_counter()
        preds = []
        for b in range(0, len(y), args.batch):
            counts, first, v = simulate(net, spikes_of(va.features[b : b + args.batch], seed=b), w, tp, lin)
            preds.append(readout_scores(counts, first, net, args.steps, v).argmax(1))
        pred = torch.cat(preds)
        out["variants"][key] = {"top1": float((pred == y).double().mean()),
                                "agreement": float((pred == ours).double().mean()), "seconds": time.perf_counter() - t0}
        print(f"{name} {key}: top-1 {100 * out['variants'][key]['top1']:.2f} % (ours {100 * out['spiking_top1']:.2f} %), "
              f"agreement {100 * out['variants'][key]['agreement']:.2f} %", flush=True)
    return out


def main(argv=None) -> int:
    from spikebridge.features import DEFAULT_CACHE
    from spikebridge.io import write_json_atomic
    from spikebridge.report import machine_info

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["imagenette", "imagenet64"], choices=["digits", "imagenette", "imagenet64"])
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "truenorth.json")
    args = ap.parse_args(argv)
    for name in args.datasets:
        entry = one(name, args)
        entry["command"] = " ".join(["python benchmarks/truenorth_mapping.py", *(argv if argv is not None else sys.argv[1:])])
        result = json.loads(args.out.read_text()) if args.out.is_file() else {}
        result.setdefault("datasets", {})[name] = entry
        result.update(machine=machine_info(), copies=COPIES, axons_per_core=AXONS, theta_p_percentile=PERCENTILE)
        write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
