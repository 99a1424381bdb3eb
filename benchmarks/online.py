"""Ensembles, online single-pass learning and class-incremental learning on Imagenette.

    python benchmarks/online.py            # full: 3 seeds
    python benchmarks/online.py --quick    # 1 seed

Rows: multi-epoch vs single-pass (each training example seen once, ``CoLaNET.partial_fit``),
single instance vs ensembles (K members trained side by side in one batched computation);
then the class-incremental check: train on 8 classes, add 2 columns (``add_classes``) and
learn them from their own examples only, and report the accuracy on the first 8 classes
before and after, for unprotected old columns, frozen ones, and frozen ones with prototype
replay (the default; see ``CoLaNET.replay_prototypes``). Writes benchmarks/results/online.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from spikebridge.colanet import CoLaNET, CoLaNETConfig
from spikebridge.learner import create_learner
from spikebridge.colanet import adaptive_epochs
from spikebridge.train import DEFAULT_TRAIN_BATCH, train
from spikebridge.currents import PRECISION_ENV

# published accuracy: the fp32 simulation every CPU reproduces (spikebridge.currents.default_bf16)
os.environ.setdefault(PRECISION_ENV, "fp32")

ROOT = Path(__file__).resolve().parent.parent
sys_path_bench = ROOT / "benchmarks"


def load(args):
    import sys

    sys.path.insert(0, str(sys_path_bench))
    from accuracy import features_for

    if args.train and args.val:
        from spikebridge.features import load_features

        return load_features(args.train), load_features(args.val)
    tr, va, _ = features_for(args.dataset, "efficientnet_lite0", args.cache_dir)
    return tr, va


def acc(pred, y):
    return float((np.asarray(pred) == np.asarray(y)).mean())


def main(argv=None):
    from spikebridge.features import DEFAULT_CACHE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "datasets" / "imagenette"))
    ap.add_argument("--train", type=Path, default=None, help="cached train feature folder (skips extraction)")
    ap.add_argument("--val", type=Path, default=None, help="cached val feature folder")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--config", type=Path, default=None, help="CoLaNET config JSON (from spikebridge tune)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--members", type=int, nargs="+", default=[1, 5, 15], help="ensemble sizes K (default: 1 5 15)")
    ap.add_argument("--incremental-only", action="store_true",
                    help="run only the class-incremental check; keep the other rows of --out")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "online.json")
    args = ap.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    tr, va = load(args)
    x, y, xv, yv = tr.features, tr.labels, va.features, va.labels
    base = json.loads(args.config.read_text())["colanet"] if args.config else {}
    schedule = json.loads(args.config.read_text()).get("train", {}) if args.config else {}
    # None: the adaptive default of train(); partial_fit loops below use the same count
    epochs, batch = schedule.get("epochs"), schedule.get("train_batch", DEFAULT_TRAIN_BATCH)
    rows = {}
    jobs = [(mode, K, s) for mode in ("multi-epoch", "single-pass") for K in args.members for s in range(seeds)]
    if args.incremental_only:
        jobs, rows = [], json.loads(args.out.read_text())["rows"] if args.out.is_file() else {}
    for mode, K, seed in tqdm(jobs, desc="ensembles x modes x seeds"):
        cfg = CoLaNETConfig(**{**base, "ensemble": K, "seed": seed})
        t0 = time.perf_counter()
        if mode == "multi-epoch":
            learner, _ = train(create_learner("colanet", x.shape[1], 10, seed=seed, steps=cfg.steps, config=cfg), x, y,
                               epochs=epochs, batch_size=batch, progress=False)
            model = learner.model
        else:
            model = CoLaNET(x.shape[1], 10, cfg)
            model.fit_normaliser(x)  # normalisation statistics only; no plasticity
            order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).numpy()
            model.partial_fit(x[order], y[order], batch_size=1)
        secs = time.perf_counter() - t0
        row = rows.setdefault(f"{mode}, K={K}", {"spiking": [], "continuous": [], "train_seconds": []})
        row["spiking"].append(acc(model.predict_spiking(xv), yv))
        row["continuous"].append(acc(model.predict_continuous(xv), yv))
        row["train_seconds"].append(secs)

    # class-incremental: 8 classes, then add 2 (unprotected / frozen old columns / frozen + replay)
    variants = {"unprotected": (False, 0), "frozen": (True, 0), "frozen + replay": (True, base.get("replay", 2))}
    inc = {name: [] for name in variants}
    first8 = yv < 8
    old, new = y < 8, y >= 8
    for seed in tqdm(range(seeds), desc="class-incremental"):
        for name, (freeze, replay) in variants.items():
            cfg = CoLaNETConfig(**{**base, "seed": seed, "replay": replay})
            model = CoLaNET(x.shape[1], 8, cfg)
            model.fit_normaliser(x[old])
            for _ in range(epochs or adaptive_epochs(int(old.sum()))):
                order = np.flatnonzero(old)[torch.randperm(int(old.sum()), generator=model.generator).numpy()]
                model.partial_fit(x[order], y[order], batch_size=batch)
            before = acc(model.predict_spiking(xv[first8]), yv[first8])
            model.add_classes(2, freeze_existing=freeze)
            for _ in range(epochs or adaptive_epochs(int(old.sum()))):
                order = np.flatnonzero(new)[torch.randperm(int(new.sum()), generator=model.generator).numpy()]
                model.partial_fit(x[order], y[order], batch_size=batch)
            pred = model.predict_spiking(xv).numpy()
            inc[name].append({"first8_before": before, "first8_after": acc(pred[first8], yv[first8]),
                              "new2_after": acc(pred[~first8], yv[~first8]), "all10_after": acc(pred, yv)})
    results = {"rows": rows, "incremental": inc, "epochs": epochs, "train_batch": batch, "seeds": seeds}
    print("\n| CoLaNET | top-1 spiking (T=32) | top-1 continuous | train s |\n| --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {100 * np.mean(r['spiking']):.2f} ± {100 * np.std(r['spiking']):.2f} | "
              f"{100 * np.mean(r['continuous']):.2f} | {np.mean(r['train_seconds']):.1f} |")
    print("\nclass-incremental (8 classes, then +2 learned from their own examples only; spiking top-1):\n")
    print("| old columns | first 8 before | first 8 after | drop (points) | new 2 | all 10 |\n| --- | --- | --- | --- | --- | --- |")
    for name, runs in inc.items():
        m = {k: 100 * np.mean([d[k] for d in runs]) for k in ("first8_before", "first8_after", "new2_after", "all10_after")}
        print(f"| {name} | {m['first8_before']:.2f} | {m['first8_after']:.2f} | {m['first8_before'] - m['first8_after']:.2f} | "
              f"{m['new2_after']:.2f} | {m['all10_after']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from spikebridge.report import machine_info

    results["machine"] = machine_info()
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
