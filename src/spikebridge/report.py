"""Evaluation and the run directory: run.json, report.md, figures.

Synaptic operations per inference (SynOps) are counted by [`spiking_synops()`][spikebridge.energy.spiking_synops]
from the spikes counted per example and the learner's fan-outs.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .baselines import topk_accuracy
from .energy import spiking_synops

STEPS_SWEEP = (1, 2, 4, 8, 16, 32, 64)


def confusion(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels), np.asarray(pred)), 1)
    return m


@torch.no_grad()
def evaluate(learner, val_x, val_y, classes: list[str], steps: int, steps_sweep=STEPS_SWEEP) -> dict:
    """Spiking-mode metrics at ``steps`` plus accuracy vs T over ``steps_sweep``."""
    t0 = time.perf_counter()
    scores, spikes = learner.scores(val_x, steps)
    seconds = time.perf_counter() - t0
    pred = scores.argmax(1).numpy()
    cm = confusion(pred, val_y, len(classes))
    fan_in_out, fan_lateral = learner.synaptic_fan_out()
    metrics = {
        "steps": steps,
        "top1": topk_accuracy(scores, val_y, 1),
        "top5": topk_accuracy(scores, val_y, 5),
        "per_class": {c: float(cm[i, i] / max(1, cm[i].sum())) for i, c in enumerate(classes)},
        "confusion": cm.tolist(),
        "input_spikes_per_inference": spikes["input_spikes"],
        "output_spikes_per_inference": spikes["output_spikes"],
        "synops_per_inference": spiking_synops(spikes["input_spikes"], spikes["output_spikes"], fan_in_out, fan_lateral).synops,
        "inference_seconds": seconds,
        "accuracy_vs_steps": {},
    }
    cont = learner.predict_continuous(val_x)
    if cont is not None:  # the rule has a continuous approximation (CoLaNET)
        cont = cont.numpy()
        metrics["top1_continuous"] = float((cont == np.asarray(val_y)).mean())
        metrics["agreement_spiking_continuous"] = float((cont == pred).mean())
    for T in steps_sweep:
        s, _ = learner.scores(val_x, T) if T != steps else (scores, None)
        metrics["accuracy_vs_steps"][str(T)] = topk_accuracy(s, val_y, 1)
    return metrics


def versions() -> dict:
    import timm

    from . import __version__

    return {"python": sys.version.split()[0], "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "spikebridge": __version__, "platform": platform.platform()}


def cpu_busy_fraction(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs' time spent busy (not idle or waiting for I/O) over the next
    ``seconds``, from two readings of ``/proc/stat``; None where that file does not exist.

    Unlike the load average (a 1-minute moving average that still counts a benchmark that has
    just finished), this says whether other processes are using the cores now."""
    def snapshot():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = snapshot()
        time.sleep(seconds)  # a measurement window, not synchronisation
        total1, idle1 = snapshot()
    except OSError:
        return None
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def machine_info() -> dict:
    """What a benchmark ran on: CPU model, core counts, torch threads, GPU, `versions()`, date."""
    import os

    from .cpu import cpu_has_native_bf16, cpu_model
    from .currents import default_bf16

    cpu = cpu_model()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "cpus_usable": usable, "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "gpu": gpu,
            "simulation_precision": "bf16" if default_bf16() else "fp32",  # CoLaNET inference where bf16 is not given
            "simulation_precision_auto": "bf16" if cpu_has_native_bf16() else "fp32",  # what the opt-in 'auto' picks
            **versions(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_run(run_dir: str | Path, record: dict, raster: dict | None = None) -> None:
    """Write ``run.json``, figures and ``report.md`` into ``run_dir``."""
    from .io import write_json_atomic

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {**record, "versions": versions(), "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json_atomic(run_dir / "run.json", record)
    figures = plot_figures(run_dir, record, raster)
    (run_dir / "report.md").write_text(markdown(record, figures))


def plot_figures(run_dir: Path, record: dict, raster: dict | None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m, names = record["metrics"], []
    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = [int(t) for t in m["accuracy_vs_steps"]]
    ax.plot(xs, [100 * v for v in m["accuracy_vs_steps"].values()], "o-", label=f"{record['rule']} (spiking)")
    if "baseline" in record:
        ax.axhline(100 * record["baseline"]["top1"], color="gray", ls="--", label="tuned logistic regression (backprop)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "accuracy_vs_steps.png", dpi=120)
    names.append("accuracy_vs_steps.png")
    plt.close(fig)

    cm = np.asarray(m["confusion"])
    classes = list(m.get("per_class", {})) or [str(c) for c in range(len(cm))]
    n = len(cm)
    side = min(12.0, 3.5 + 0.32 * n)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="images")
    font = max(4.0, min(9.0, 160.0 / max(n, 1)))
    ax.set_xticks(range(n), classes, rotation=90, fontsize=font)
    ax.set_yticks(range(n), classes, fontsize=font)
    if n <= 30:  # counts in the cells (beyond that the colour bar carries them)
        for i, j in zip(*np.nonzero(cm)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=font,
                    color="white" if cm[i, j] > 0.6 * cm.max() else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion matrix ({int(cm.sum())} val images, T = {m['steps']})")
    fig.tight_layout()
    fig.savefig(run_dir / "confusion.png", dpi=120)
    names.append("confusion.png")
    plt.close(fig)

    if raster is not None:
        inputs, outputs = np.asarray(raster["inputs"]), np.asarray(raster["outputs"])
        names_of = raster.get("classes") or classes

        def cls(c):
            return names_of[c] if c is not None and c < len(names_of) else str(c)

        fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        t, i = np.nonzero(inputs)
        a1.scatter(t, i, s=2, marker="|", color="k", linewidths=0.5)
        a1.set_ylim(-0.5, inputs.shape[1] - 0.5)
        a1.set_ylabel(f"input feature\n(all {inputs.shape[1]})")
        t, j = np.nonzero(outputs)
        a2.scatter(t, j, s=60, marker="|", color="C3", linewidths=2)
        M = raster.get("microcolumns")
        if M:  # one band of M neurons per class column; the true and predicted columns shaded
            for c, colour in ((raster.get("label"), "C2"), (raster.get("prediction"), "C1")):
                if c is not None:
                    a2.axhspan(c * M - 0.5, (c + 1) * M - 0.5, color=colour, alpha=0.15, lw=0)
            if outputs.shape[1] // M <= 20:
                a2.set_yticks([c * M + (M - 1) / 2 for c in range(outputs.shape[1] // M)],
                              [cls(c) for c in range(outputs.shape[1] // M)], fontsize=7)
        a2.set_ylim(-0.5, outputs.shape[1] - 0.5)
        a2.set_ylabel("plastic neuron\n(by class column)")
        a2.set_xlabel("time step")
        a2.set_xlim(-0.5, inputs.shape[0] - 0.5)
        fired = int(outputs.sum())
        a2.set_title(f"{fired} plastic-neuron spikes; green: true class, orange: predicted", fontsize=8)
        truth, pred = raster.get("label"), raster.get("prediction")
        a1.set_title(f"{raster.get('source', 'one val example')}: true {cls(truth)}"
                     + (f", predicted {cls(pred)}" if pred is not None else ""), fontsize=9)
        fig.tight_layout()
        fig.savefig(run_dir / "raster.png", dpi=120)
        names.append("raster.png")
        plt.close(fig)
    return names


def summary_rows(record: dict) -> list[tuple[str, str]]:
    m = record["metrics"]
    rows = [("rule", record["rule"]), ("data set", record.get("dataset", "?")),
            ("time steps T", str(m["steps"])),
            ("top-1 (spiking)", f"{100 * m['top1']:.2f} %"), ("top-5 (spiking)", f"{100 * m['top5']:.2f} %")]
    if "top1_continuous" in m:
        rows.append(("top-1 (continuous approx.)", f"{100 * m['top1_continuous']:.2f} %"))
        rows.append(("spiking/continuous agreement", f"{100 * m['agreement_spiking_continuous']:.2f} %"))
    if "baseline" in record:
        b = record["baseline"]
        rows.append((f"logistic regression, C={b['C']:g} by CV on train (backprop)", f"{100 * b['top1']:.2f} %"))
        rows.append((f"{record['rule']} minus the tuned probe", f"{100 * (m['top1'] - b['top1']):+.2f} points"))
    rows += [("input spikes / inference", f"{m['input_spikes_per_inference']:.0f}"),
             ("output spikes / inference", f"{m['output_spikes_per_inference']:.1f}"),
             ("synaptic ops / inference", f"{m['synops_per_inference']:.0f}")]
    if "train_seconds" in record:
        rows.append(("training time", f"{record['train_seconds']:.1f} s"))
    return rows


def markdown(record: dict, figures: list[str]) -> str:
    lines = [f"# spikebridge run: {record['rule']} on {record.get('dataset', '?')}", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(record)]
    lines += ["", "## Accuracy vs time steps", "", "| T | top-1 |", "| --- | --- |"]
    lines += [f"| {t} | {100 * a:.2f} % |" for t, a in record["metrics"]["accuracy_vs_steps"].items()]
    lines += ["", "## Per-class accuracy", "", "| class | top-1 |", "| --- | --- |"]
    lines += [f"| {c} | {100 * a:.1f} % |" for c, a in record["metrics"]["per_class"].items()]
    lines += [""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)
