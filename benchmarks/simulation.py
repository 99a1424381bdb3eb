"""Simulation paths on this machine: the dense / event-driven crossover, and fp32 vs bf16.

    python benchmarks/simulation.py           # a few minutes (2 min with --repeats 1 on 2 shared cores)
    python benchmarks/simulation.py --quick   # ~20-30 s with cached features: a smoke run, not a result

Records (``benchmarks/results/simulation.json``; ``--quick``: ``benchmarks/results/quick/simulation.json``),
stamped with :func:`spikebridge.report.machine_info`:

* ``crossover``: :func:`spikebridge.crossover.measure_crossover` in fp32 and bf16, at the shapes
  ``method="auto"`` measures (``CROSSOVER_SHAPES``: T=32, B=64, 1280 inputs, 64 and 640
  neurons) and at B=256 with 640 neurons (full run only): the curve (densities, dense and
  event seconds) and the crossover density; and the points ``auto`` interpolates between in
  this process (:func:`spikebridge.crossover.machine_crossovers`: from the cache or measured
  now, unless ``SPIKEBRIDGE_EVENT_CROSSOVER`` forces one value; ``--remember`` first caches
  this run's curves at ``CROSSOVER_SHAPES`` as this machine's).
* ``precision``: a CoLaNET trained on cached EfficientNet-Lite0 features of Imagenette
  (``features_for`` of ``benchmarks/accuracy.py``; shipped defaults, adaptive epochs; quick:
  2,000 training examples, one pass), then on one batch of val (1,024; quick: 256)
  :func:`spikebridge.precision_comparison.compare_precision` (seconds of currents and of
  ``CoLaNET.simulate`` per path and precision, agreement, ``bf16_recommended``), and on all
  of val (quick: 256) :func:`spikebridge.precision_comparison.precision_agreement` and the top-1 of the
  ``auto`` path in fp32 and bf16; the same on each ``--agreement-datasets`` (default the
  64-class set) in ``precision_val_by_dataset``.

Time it alone on the machine: the timings of a machine shared with other jobs are not the
machine's. bf16 stays off by default unless it is faster on the ``auto`` path and at least
99.9 % of decisions agree (``bf16_recommended``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spikebridge.crossover import (CROSSOVER_DENSITIES, CROSSOVER_ENV, CROSSOVER_SHAPES, event_crossover,
                                   machine_crossovers, measure_crossover, remember_crossovers)
from spikebridge.current_paths import spike_density
from spikebridge.currents import resolve_method
from spikebridge.precision_comparison import compare_precision, precision_agreement
from spikebridge.features import DEFAULT_CACHE
from spikebridge.io import write_json_atomic
from spikebridge.learner import create_learner
from spikebridge.report import machine_info
from spikebridge.training import train

from harness import ROOT, result_path

BATCH = 1024  # examples per simulation (CoLaNET.scores_spiking's batch)


def crossover_curves(shapes, repeats: int) -> dict:
    out = {}
    for name, bf16 in (("float32", False), ("bfloat16", True)):
        out[name] = []
        for shape in shapes:
            t0 = time.perf_counter()
            out[name].append(measure_crossover(CROSSOVER_DENSITIES, shape, repeats, bf16=bf16))
            print(f"crossover {name} {shape}: {out[name][-1]['crossover']:.3f} ({time.perf_counter() - t0:.1f} s)")
    return out


def trained_model(dataset: str, cache: Path, n_train: int | None, epochs: int | None, seed: int):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from accuracy import features_for

    tr, va, _ = features_for(dataset, "efficientnet_lite0", cache)
    x, y = tr.features, tr.labels
    if n_train is not None and n_train < len(y):
        pick = np.random.default_rng(seed).permutation(len(y))[:n_train]
        x, y = x[pick], y[pick]
    learner = create_learner("colanet", x.shape[1], len(np.unique(tr.labels)), seed=seed)
    t0 = time.perf_counter()
    learner, history = train(learner, x, y, epochs=epochs, progress=False)
    info = {"dataset": dataset, "encoder": "efficientnet_lite0", "n_train": int(len(y)), "n_val": int(len(va.labels)),
            "epochs": history["epochs_planned"], "train_seconds": time.perf_counter() - t0,
            "microcolumns": learner.model.config.microcolumns, "neurons": int(learner.model.active.sum()),
            "channels": learner.model.n_channels}
    return learner.model, va, info


def val_agreement(model, features, labels, steps: int) -> dict:
    """precision_agreement over all of ``features`` (batches of BATCH), and top-1 of the path
    ``auto`` takes, in fp32 and bf16."""
    totals, n, hits, density = {}, 0, {"float32": 0, "bfloat16": 0}, 0.0
    for b in range(0, len(labels), BATCH):
        spikes = model.spikes_for(features[b : b + BATCH], steps)
        part = precision_agreement(model, spikes)
        for path in ("dense", "event"):
            for key, value in part[path].items():
                totals.setdefault(path, {}).setdefault(key, 0.0)
                totals[path][key] += value * part["examples"]
        auto = resolve_method(spikes, "auto", model.weights.shape[0] * model.weights.shape[1])
        truth = torch.as_tensor(labels[b : b + BATCH])
        for name, bf16 in (("float32", False), ("bfloat16", True)):
            decision = model.column_decision(model.simulate(spikes, method=auto, bf16=bf16))
            hits[name] += int((decision == truth).sum())
        density += spike_density(spikes) * part["examples"]
        n += part["examples"]
    return {"examples": n, "input_density": density / n,
            **{path: {k: v / n for k, v in d.items()} for path, d in totals.items()},
            "top1_auto_path": {name: h / n for name, h in hits.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 repeat, one shape, 2,000 training and 256 val examples")
    p.add_argument("--dataset", default=str(ROOT.parent / "shared" / "datasets" / "imagenette"))
    p.add_argument("--agreement-datasets", nargs="*",
                   default=[str(ROOT.parent / "shared" / "datasets" / "imagenet64")],
                   help="further data sets on which a CoLaNET is trained and bf16 decisions are compared with fp32 "
                        "over all of val (default: the 64-class set; none in --quick)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="feature cache (default: $SPIKEBRIDGE_CACHE)")
    p.add_argument("--repeats", type=int, default=None, help="timing repeats (default: 5; quick: 1)")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="result file (default: benchmarks/results/simulation.json; --quick: benchmarks/results/quick/simulation.json)")
    p.add_argument("--remember", action="store_true",
                   help="cache this run's crossovers at CROSSOVER_SHAPES as the ones method='auto' uses on this machine")
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats must be >= 1, not {args.repeats}")
    repeats = args.repeats or (1 if args.quick else 5)
    out_path = result_path("simulation.json", args.quick, args.out)
    t_start = time.perf_counter()
    record = {"benchmark": "simulation", "quick": args.quick, "machine": machine_info(), "repeats": repeats}

    T, B, N, neurons = CROSSOVER_SHAPES[-1]
    shapes = list(CROSSOVER_SHAPES) + ([] if args.quick else [(T, 256, N, neurons)])
    record["crossover"] = crossover_curves(shapes, repeats)
    if args.remember:
        for name in ("float32", "bfloat16"):
            remember_crossovers(record["crossover"][name][: len(CROSSOVER_SHAPES)])
    forced = os.environ.get(CROSSOVER_ENV)
    record["auto_crossover"] = {"forced_by": CROSSOVER_ENV if forced is not None else None}
    if forced is None:  # the (neurons, crossover) points auto interpolates between
        record["auto_crossover"].update(float32=machine_crossovers(), bfloat16=machine_crossovers(bf16=True))

    model, va, info = trained_model(args.dataset, args.cache_dir, 2000 if args.quick else None,
                                    1 if args.quick else None, args.seed)
    record["model"] = info
    K, J, _ = model.weights.shape
    info["auto_crossover"] = {"float32": event_crossover(K * J), "bfloat16": event_crossover(K * J, bf16=True)}
    print(f"trained on {info['n_train']} examples, {info['epochs']} epoch(s), {info['train_seconds']:.1f} s")
    n_val = 256 if args.quick else len(va.labels)
    batch = min(BATCH, n_val)
    spikes = model.spikes_for(va.features[:batch], args.steps)
    record["precision"] = compare_precision(model, spikes, repeats)
    record["precision_val"] = val_agreement(model, va.features[:n_val], va.labels[:n_val], args.steps)
    # bf16 inference (opt-in: spikebridge.currents.default_bf16) must hold beyond one data set
    record["precision_val_by_dataset"] = {Path(args.dataset).name: {"model": info, **record["precision_val"]}}
    for other in ([] if args.quick else args.agreement_datasets):
        m, v, i = trained_model(other, args.cache_dir, None, None, args.seed)
        record["precision_val_by_dataset"][Path(other).name] = {"model": i, **val_agreement(m, v.features, v.labels, args.steps)}
        a = record["precision_val_by_dataset"][Path(other).name]
        print(f"{Path(other).name}: bf16 vs fp32 decisions agree {a['dense']['decisions']:.4f} (dense), top-1 "
              f"{a['top1_auto_path']}")
    record["seconds"] = time.perf_counter() - t_start
    write_json_atomic(out_path, record)
    prec, agree = record["precision"], record["precision_val"]
    print(f"auto path at density {prec['input_density']:.3f}: {prec['auto_path']}; simulate s "
          f"{prec['simulate_s']}; decisions agree (val) dense {agree['dense']['decisions']:.4f} "
          f"event {agree['event']['decisions']:.4f}; bf16_recommended {prec['bf16_recommended']}")
    print(f"wrote {out_path} ({record['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
