"""Cross-check of our StreamingLDA against avalanche-lib's StreamingLDA on the same features.

    python benchmarks/slda_crosscheck.py                         # digits + Imagenette (main venv)
    python benchmarks/slda_crosscheck.py --datasets digits

Two halves in one file:

* the main half (project venv) loads the cached EfficientNet-Lite0 features, runs
  :class:`spikebridge.baselines.StreamingLDA`, dumps the same ordered streams to a temporary
  ``.npz`` (deleted afterwards) and starts the worker under the avalanche venv;
* the worker (``<avalanche python> benchmarks/slda_crosscheck.py --worker in.npz out.json``,
  interpreter from ``$SPIKEBRIDGE_AVALANCHE_PYTHON``, default ``.venv-avalanche/bin/python``)
  builds an avalanche benchmark from tensors (``benchmark_from_datasets`` of
  ``_make_taskaware_tensor_classification_dataset``, one dataset per experience) and trains
  ``avalanche.training.StreamingLDA`` (feature extractor ``torch.nn.Identity()``,
  ``input_size=1280``, ``shrinkage_param=1e-4``, ``streaming_update_sigma=True``,
  ``train_mb_size=1``, one epoch, ``shuffle=False``) through its ``train``/``eval`` API.
  It writes ``out.json`` (metrics, versions) and ``out.npz`` (class means, ``Sigma``, val
  scores after every experience) for the main half to compare.

Protocols (the same example order for both implementations):

* ``streaming``: every training example once, order ``np.random.default_rng(0).permutation(n)``.
* ``class_incremental`` (digits): classes in order ``np.random.default_rng(0).permutation(10)``,
  5 tasks of 2 classes; a task's examples are the streaming order restricted to its classes.
  After each task: top-1 on all val, and on the val examples of the classes seen so far.

What avalanche 0.6.0 computes (``avalanche/training/supervised/deep_slda.py``), per example,
with ``t = num_updates`` the global count of examples seen so far (all classes)::

    Sigma <- (t * Sigma + t/(t+1) * (x - mu_y)^T (x - mu_y)) / (t + 1)   # mu_y before its update
    mu_y  <- mu_y + (x - mu_y) / (c_y + 1);  c_y += 1;  t += 1
    Lambda = pinverse((1 - eps) Sigma + eps I);  scores = X Lambda M - 0.5 * sum(M * Lambda M, 0)

i.e. the same recursion as ours (``t/(t+1)`` with the global count; the first update
multiplies by 0, so the all-ones initial ``Sigma`` is discarded). Differences: float32 torch
tensors (ours: float64 numpy) and an SVD pseudo-inverse (ours: ``np.linalg.inv``; the shrunk
matrix has eigenvalues >= eps so both are the inverse up to rounding); ``muK`` has one row per
class of the *whole* problem from the start, so a class not yet seen scores exactly 0 (ours
has no row for it) -- this matters in the class-incremental protocol only.

Runtime note: avalanche's ``training_epoch`` calls ``forward`` -> ``predict`` on every
minibatch, and ``predict`` recomputes ``pinverse`` of the 1280 x 1280 matrix whenever
``num_updates`` changed, i.e. once per training example at ``train_mb_size=1``. The output of
that training-time forward only feeds the loss/metrics, never ``fit``. The worker therefore
adds a plugin that marks ``Lambda`` as current before each *training* forward (and forces a
recompute after each experience); ``fit`` is untouched. On digits the worker also trains the
first 20 examples without that plugin and checks that ``muK``/``Sigma`` are bit-identical.
Another plugin records every minibatch seen in training and checks it is the intended order.

Writes ``benchmarks/results/slda_crosscheck.json`` (``--quick``, digits only:
``benchmarks/results/quick/slda_crosscheck.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHRINKAGE = 1e-4
DATASETS = {"digits": "digits", "imagenette": "../shared/datasets/imagenette"}
PREFIX_CHECK = 20  # examples trained without the Lambda-skip plugin (each costs one 1280x1280 SVD)


# ------------------------------------------------------------------ protocols (shared by both halves)
def streaming_jobs(name, tr_x, tr_y, va_x, va_y, class_incremental: bool):
    """``{job name: dict of arrays}``: ordered training examples, task boundaries, val split."""
    n = len(tr_y)
    order = np.random.default_rng(0).permutation(n)
    jobs = {f"{name}/streaming": {"x": tr_x[order], "y": tr_y[order], "bounds": np.array([0, n]),
                                   "task_classes": np.unique(tr_y)[None, :]}}
    if class_incremental:
        classes = np.unique(tr_y)
        class_order = np.random.default_rng(0).permutation(len(classes))
        tasks = classes[class_order].reshape(-1, 2)
        idx = [order[np.isin(tr_y[order], t)] for t in tasks]
        bounds = np.cumsum([0] + [len(i) for i in idx])
        cat = np.concatenate(idx)
        jobs[f"{name}/class_incremental"] = {"x": tr_x[cat], "y": tr_y[cat], "bounds": bounds, "task_classes": tasks}
    for job in jobs.values():
        job.update(val_x=va_x, val_y=va_y)
    return jobs


# ------------------------------------------------------------------ worker (avalanche venv)
def worker(in_path: str, out_path: str) -> None:
    import torch

    torch.set_num_threads(1)  # a 1280x1280 SVD with 2 threads on a loaded 2-core machine is ~25x slower

    import avalanche
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
    from avalanche.training.plugins import SupervisedPlugin
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training import StreamingLDA
    from avalanche.training.plugins import EvaluationPlugin

    class LambdaCurrentWhileTraining(SupervisedPlugin):
        """Skip the per-minibatch pinverse of the training-time forward (its output is unused by fit)."""

        def before_forward(self, strategy, **kwargs):
            if strategy.is_training:
                strategy.prev_num_updates = strategy.num_updates

        def after_training_exp(self, strategy, **kwargs):
            strategy.prev_num_updates = -1  # the next predict recomputes Lambda from the final Sigma

    class Recorder(SupervisedPlugin):
        def __init__(self):
            super().__init__()
            self.x, self.y = [], []

        def before_update(self, strategy, **kwargs):
            self.x.append(strategy.mb_x.detach().cpu().numpy().copy())
            self.y.append(strategy.mb_y.detach().cpu().numpy().copy())

    def tensor_ds(x, y):
        return _make_taskaware_tensor_classification_dataset(torch.as_tensor(x), torch.as_tensor(y), task_labels=0)

    def make_strategy(num_classes, plugins):
        evaluator = EvaluationPlugin(accuracy_metrics(stream=True), loggers=[])
        return StreamingLDA(slda_model=torch.nn.Identity(), criterion=torch.nn.CrossEntropyLoss(),
                            input_size=1280, num_classes=num_classes, shrinkage_param=SHRINKAGE,
                            streaming_update_sigma=True, train_epochs=1, train_mb_size=1, eval_mb_size=512,
                            device="cpu", plugins=plugins, evaluator=evaluator)

    data = np.load(in_path)
    names = json.loads(str(data["names"]))
    out, arrays = {"versions": {"avalanche-lib": avalanche.__version__, "torch": torch.__version__,
                                "numpy": np.__version__, "python": sys.version.split()[0]}, "jobs": {}}, {}
    for name in names:
        g = lambda k: data[f"{name}|{k}"]  # noqa: E731
        x, y, bounds = g("x").astype(np.float32), g("y").astype(np.int64), g("bounds")
        val_x, val_y = g("val_x").astype(np.float32), g("val_y").astype(np.int64)
        num_classes = int(max(y.max(), val_y.max()) + 1)
        exps = [tensor_ds(x[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        bench = benchmark_from_datasets(train=exps, test=[tensor_ds(val_x, val_y)])
        rec = Recorder()
        strategy = make_strategy(num_classes, [LambdaCurrentWhileTraining(), rec])
        job = {"avalanche_stream_top1": [], "num_updates": []}
        for k, exp in enumerate(bench.train_stream):
            strategy.train(exp, eval_streams=[], shuffle=False, num_workers=0)
            metrics = strategy.eval(bench.test_stream)
            acc = [v for key, v in metrics.items() if key.startswith("Top1_Acc_Stream/eval_phase/test_stream")]
            job["avalanche_stream_top1"].append(float(acc[0]))
            job["num_updates"].append(int(strategy.num_updates))
            vx = torch.as_tensor(val_x)
            arrays[f"{name}|scores{k}"] = strategy.predict(vx).numpy()  # Lambda cached by eval: no recompute
        seen_x, seen_y = np.concatenate(rec.x), np.concatenate(rec.y)
        job["order_checked"] = bool(np.array_equal(seen_x, x) and np.array_equal(seen_y, y))
        job["minibatches"] = len(rec.y)
        arrays[f"{name}|means"] = strategy.muK.numpy()
        arrays[f"{name}|counts"] = strategy.cK.numpy()
        arrays[f"{name}|sigma"] = strategy.Sigma.numpy()
        if name.endswith("/streaming") and name.startswith("digits"):
            # the plugin does not change what fit computes: first PREFIX_CHECK examples with and without it
            states = []
            for plugins in ([], [LambdaCurrentWhileTraining()]):
                s = make_strategy(num_classes, plugins)
                s.train(benchmark_from_datasets(train=[tensor_ds(x[:PREFIX_CHECK], y[:PREFIX_CHECK])]).train_stream[0],
                        eval_streams=[], shuffle=False, num_workers=0)
                states.append((s.muK.clone(), s.Sigma.clone()))
            (m0, s0), (m1, s1) = states
            job["plugin_prefix_check"] = {"examples": PREFIX_CHECK, "train_mb_size": 1,
                                          "bit_identical": bool(torch.equal(m0, m1) and torch.equal(s0, s1))}
        out["jobs"][name] = job
        print(f"[worker] {name}: {job}", flush=True)
    np.savez(Path(out_path).with_suffix(".npz"), **arrays)
    Path(out_path).write_text(json.dumps(out, indent=2))


# ------------------------------------------------------------------ main half (project venv)
def _ours(job):
    from spikebridge.baselines import StreamingLDA

    model = StreamingLDA(shrinkage=SHRINKAGE)
    scores = []
    for (a, b), task in zip(zip(job["bounds"][:-1], job["bounds"][1:]), job["task_classes"]):
        model.partial_fit(job["x"][a:b], job["y"][a:b], classes=task)  # the task's classes get rows first
        scores.append(model.scores(np.asarray(job["val_x"], dtype=np.float64)))
    return model, scores


def _ours_state_by_label(model, num_classes):
    means = np.zeros((num_classes, model._dim))
    for row, c in enumerate(model.classes_):
        means[c] = model.means[row]
    return means, model.covariance


def _float64_scores(means, sigma, val_x, labels):
    """Our scoring rule (float64, np.linalg.inv) applied to avalanche's state, restricted to ``labels``."""
    d = sigma.shape[0]
    lam = np.linalg.inv((1 - SHRINKAGE) * sigma.astype(np.float64) + SHRINKAGE * np.eye(d))
    mu = means[labels].astype(np.float64)
    w = mu @ lam
    return np.asarray(val_x, np.float64) @ w.T - 0.5 * (w * mu).sum(1)


def compare(name, job, model, ours_scores, av_json, av_arrays) -> dict:
    val_y = job["val_y"]
    num_classes = av_arrays[f"{name}|means"].shape[0]
    out = {"train_examples": int(len(job["y"])), "val_examples": int(len(val_y)),
           "order": "np.random.default_rng(0).permutation(n_train)" + (
               "; task k = that order restricted to the task's classes" if len(job["task_classes"]) > 1 else ""),
           "tasks": [[int(c) for c in t] for t in job["task_classes"]], "after_each_experience": []}
    seen: list[int] = []
    for k, task in enumerate(job["task_classes"]):
        seen += [int(c) for c in task]
        # ours at experience k: rows are classes in first-seen order; classes_ grows, scores[k] has len(seen) columns
        ours_pred = np.asarray(model.classes_[: ours_scores[k].shape[1]])[ours_scores[k].argmax(1)]
        av = av_arrays[f"{name}|scores{k}"]
        av_pred = av.argmax(1)
        seen_arr = np.array(seen)
        av_pred_seen = seen_arr[av[:, seen_arr].argmax(1)]  # avalanche's scores, argmax over seen classes only
        mask = np.isin(val_y, seen_arr)
        row = {"experience": k, "classes_seen": list(seen),
               "top1_ours": float((ours_pred == val_y).mean()),
               "top1_avalanche": float((av_pred == val_y).mean()),
               "top1_avalanche_own_metric": av_json["avalanche_stream_top1"][k],
               "agreement": float((ours_pred == av_pred).mean())}
        if len(job["task_classes"]) > 1:
            row.update({
                "top1_seen_classes_ours": float((ours_pred[mask] == val_y[mask]).mean()),
                "top1_seen_classes_avalanche": float((av_pred[mask] == val_y[mask]).mean()),
                "avalanche_predicts_unseen_class": float((~np.isin(av_pred, seen_arr)).mean()),
                "top1_avalanche_argmax_over_seen": float((av_pred_seen == val_y).mean()),
                "agreement_avalanche_argmax_over_seen": float((ours_pred == av_pred_seen).mean())})
        out["after_each_experience"].append(row)
    ours_means, ours_sigma = _ours_state_by_label(model, num_classes)
    av_means, av_sigma = av_arrays[f"{name}|means"], av_arrays[f"{name}|sigma"]
    seen_arr = np.array(sorted(model.classes_))
    f64 = _float64_scores(av_means, av_sigma, job["val_x"], seen_arr)
    ours_final = np.asarray(model.classes_)[ours_scores[-1].argmax(1)]
    out["final_state"] = {
        "max_abs_diff_means": float(np.abs(ours_means - av_means).max()),
        "max_abs_means": float(np.abs(ours_means).max()),
        "max_abs_diff_covariance": float(np.abs(ours_sigma - av_sigma).max()),
        "max_abs_covariance": float(np.abs(ours_sigma).max()),
        "max_rel_diff_covariance_frobenius": float(np.linalg.norm(ours_sigma - av_sigma) / np.linalg.norm(ours_sigma)),
        "counts_equal": bool(np.array_equal(model.counts[np.argsort(model.classes_)], av_arrays[f"{name}|counts"][seen_arr])),
        "total_updates_ours_avalanche": [int(model.t), int(av_json["num_updates"][-1])],
        "agreement_ours_vs_avalanche_state_scored_float64": float((ours_final == seen_arr[f64.argmax(1)]).mean()),
    }
    out["avalanche_order_checked"] = av_json["order_checked"]
    out["avalanche_minibatches"] = av_json["minibatches"]
    if "plugin_prefix_check" in av_json:
        out["avalanche_plugin_prefix_check"] = av_json["plugin_prefix_check"]
    last = out["after_each_experience"][-1]
    fs = out["final_state"]
    gap = abs(last["top1_ours"] - last["top1_avalanche"])
    ok = gap <= 1.0 / len(val_y) + 1e-12 and last["agreement"] >= 0.99 and fs["max_rel_diff_covariance_frobenius"] < 1e-4
    detail = (f"final top-1 ours {last['top1_ours']:.4f} vs avalanche {last['top1_avalanche']:.4f}, agreement "
              f"{last['agreement']:.4f}, max |d mean| {fs['max_abs_diff_means']:.2e}, max |d Sigma| "
              f"{fs['max_abs_diff_covariance']:.2e} (rel. Frobenius {fs['max_rel_diff_covariance_frobenius']:.1e})")
    if len(job["task_classes"]) > 1:
        worst = min(r["agreement"] for r in out["after_each_experience"])
        worst_seen = min(r["agreement_avalanche_argmax_over_seen"] for r in out["after_each_experience"])
        detail += (f"; over all tasks min agreement {worst:.4f} (argmax over seen classes: {worst_seen:.4f}), "
                   f"avalanche's unseen classes score 0")
    out["verdict"] = ("match (same recursion; differences are float32 rounding): " if ok else "DIFFER: ") + detail
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", nargs=2, metavar=("IN_NPZ", "OUT_JSON"), help=argparse.SUPPRESS)
    ap.add_argument("--datasets", default="digits,imagenette")
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default: benchmarks/results/slda_crosscheck.json; "
                         "--quick: benchmarks/results/quick/slda_crosscheck.json)")
    ap.add_argument("--quick", action="store_true", help="digits only")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(*args.worker)
    if args.quick:
        args.datasets = "digits"

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from accuracy import features_for
    from harness import result_path
    from spikebridge.features import DEFAULT_CACHE
    from spikebridge.report import machine_info

    os.chdir(ROOT)  # data set paths are relative to the repository root
    out = result_path("slda_crosscheck.json", args.quick, args.out)  # a relative --out: from the repository root
    python = os.environ.get("SPIKEBRIDGE_AVALANCHE_PYTHON", str(ROOT / ".venv-avalanche" / "bin" / "python"))
    jobs = {}
    for ds in args.datasets.split(","):
        tr, va, _ = features_for(DATASETS[ds], "efficientnet_lite0", DEFAULT_CACHE)
        jobs.update(streaming_jobs(ds, tr.features, tr.labels, va.features, va.labels, class_incremental=ds == "digits"))
    ours = {name: _ours(job) for name, job in jobs.items()}
    with tempfile.TemporaryDirectory(prefix="slda_crosscheck_") as tmp:
        in_path, out_path = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(in_path, names=json.dumps(list(jobs)),
                 **{f"{n}|{k}": v for n, job in jobs.items() for k, v in job.items()})
        cmd = [python, str(Path(__file__).resolve()), "--worker", str(in_path), str(out_path)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        subprocess.run(cmd, check=True, env=env)
        av = json.loads(out_path.read_text())
        with np.load(out_path.with_suffix(".npz")) as z:
            av_arrays = {k: z[k] for k in z.files}
    record = {
        "what": "spikebridge.baselines.StreamingLDA vs avalanche.training.StreamingLDA on cached efficientnet_lite0 "
                "features; shrinkage 1e-4, streaming covariance, batch 1, one pass",
        "avalanche_update_rule": ("Sigma <- (t*Sigma + t/(t+1) (x-mu_y)^T(x-mu_y)) / (t+1) with t = global count of "
                                  "examples seen (num_updates), mu_y taken before its update; identical to ours. "
                                  "float32 torch tensors, Lambda = torch.pinverse((1-eps) Sigma + eps I); ours float64, "
                                  "np.linalg.inv. muK has a row per class of the whole problem from the start, so an "
                                  "unseen class scores 0 in avalanche (no row in ours)."),
        "avalanche_setup": {"api": "benchmark_from_datasets(train=[one tensor dataset per experience], test=[val]); "
                                   "StreamingLDA(slda_model=torch.nn.Identity(), input_size=1280, shrinkage_param=1e-4, "
                                   "streaming_update_sigma=True, train_mb_size=1, train_epochs=1); "
                                   "train(exp, eval_streams=[], shuffle=False); eval(test_stream)",
                            "plugin": "LambdaCurrentWhileTraining: before each training forward sets prev_num_updates = "
                                      "num_updates so predict() skips the per-example 1280x1280 pinverse (output unused "
                                      "by fit); prev_num_updates = -1 after each experience. Checked bit-identical on "
                                      f"the first {PREFIX_CHECK} digits examples.",
                            "torch_threads": 1},
        "versions": {**av["versions"]}, "machine": machine_info(),
        "results": {name: compare(name, jobs[name], ours[name][0], ours[name][1], av["jobs"][name], av_arrays)
                    for name in jobs},
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    for name, r in record["results"].items():
        print(f"{name}: {r['verdict']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
