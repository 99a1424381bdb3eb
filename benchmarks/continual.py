"""Continual learning on cached features: streaming, class-incremental and few-shot class-incremental.

    python benchmarks/continual.py --dataset ../shared/datasets/imagenet64   # 5 class orders
    python benchmarks/continual.py --dataset ../shared/datasets/imagenette
    python benchmarks/continual.py --dataset digits
    python benchmarks/continual.py --dataset digits --quick                  # 2 orders -> results/quick/

Protocols (:mod:`spikebridge.continual`; every training example of a protocol is seen once,
the val split only scores): **streaming** (shuffled, batch 1, and CoLaNET also at the library's
default batch of 16), **class-incremental** (tasks of equal class groups: 8 x 8 on 64 classes,
5 x 2 on 10; no task id at test), **few-shot class-incremental** (60 % of the classes with all
their images, then sessions of 3 new classes x 5 images). Each order ``o`` seeds the class order
and the stream; mean ± std over orders.

Methods, all on the same Lite0 features and streams: CoLaNET (float rule, spiking evaluation at
T = 32, fp32) and ``IntegerCoLaNET`` (8-bit integer rule, evaluated as its exported
``Int8CoLaNET``), both through ``partial_fit`` / ``add_classes``; streaming LDA (ours, and
avalanche-lib's ``StreamingLDA`` as a cross-check where it is installed), nearest class mean,
online SGD softmax (the backprop reference; its learning rate chosen on an i.i.d. stream over
80 % of train scored on the other 20 %), the tuned probe trained jointly on everything the
protocol showed (upper bound; C by 3-fold CV on train), Akida edge learning
(``AkidaUnsupervised`` with the knobs tuned on train in ``benchmarks/results/deploy.json``),
and R-STDP / Diehl & Cook (``SpikingClassifier.partial_fit``; their output neurons for every
class exist from the start, as those rules cannot add classes). Also: CoLaNET trained offline
for several epochs (the reference of the streaming target) and the cost of one learning step.
Writes ``benchmarks/results/continual_<dataset>.json`` stamped with the machine (``--quick``: the
same name under ``benchmarks/results/quick/``). The tuned settings it reuses are read from the
committed ``benchmarks/results/accuracy_<dataset>.json`` and ``deploy.json`` in either mode.
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

from accuracy import features_for
from harness import RESULTS, ROOT, result_path
from spikebridge import continual
from spikebridge.baselines import OnlineSoftmax, StreamingLDA, StreamingNCM, choose_logistic_c, logistic_baseline
from spikebridge.currents import PRECISION_ENV
from spikebridge.estimator import SpikingClassifier
from spikebridge.features import DEFAULT_CACHE
from spikebridge.learner import create_learner
from spikebridge.report import machine_info
from spikebridge.training import train

PROTOCOLS = ("streaming", "class-incremental", "few-shot")
METHODS = ("colanet", "colanet-int8", "slda", "ncm", "sgd-softmax", "probe-joint", "akida-edge", "rstdp", "diehl-cook")
LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
SLOW_METHODS = ("colanet-int8", "akida-edge", "rstdp", "diehl-cook")


# ------------------------------------------------------------------ learners
class FixedClasses:
    """A rule that cannot add classes, given every class's output neurons up front. Examples
    are learned one at a time (``batch_size=1``) but handed over in calls of ``CALL`` examples,
    so the rule's threshold / label recalibration runs once per call, not once per example."""

    CALL = 64

    def __init__(self, clf, classes):
        self.clf, self.classes, self.pending = clf, np.asarray(classes), []

    def partial_fit(self, x, y, classes=None):
        self.pending.append((np.asarray(x), np.asarray(y)))
        if sum(len(b[1]) for b in self.pending) >= self.CALL:
            self._flush()
        return self

    def _flush(self):
        if self.pending:
            x, y = (np.concatenate(v) for v in zip(*self.pending))
            self.pending = []
            first = not hasattr(self.clf, "learner_")
            self.clf.partial_fit(x, y, classes=self.classes if first else None)

    def add_classes(self, classes):
        return self

    def predict(self, x):
        self._flush()
        return self.clf.predict(x)

    def state_bytes(self):
        return self.clf.state_bytes()


class JointProbe:
    """Upper bound: the tuned probe trained on everything the protocol has shown (stored!)."""

    def __init__(self, C: float):
        self.C, self.x, self.y, self.model = C, [], [], None

    def partial_fit(self, x, y, classes=None):
        self.x.append(np.asarray(x)), self.y.append(np.asarray(y))
        self.model = None
        return self

    def add_classes(self, classes):
        return self

    def predict(self, x):
        if self.model is None:
            from sklearn.preprocessing import StandardScaler

            from spikebridge.baselines import _fit_logistic

            xs, ys = np.concatenate(self.x), np.concatenate(self.y)
            self.scaler = StandardScaler().fit(xs)
            self.model = _fit_logistic(self.scaler.transform(xs), ys, self.C)
        return self.model.predict(self.scaler.transform(x))

    def state_bytes(self):
        return int(sum(a.nbytes for a in self.x))  # it stores every example


class AkidaEdge(FixedClasses):
    """Akida's edge learning (AkidaUnsupervised on binarised rates); classes known up front; the
    binarisation statistics are those of the first call (its first ``CALL`` examples)."""

    def __init__(self, classes, config: dict):
        self.classes, self.cfg, self.model, self.norm, self.pending = np.asarray(classes), config, None, None, []

    def _flush(self):
        if self.pending:
            x, y = (np.concatenate(v) for v in zip(*self.pending))
            self.pending = []
            self._fit(x, y)

    def _fit(self, x, y):
        from akida_deploy import binarise, edge_model

        from spikebridge.coding import RateNormaliser

        if self.norm is None:
            self.norm = RateNormaliser.fit(x, "onoff")
            self._rows = {c: i for i, c in enumerate(self.classes.tolist())}
        xb = binarise(self.norm, x, self.cfg["level"])
        if self.model is None:
            active = max(1.0, float(np.median(xb.reshape(len(xb), -1).sum(1))))
            self.model = edge_model(xb.shape[-1], len(self.classes), self.cfg["neurons_per_class"],
                                    max(1, int(round(self.cfg["num_weights_factor"] * active))),
                                    self.cfg["learning_competition"])
        self.model.fit(xb, np.array([self._rows[c] for c in np.asarray(y).tolist()], np.int32))

    def predict(self, x):
        from akida_deploy import binarise

        self._flush()
        own = np.asarray(self.model.predict_classes(binarise(self.norm, x, self.cfg["level"]),
                                                    num_classes=len(self.classes)))
        return self.classes[own]

    def state_bytes(self):
        units = len(self.classes) * self.cfg["neurons_per_class"]
        return units * 2 * self.norm.n_channels // 8 // 2  # 1-bit weights (one byte per 8 synapses)


class IntegerOnline:
    """``IntegerCoLaNET`` learning online (its own partial_fit / add_classes), scored as Int8CoLaNET."""

    def __init__(self, seed: int):
        self.seed, self.model, self.classes_ = seed, None, np.zeros(0, dtype=np.int64)

    def partial_fit(self, x, y, classes=None):
        from spikebridge.deploy.integer_learning import integer_learner

        if self.model is None:
            self.classes_ = np.asarray(classes if classes is not None else np.unique(y))
            self.model = integer_learner(x.shape[1], len(self.classes_), seed=self.seed)
        new = np.setdiff1d(np.unique(y), self.classes_)
        if len(new):
            self.add_classes(new)
        row = {c: i for i, c in enumerate(self.classes_.tolist())}
        codes = np.array([row[c] for c in np.asarray(y).tolist()], dtype=np.int64)
        self.model.partial_fit(x, codes, batch_size=len(codes))
        return self

    def add_classes(self, classes):
        self.model.add_classes(len(classes))
        self.classes_ = np.concatenate([self.classes_, np.asarray(classes)])
        return self

    def predict(self, x):
        return self.classes_[self.model.predict(x).numpy()]

    def state_bytes(self):
        return self.model.state_bytes()


def sgd_learning_rate(x, y, seed: int = 0) -> tuple[float, dict]:
    """The online softmax's learning rate: best i.i.d. single pass over 80 % of train, scored on the rest."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    cut = int(0.8 * len(idx))
    scores = {}
    for lr in LR_GRID:
        m = OnlineSoftmax(lr).partial_fit(x[idx[:cut]], y[idx[:cut]], classes=np.unique(y))
        scores[lr] = float((m.predict(x[idx[cut:]]) == y[idx[cut:]]).mean())
    return max(scores, key=scores.get), {f"{k:g}": v for k, v in scores.items()}


def make(method: str, order: int, classes, settings: dict, batch: int = 1):
    if method == "colanet":
        return SpikingClassifier("colanet", seed=order, batch_size=batch)
    if method == "colanet-int8":
        return IntegerOnline(order)
    if method == "slda":
        return StreamingLDA()
    if method == "ncm":
        return StreamingNCM()
    if method == "sgd-softmax":
        return OnlineSoftmax(settings["sgd_lr"])
    if method == "probe-joint":
        return JointProbe(settings["probe_C"])
    if method == "akida-edge":
        return AkidaEdge(classes, settings["akida"])
    if method in ("rstdp", "diehl-cook"):
        return FixedClasses(SpikingClassifier(method, seed=order, batch_size=batch), classes)
    raise ValueError(method)


# ------------------------------------------------------------------ cost of a learning step
def step_cost(tr, seed: int = 0, n: int = 2000) -> dict:
    """SynOps, weight updates, bytes touched, energy and wall time of one CoLaNET learning step
    (one example, batch 1) measured on the last ``n`` examples of a shuffled single pass."""
    from spikebridge.energy import DEFAULT_PJ_AC, DEFAULT_PJ_MAC

    clf = SpikingClassifier("colanet", seed=seed, batch_size=1)
    order = np.random.default_rng(seed).permutation(len(tr.labels))
    x, y = tr.features[order], tr.labels[order]
    clf.partial_fit(x[:1], y[:1], classes=np.unique(y))
    clf.partial_fit(x[1 : len(y) - n], y[1 : len(y) - n])
    model = clf.learner_.model
    before = model.weights.clone()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(len(y) - n, len(y)):
        clf.partial_fit(x[i : i + 1], y[i : i + 1])
    wall, cpu = (time.perf_counter() - t0) / n, (time.process_time() - c0) / n  # partial_fit runs on one thread
    changed = int((model.weights != before).sum())
    active = int(model.active.sum())
    rates = model.rates(x[-n:])
    input_spikes = float(torch.round(rates * model.config.steps).sum(1).mean())  # regular coder: round(T r)
    synops = input_spikes * active  # one presentation of T steps through the recruited neurons
    N = model.n_channels
    updates = changed / n  # synapses changed per step (upper bound on distinct changes: summed over steps)
    energy = synops * DEFAULT_PJ_AC + (updates + model.config.steps * active) * DEFAULT_PJ_MAC
    return {"examples_timed": n, "wall_ms_per_step": 1e3 * wall, "cpu_ms_per_step": 1e3 * cpu, "synops_per_step": synops,
            "input_spikes_per_step": input_spikes, "recruited_neurons": active,
            "weight_updates_per_step": updates, "weights_changed_in_window": changed,
            "bytes_touched_per_step": 4 * (active * N + 2 * updates + 2 * model.n_inputs),
            "energy_uJ_per_step": energy * 1e-6, "energy_model": "SynOps x 0.9 pJ (AC) + (weight updates + "
            "membrane updates) x 4.6 pJ (MAC), Horowitz 45 nm fp32; memory traffic not modelled",
            "anchors": {"Loihi 2 continual-learning prototype": {"mJ_per_step": 0.05, "ms_per_step": 0.33},
                        "MCU few-shot learner": {"mJ_per_new_class": 12.0}}}


# ------------------------------------------------------------------ driver
def summarise(runs: list[dict]) -> dict:
    out = {}
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            vals = [r[key] for r in runs]
            out[key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "runs": vals}
    out["orders"] = len(runs)
    return out


def run_protocol(protocol, method, tr, va, orders, settings, classes, batch=1) -> dict:
    if method == "probe-joint" and protocol != "few-shot":
        orders = 1  # trained on all of train whatever the order: one fit (its scores after each task are refits)
    runs = []
    for o in tqdm(range(orders), desc=f"{protocol} {method}", leave=False):
        learner = make(method, o, classes, settings, batch)
        if protocol == "streaming":
            r = continual.streaming(learner, tr.features, tr.labels, va.features, va.labels, seed=o, batch=batch)
        elif protocol == "class-incremental":
            r = continual.class_incremental(learner, tr.features, tr.labels, va.features, va.labels,
                                            tasks=settings["tasks"], seed=o, batch=batch)
        else:
            r = continual.few_shot(learner, tr.features, tr.labels, va.features, va.labels, seed=o, batch=batch)
        runs.append(r)
    return {**summarise(runs), "detail": runs}


def offline(tr, va, orders: int) -> dict:
    """CoLaNET trained offline (library defaults, several epochs), spiking top-1; and per class."""
    runs, per_class = [], []
    for o in range(orders):
        learner, history = train(create_learner("colanet", tr.features.shape[1], len(np.unique(tr.labels)), seed=o),
                                 tr.features, tr.labels, progress=False)
        pred = learner.scores(va.features)[0].argmax(1).numpy()
        runs.append({"top1": float((pred == va.labels).mean()), "epochs": history["epochs_planned"]})
        per_class.append([float((pred[va.labels == c] == c).mean()) for c in np.unique(va.labels)])
    return {**summarise(runs), "per_class_mean": np.mean(per_class, 0).tolist()}


def main(argv=None):
    os.environ.setdefault(PRECISION_ENV, "fp32")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "datasets" / "imagenet64"))
    ap.add_argument("--orders", type=int, default=5, help="class / stream orders (seeds 0..orders-1; default 5)")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--slow-orders", type=int, default=None,
                    help="orders for the slow methods (colanet-int8, akida-edge, rstdp, diehl-cook; default: --orders)")
    ap.add_argument("--offline", action=argparse.BooleanOptionalAction, default=True,
                    help="train the offline multi-epoch CoLaNET reference (default: yes, unless the file has it)")
    ap.add_argument("--step-cost", action="store_true",
                    help="only measure the cost of a learning step (run it alone on the machine: it is timed)")
    ap.add_argument("--quick", action="store_true", help="2 orders, written under benchmarks/results/quick/")
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default: benchmarks/results/continual_<name>.json; --quick: under results/quick/)")
    args = ap.parse_args(argv)
    orders = 2 if args.quick else args.orders
    protocols, methods = [p for p in args.protocols.split(",") if p], args.methods.split(",")
    unknown = sorted(set(protocols) - set(PROTOCOLS)) + sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown protocol or method {unknown}; choose from {PROTOCOLS} and {METHODS}")
    tr, va, names = features_for(args.dataset, "efficientnet_lite0", args.cache_dir)
    name = "digits" if args.dataset == "digits" else Path(args.dataset.split(":")[-1]).name
    classes = np.unique(tr.labels)
    out = result_path(f"continual_{name}.json", args.quick, args.out)  # read, merged into and written
    result = json.loads(out.read_text()) if out.is_file() else {}
    result["protocols"] = {}  # only the rows of this run are merged into the file (others may be running)
    settings = {**result.get("settings", {}), "tasks": 8 if len(classes) >= 64 else 5}  # settings of earlier runs stay
    if "sgd-softmax" in methods:
        if "sgd_lr" in result.get("settings", {}):
            settings["sgd_lr"] = result["settings"]["sgd_lr"]
        else:
            settings["sgd_lr"], result["sgd_lr_scores"] = sgd_learning_rate(tr.features, tr.labels)
    if "probe-joint" in methods:  # the tuned probe's C: this file's, the accuracy table's (the same CV), or a new CV
        known = result.get("settings", {}).get("probe_C")
        accuracy = RESULTS / f"accuracy_{name}.json"
        if known is None and accuracy.is_file():
            known = json.loads(accuracy.read_text())["rows"].get("tuned_logistic", {}).get("C")
        settings["probe_C"] = known if known is not None else choose_logistic_c(tr.features, tr.labels)[0]
    if "akida-edge" in methods:
        deploy = json.loads((RESULTS / "deploy.json").read_text())
        edge = deploy["akida"]["edge"].get(name)
        if edge is None:
            methods.remove("akida-edge")
        else:
            settings["akida"] = edge["akida"]["config"]
    result.update({"dataset": args.dataset, "name": name, "n_classes": len(classes), "n_train": len(tr),
                   "n_val": len(va), "orders": orders, "machine": machine_info(),
                   "settings": {k: v for k, v in settings.items()}})
    if args.step_cost:
        tr, _, _ = features_for(args.dataset, "efficientnet_lite0", args.cache_dir)
        load = os.getloadavg()[0]  # other jobs inflate the wall time, not the CPU time
        cost = {**step_cost(tr), "load_average_start": load, "machine_busy": load > 0.5 * (os.cpu_count() or 1)}
        result = {"step_cost": cost, "step_cost_machine": machine_info(), "protocols": {}}
        write_merged(out, result)
        print(json.dumps(result["step_cost"], indent=1))
        return
    if "colanet" in methods and args.offline and "offline" not in result:
        print("offline CoLaNET (multi-epoch) ...", flush=True)
        result["offline"] = offline(tr, va, orders)
    for protocol in protocols:
        rows = result["protocols"].setdefault(protocol, {})
        for method in methods:
            t0 = time.perf_counter()
            slow = method in SLOW_METHODS and args.slow_orders is not None
            rows[method] = run_protocol(protocol, method, tr, va, min(orders, args.slow_orders) if slow else orders,
                                        settings, classes)
            print(f"{protocol:18s} {method:14s} " + ", ".join(
                f"{k} {100 * v['mean']:.2f}" for k, v in rows[method].items()
                if isinstance(v, dict) and "mean" in v and k in ("top1", "final_top1", "forgetting", "harmonic",
                                                                  "base", "novel", "last_session", "average_incremental"))
                  + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
            if protocol == "streaming" and method == "colanet":
                rows["colanet-batch16"] = run_protocol(protocol, method, tr, va, orders, settings, classes, batch=16)
        write_merged(out, result)
    write_merged(out, result)
    print(f"wrote {out}")


def write_merged(out: Path, result: dict) -> None:
    """Write ``result`` into ``out``, keeping the rows of protocols and methods run by other invocations."""
    from spikebridge.io import write_json_atomic

    merged = json.loads(out.read_text()) if out.is_file() else {}
    protocols = merged.get("protocols", {})
    for protocol, rows in result["protocols"].items():
        protocols.setdefault(protocol, {}).update(rows)
    merged.update({k: v for k, v in result.items() if k != "protocols"}, protocols=protocols)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, merged)


if __name__ == "__main__":
    main()
