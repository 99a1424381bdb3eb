"""Accuracy table: every local rule vs backprop and nearest-class-mean on the same features.

    python benchmarks/accuracy.py                      # Imagenette, Lite0, 3 seeds
    python benchmarks/accuracy.py --quick              # 1 seed, T in {8, 32}
    python benchmarks/accuracy.py --dataset imagenet64:/data/ILSVRC2012 --max-per-class 600
    python benchmarks/accuracy.py --encoder efficientnet_lite0 --encoder efficientnet_b3   # b3 needs a network once

Prints a Markdown table (mean +- std over seeds) and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from spikebridge.data import open_dataset
from spikebridge.encoders import create_encoder
from spikebridge.features import DEFAULT_CACHE, extract_features
from spikebridge.report import logistic_baseline, nearest_class_mean, topk_accuracy
from spikebridge.train import DEFAULT_EPOCHS, make_learner, train

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "imagenette"
RULES = [("colanet", "CoLaNET"), ("rstdp", "R-STDP"), ("sstdp", "supervised STDP"), ("diehl-cook", "Diehl & Cook STDP+WTA")]


def features_for(dataset: str, encoder_name: str, cache: Path, max_per_class):
    splits = open_dataset(dataset, max_per_class)
    enc = create_encoder(encoder_name)
    tr, va = (extract_features(ds, enc, cache) for ds in (splits.train, splits.val))
    return tr, va, splits.classes


def run_rule(rule, tr, va, seed, epochs, steps_list, fan_steps, batch, single_pass=False):
    t0 = time.perf_counter()
    learner = make_learner(rule, tr.features.shape[1], len(np.unique(tr.labels)), seed=seed, steps=fan_steps)
    learner, _ = train(learner, tr.features, tr.labels, epochs=1 if single_pass else epochs,
                       batch_size=batch, progress=False)
    seconds = time.perf_counter() - t0
    out = {"train_seconds": seconds, "top1": {}}
    for T in steps_list:
        scores, spikes = learner.scores(va.features, T)
        out["top1"][T] = topk_accuracy(scores, va.labels, 1)
        if T == fan_steps:
            fan_in, fan_lat = learner.synaptic_fan_out()
            out["spikes"] = spikes["input_spikes"] + spikes["output_spikes"]
            out["synops"] = spikes["input_spikes"] * fan_in + spikes["output_spikes"] * fan_lat
    if rule == "colanet":
        cont = learner.predict_continuous(va.features).numpy()
        out["continuous_top1"] = float((cont == va.labels).mean())
    return out


def fmt(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}" if len(values) > 1 else f"{100 * values[0]:.2f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(DEFAULT_DATA))
    ap.add_argument("--max-per-class", type=int, default=None)
    ap.add_argument("--encoder", action="append", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--quick", action="store_true", help="1 seed, T in {8, 32}: a few minutes")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "accuracy.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.steps = 1, [8, 32]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {}
    for enc_name in args.encoder or ["efficientnet_lite0"]:
        tr, va, classes = features_for(args.dataset, enc_name, args.cache_dir, args.max_per_class)
        rows = {}
        lr = logistic_baseline(tr.features, tr.labels, va.features, va.labels)
        rows["logistic regression (backprop)"] = {"top1": [lr["top1"]], "train_seconds": [lr["train_seconds"]]}
        rows["nearest class mean"] = {"top1": [nearest_class_mean(tr.features, tr.labels, va.features, va.labels)["top1"]]}
        jobs = [(rule, name, seed) for rule, name in RULES for seed in range(args.seeds)]
        for rule, name, seed in tqdm(jobs, desc=f"rules x seeds ({enc_name})"):
            r = run_rule(rule, tr, va, seed, args.epochs, args.steps, 32 if 32 in args.steps else args.steps[-1], args.train_batch)
            row = rows.setdefault(f"{name} (spiking)", {"by_T": {T: [] for T in args.steps}, "train_seconds": [], "spikes": [], "synops": []})
            for T, acc in r["top1"].items():
                row["by_T"][T].append(acc)
            for k in ("train_seconds", "spikes", "synops"):
                row[k].append(r.get(k))
            if "continuous_top1" in r:
                rows.setdefault("CoLaNET (continuous approx.)", {"top1": [], "train_seconds": []})["top1"].append(r["continuous_top1"])
        results[enc_name] = {"dataset": args.dataset, "n_train": len(tr), "n_val": len(va), "rows": rows}
        header = "| method | " + " | ".join(f"T={T}" for T in args.steps) + " | train s | spikes/inf | SynOps/inf |"
        print(f"\n### {enc_name} on {Path(args.dataset).name} ({len(tr)} train / {len(va)} val, {args.seeds} seed(s))\n")
        print(header)
        print("|" + " --- |" * (len(args.steps) + 4))
        for name, row in rows.items():
            if "by_T" in row:
                cells = [fmt(row["by_T"][T]) for T in args.steps]
            else:
                cells = [fmt(row["top1"])] * len(args.steps)
            secs = f"{np.mean(row['train_seconds']):.1f}" if row.get("train_seconds") else "-"
            spikes = f"{np.mean(row['spikes']):.0f}" if row.get("spikes") else "-"
            synops = f"{np.mean(row['synops']):.3g}" if row.get("synops") else "-"
            print(f"| {name} | " + " | ".join(cells) + f" | {secs} | {spikes} | {synops} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
