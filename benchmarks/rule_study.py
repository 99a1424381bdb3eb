"""Which details of CoLaNET cost accuracy against a tuned linear probe: a study on splits of train.

    python benchmarks/rule_study.py            # digits, Imagenette, imagenet64, imagenet64 at 50 per class
    python benchmarks/rule_study.py --data digits --quick

Every variant is trained on 80 % of the *training* split (stratified, seed 0) and scored on the
other 20 % (continuous approximation, which the spiking simulation matches on >= 99 % of
examples at T = 32; see accuracy_*.json). The val split is never used here. The probe column is
logistic regression on standardised features with the best C of a log grid *on the same
held-out 20 %*, an optimistic reference. The first block walks from the pre-study rule to the
shipped defaults one change at a time; the second removes one shipped change at a time.
Writes ``benchmarks/results/rule_study.json`` (``--quick``: ``benchmarks/results/quick/rule_study.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit

from spikebridge.colanet import CoLaNETConfig
from spikebridge.data import open_dataset
from spikebridge.encoders import create_encoder
from spikebridge.features import DEFAULT_CACHE, extract_features
from spikebridge.learner import create_learner
from spikebridge.report import machine_info
from spikebridge.training import train
from spikebridge.currents import PRECISION_ENV

from harness import ROOT, result_path

# published accuracy: the fp32 simulation every CPU reproduces (spikebridge.currents.default_bf16)
os.environ.setdefault(PRECISION_ENV, "fp32")

DATA = {"digits": ("digits", None), "imagenette": (str(ROOT.parent / "shared/datasets/imagenette"), None),
        "imagenet64": (str(ROOT.parent / "shared/datasets/imagenet64"), None),
        "imagenet64-50pc": (str(ROOT.parent / "shared/datasets/imagenet64"), 50)}
OLD = dict(microcolumns=7, normalisation="percentile", w_min=0.0, anneal=False)
# (label, config overrides, epochs (None: adaptive), kept in the shipped rule?)
VARIANTS = [
    ("pre-study rule (percentile coding, W in [0, 1], constant rates, M = 7, 4 epochs)", OLD, 4, False),
    ("+ ON/OFF standardised coding", {**OLD, "normalisation": "onoff"}, 4, True),
    ("+ signed weights W in [-1, 1]", {**OLD, "normalisation": "onoff", "w_min": -1.0}, 4, True),
    ("+ linear annealing of the rates", {**OLD, "normalisation": "onoff", "w_min": -1.0, "anneal": True}, 4, True),
    ("+ adaptive epochs (clip(60000 / n, 10, 30))", {"microcolumns": 7}, None, True),
    ("+ adaptive microcolumns = shipped defaults", {}, None, True),
    ("shipped, but percentile coding", {"normalisation": "percentile"}, None, False),
    ("shipped, but W in [0, 1]", {"w_min": 0.0}, None, False),
    ("shipped, but constant rates", {"anneal": False}, None, False),
    ("shipped, but M = 1", {"microcolumns": 1}, None, False),
    ("shipped, but M = 7", {"microcolumns": 7}, None, False),
    ("shipped, but eta x 2", {"eta_plus": 0.078, "eta_minus": 0.09}, None, False),
    ("shipped, but eta x 0.5", {"eta_plus": 0.0195, "eta_minus": 0.0225}, None, False),
    ("shipped, but margin 0.2", {"margin": 0.2}, None, False),
    ("shipped, but saturation 2 sd", {"saturation": 2.0}, None, False),
    ("shipped, single pass (1 epoch, rates x 10^0.7)", {}, 1, True),
]


def load(name: str, cache: Path):
    spec, per_class = DATA[name]
    splits = open_dataset(spec)
    tr = extract_features(splits.train, create_encoder(device="cpu"), cache, progress=False)
    x, y = tr.features, tr.labels
    if per_class is not None:
        rng = np.random.default_rng(0)
        keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)])
        x, y = x[keep], y[keep]
    a, b = next(StratifiedShuffleSplit(1, test_size=0.2, random_state=0).split(x, y))
    return x[a], y[a], x[b], y[b]


def probe(xa, ya, xb, yb) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    s = StandardScaler().fit(xa)
    out = {}
    for C in (0.001, 0.003, 0.01, 0.03, 0.1, 1.0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(max_iter=1000, C=C, tol=1e-3).fit(s.transform(xa), ya)
        out[f"{C:g}"] = float((clf.predict(s.transform(xb)) == yb).mean())
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    ap.add_argument("--quick", action="store_true", help="the first and the shipped variant only")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default: benchmarks/results/rule_study.json; "
                         "--quick: benchmarks/results/quick/rule_study.json)")
    args = ap.parse_args(argv)
    args.out = result_path("rule_study.json", args.quick, args.out)
    variants = [VARIANTS[0], VARIANTS[5]] if args.quick else VARIANTS
    result = {"machine": machine_info(), "protocol": __doc__.split("Writes")[0].strip(), "data": {}}
    for name in args.data:
        xa, ya, xb, yb = load(name, args.cache_dir)
        p = probe(xa, ya, xb, yb)
        entry = {"n_fit": len(xa), "n_held_out": len(xb), "classes": int(len(np.unique(ya))),
                 "probe_best": max(p.values()), "probe_by_C": p, "variants": []}
        print(f"\n{name}: {len(xa)} fit / {len(xb)} held out; probe (best C on held-out) {100 * max(p.values()):.2f}", flush=True)
        for label, overrides, epochs, kept in variants:
            cfg = CoLaNETConfig(**overrides)
            t0 = time.perf_counter()
            learner = create_learner("colanet", xa.shape[1], entry["classes"], cfg)
            learner, history = train(learner, xa, ya, epochs=epochs, progress=False)
            acc = float((learner.predict_continuous(xb).numpy() == yb).mean())
            entry["variants"].append({"variant": label, "kept": kept, "top1": acc, "overrides": overrides,
                                      "epochs": history["epochs_planned"],
                                      "microcolumns": learner.model.config.microcolumns,
                                      "seconds": time.perf_counter() - t0})
            print(f"  {100 * acc:6.2f}  ({100 * (acc - entry['probe_best']):+.2f} vs probe)  {label}", flush=True)
        result["data"][name] = entry
    result["shipped_defaults"] = asdict(CoLaNETConfig())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
