"""Accuracy table: every local rule vs tuned backprop references on the same features.

    python benchmarks/accuracy.py --dataset ../shared/datasets/imagenet64     # the 64-class task, 3 seeds
    python benchmarks/accuracy.py --dataset ../shared/datasets/imagenette
    python benchmarks/accuracy.py --dataset digits
    python benchmarks/accuracy.py --quick ...         # 1 seed, no ensemble, T in {8, 32}
    python benchmarks/accuracy.py --encoder efficientnet_lite1 --rows probe,colanet ...
    python benchmarks/accuracy.py --precision int8 --rows probe,colanet,single-pass ...   # int8 encoder (NNCF)

Rows: the references of :mod:`spikebridge.baselines` (``tuned_logistic``: C chosen by 3-fold
CV on train; logistic C = 1; a one-hidden-layer MLP with early stopping; nearest class mean),
CoLaNET with the shipped (adaptive) defaults as a single model, as the seed's ensemble of 15,
and in a single pass; R-STDP, supervised STDP, Diehl & Cook. Spiking rows report top-1 and
top-5 at each T (spiking simulation, deterministic coder), mean and std over seeds. Writes
``benchmarks/results/accuracy_<dataset>[_<encoder>][_<precision>].json`` stamped with the machine
(``--quick``: the same name under ``benchmarks/results/quick/``; ``--precision int8``: the encoder
quantised by NNCF, calibrated on ``--calibration-images`` train images; the calibration is
recorded in the file).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from spikebridge.baselines import logistic_baseline, mlp_baseline, nearest_class_mean, topk_accuracy, tuned_logistic
from spikebridge.colanet import CoLaNETConfig
from spikebridge.currents import PRECISION_ENV
from spikebridge.data import open_dataset
from spikebridge.encoders import create_encoder
from spikebridge.features import DEFAULT_CACHE, extract_features
from spikebridge.report import machine_info
from spikebridge.learner import create_learner
from spikebridge.training import train

from harness import ROOT, result_path

OTHER_RULES = [("rstdp", "R-STDP"), ("sstdp", "supervised STDP"), ("diehl-cook", "Diehl & Cook STDP+WTA")]
ALL_ROWS = "probe,colanet,ensemble,single-pass,rules"


def features_for(dataset: str, encoder_name: str, cache: Path, precision: str = "fp32", **calibration):
    splits = open_dataset(dataset)
    enc = create_encoder(encoder_name, device="cpu", precision=precision, **calibration)
    # train first: an int8 encoder calibrates on it
    tr, va = (extract_features(ds, enc, cache, progress=False) for ds in (splits.train, splits.val))
    return tr, va, splits.classes


def spiking_row(rule, tr, va, seed, steps_list, *, ensemble=1, single_pass=False) -> dict:
    t0 = time.perf_counter()
    colanet = CoLaNETConfig(ensemble=ensemble) if rule == "colanet" else None
    learner = create_learner(rule, tr.features.shape[1], len(np.unique(tr.labels)), seed=seed, config=colanet)
    learner, history = train(learner, tr.features, tr.labels, epochs=1 if single_pass else None, progress=False)
    out = {"train_seconds": time.perf_counter() - t0, "epochs": history["epochs_planned"], "top1": {}, "top5": {}}
    for T in steps_list:
        scores, spikes = learner.scores(va.features, T)
        out["top1"][str(T)] = topk_accuracy(scores, va.labels, 1)
        out["top5"][str(T)] = topk_accuracy(scores, va.labels, 5)
        out.setdefault("input_spikes", {})[str(T)] = spikes["input_spikes"]
    if rule == "colanet":
        out["continuous_top1"] = float((learner.predict_continuous(va.features).numpy() == va.labels).mean())
        out["microcolumns"] = learner.model.config.microcolumns
    return out


def summarise(runs: list[dict]) -> dict:
    """Mean and std over seeds of every number in the runs (nested by T)."""
    def agg(values):
        return {"mean": float(np.mean(values)), "std": float(np.std(values)), "runs": [float(v) for v in values]}

    out = {}
    for key, first in runs[0].items():
        if isinstance(first, dict):
            out[key] = {t: agg([r[key][t] for r in runs]) for t in first}
        elif isinstance(first, (int, float)):
            out[key] = agg([r[key] for r in runs])
    return out


def fmt(cell) -> str:
    if cell is None:
        return "-"
    m, s, n = 100 * cell["mean"], 100 * cell["std"], len(cell["runs"])
    return f"{m:.2f} ± {s:.2f}" if n > 1 else f"{m:.2f}"


def table(result: dict, steps: list[int]) -> str:
    lines = ["| method | " + " | ".join(f"T={T}" for T in steps) + " | top-5 (T=32 or ref.) | train s |",
             "|" + " --- |" * (len(steps) + 3)]
    for name, row in result["rows"].items():
        if "top1" in row and isinstance(row["top1"], dict) and "mean" not in row["top1"]:
            cells = [fmt(row["top1"].get(str(T))) for T in steps]
            t5 = fmt(row["top5"].get("32") or row["top5"][str(steps[-1])])
        else:
            cells = [fmt(row["top1"])] * len(steps)
            t5 = fmt(row.get("top5"))
        secs = f"{row['train_seconds']['mean']:.1f}" if "train_seconds" in row else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {t5} | {secs} |")
    return "\n".join(lines)


def main(argv=None):
    # published accuracy: the fp32 simulation every CPU reproduces (spikebridge.currents.default_bf16);
    # set here, not at import, because other benchmarks import this module's helpers
    os.environ.setdefault(PRECISION_ENV, "fp32")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "datasets" / "imagenet64"))
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                    help="encoder arithmetic (int8: NNCF post-training quantisation, pip install spikebridge[int8])")
    ap.add_argument("--calibration-images", type=int, default=None, help="int8: train images to calibrate on (default 300)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--rows", default=ALL_ROWS, help=f"comma-separated subset of {ALL_ROWS}")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--quick", action="store_true", help="1 seed, T in {8, 32}, no ensemble")
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default: benchmarks/results/accuracy_<name>.json; --quick: under results/quick/)")
    ap.add_argument("--fresh", action="store_true", help="replace the results file instead of merging rows into it")
    args = ap.parse_args(argv)
    rows_wanted = set(args.rows.split(","))
    if args.quick:
        args.seeds, args.steps = 1, [8, 32]
        rows_wanted.discard("ensemble")
    calibration = {"calibration_images": args.calibration_images} if args.calibration_images is not None else {}
    tr, va, classes = features_for(args.dataset, args.encoder, args.cache_dir, args.precision, **calibration)
    name = "digits" if args.dataset == "digits" else Path(args.dataset.split(":")[-1]).name
    rows: dict = {}
    if "probe" in rows_wanted:
        print("references (C by 3-fold CV on train) ...", flush=True)
        rows["tuned_logistic"] = tuned_logistic(tr.features, tr.labels, va.features, va.labels)
        rows["logistic C=1"] = logistic_baseline(tr.features, tr.labels, va.features, va.labels)
        rows["MLP (1 hidden layer, early stopping)"] = mlp_baseline(tr.features, tr.labels, va.features, va.labels)
        rows["nearest class mean"] = nearest_class_mean(tr.features, tr.labels, va.features, va.labels)
        for key in list(rows):
            r = rows[key]
            rows[key] = {**r, "top1": {"mean": r["top1"], "std": 0.0, "runs": [r["top1"]]},
                         "top5": {"mean": r["top5"], "std": 0.0, "runs": [r["top5"]]},
                         "train_seconds": {"mean": r["train_seconds"], "std": 0.0, "runs": [r["train_seconds"]]}}
    jobs = []
    if "colanet" in rows_wanted:
        jobs.append(("CoLaNET (spiking)", "colanet", {}))
    if "ensemble" in rows_wanted:
        jobs.append(("CoLaNET ensemble of 15 (spiking)", "colanet", {"ensemble": 15}))
    if "single-pass" in rows_wanted:
        jobs.append(("CoLaNET single pass (spiking)", "colanet", {"single_pass": True}))
    if "rules" in rows_wanted:
        jobs += [(f"{label} (spiking)", rule, {}) for rule, label in OTHER_RULES]
    for label, rule, kw in jobs:
        runs = [spiking_row(rule, tr, va, seed, args.steps, **kw)
                for seed in tqdm(range(args.seeds), desc=label, leave=False)]
        rows[label] = {**summarise(runs), "seeds": args.seeds}
        print(f"{label}: top-1 T=32 {fmt(rows[label]['top1'].get('32'))}", flush=True)
    suffix = ("" if args.encoder == "efficientnet_lite0" else f"_{args.encoder}") + (
        "" if args.precision == "fp32" else f"_{args.precision}")
    out = result_path(f"accuracy_{name}{suffix}.json", args.quick, args.out)
    if out.is_file() and not args.fresh:  # rows run separately (--rows) are merged into one file
        previous = json.loads(out.read_text())
        if previous.get("steps") == args.steps:  # each row records its own seed count
            rows = {**previous["rows"], **rows}
    result = {"dataset": args.dataset, "name": name, "encoder": args.encoder, "precision": args.precision,
              **({"calibration": tr.info["encoder"]["calibration"]} if args.precision == "int8" else {}),
              "n_classes": len(classes),
              "n_train": len(tr), "n_val": len(va), "steps": args.steps,
              "seeds": max([r.get("seeds", 1) for r in rows.values()] + [args.seeds]),  # per row: rows[...]["seeds"]
              "machine": machine_info(), "rows": rows}
    if "tuned_logistic" in rows and "CoLaNET (spiking)" in rows:
        probe = rows["tuned_logistic"]["top1"]["mean"]
        result["gap_to_tuned_logistic_points"] = {
            label: 100 * (rows[label]["top1"]["32"]["mean"] - probe)
            for label in rows if label.startswith("CoLaNET") and "32" in rows[label]["top1"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\n### {args.encoder} ({args.precision}) on {name} ({len(tr)} train / {len(va)} val, {args.seeds} seed(s))\n")
    print(table(result, args.steps))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
