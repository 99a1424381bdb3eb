"""Accuracy vs energy per inference across encoder cut points and time steps T.

    python benchmarks/energy.py --quick      # 60 train + 30 val images per class, a few minutes
    python benchmarks/energy.py              # all of Imagenette per cut (~3.5 min extraction per cut on 2 cores)
    python benchmarks/energy.py --train /tmp/sbcache/0836150d6c3e318db6ad --val /tmp/sbcache/8e1c0e0c2ad83d3f022a
                                             # full-network features from a cache (full mode; cuts still extracted)

For every cut point of the encoder (``none`` = the full network, else ``create_encoder(cut=k)``
pooling stage ``k`` and never running the later layers) the features of the same images are
extracted (cached by spikebridge), CoLaNET is trained with its local rule, and the spiking
head is evaluated at each T. Energy per inference = encoder MACs (torch FLOP counter) x
pJ/MAC + spiking-head SynOps and coder ACs x pJ/AC + membrane updates x pJ/MAC
(:mod:`spikebridge.energy`; defaults 4.6 pJ/MAC and 0.9 pJ/AC, Horowitz 2014, 45 nm).
The ANN alternative on the same features is a logistic-regression head (its MACs:
``features x classes``). Writes ``benchmarks/results/energy.json`` and
``benchmarks/results/energy_accuracy.png`` (``--quick``: both under ``benchmarks/results/quick/``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # small-op loops on a shared CPU (see speed.py)

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from spikebridge.data import open_dataset
from spikebridge.encoders import create_encoder
from spikebridge.energy import (DEFAULT_PJ_AC, DEFAULT_PJ_MAC, ann_head_macs, encoder_macs, energy_report,
                                format_energy, learner_ops)
from spikebridge.features import DEFAULT_CACHE, extract_features, load_features
from spikebridge.baselines import logistic_baseline
from spikebridge.learner import create_learner
from spikebridge.training import train
from spikebridge.currents import PRECISION_ENV

from harness import result_path

# published accuracy: the fp32 simulation every CPU reproduces (spikebridge.currents.default_bf16)
os.environ.setdefault(PRECISION_ENV, "fp32")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "imagenette"


def subsample(ds, per_class: int):
    """The first ``per_class`` samples of every class of an ImageDataset."""
    seen: dict[int, int] = {}
    keep = []
    for key, label in ds.samples:
        if seen.get(label, 0) < per_class:
            keep.append((key, label))
            seen[label] = seen.get(label, 0) + 1
    return replace(ds, samples=keep)


def parse_cut(text: str):
    return None if text.lower() in ("none", "full", "-") else int(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a per-class subset of train and val images: a few minutes")
    ap.add_argument("--dataset", default=str(DEFAULT_DATA))
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--cuts", nargs="+", type=parse_cut, default=[None, 4, 3, 2], help="cut points ('none' = full network)")
    ap.add_argument("--steps", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32], help="time steps T evaluated")
    ap.add_argument("--train-per-class", type=int, default=None, help="train images per class (quick: 60; full: all)")
    ap.add_argument("--val-per-class", type=int, default=None, help="val images per class (quick: 30; full: all)")
    ap.add_argument("--train", type=Path, default=None, help="cached full-network train features (used for cut 'none' in full mode)")
    ap.add_argument("--val", type=Path, default=None, help="cached full-network val features")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pj-mac", type=float, default=DEFAULT_PJ_MAC)
    ap.add_argument("--pj-ac", type=float, default=DEFAULT_PJ_AC)
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=None,
                    help="result file, the figure beside it (default: benchmarks/results/energy.json; "
                         "--quick: benchmarks/results/quick/energy.json)")
    ap.add_argument("--replot", type=Path, default=None, help="only redraw the figure from an energy.json")
    args = ap.parse_args(argv)
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.replot.with_name("energy_accuracy.png"))
        return
    args.out = result_path("energy.json", args.quick, args.out)
    train_pc = args.train_per_class or (60 if args.quick else None)
    val_pc = args.val_per_class or (30 if args.quick else None)
    t_start = time.perf_counter()

    splits = open_dataset(args.dataset, train_pc)
    val_ds = subsample(splits.val, val_pc) if val_pc else splits.val
    n_classes = len(splits.classes)
    results = []
    for cut in tqdm(args.cuts, desc="cut points", unit="cut"):
        enc = create_encoder(args.encoder, cut=cut, device="cpu")
        macs = encoder_macs(enc)
        if cut is None and args.train and args.val and not (train_pc or val_pc):
            tr, va = load_features(args.train), load_features(args.val)
        else:
            tr, va = (extract_features(ds, enc, args.cache_dir) for ds in (splits.train, val_ds))
        learner = create_learner("colanet", tr.features.shape[1], n_classes, seed=args.seed, steps=max(args.steps))
        t0 = time.perf_counter()
        learner, _ = train(learner, tr.features, tr.labels, epochs=args.epochs, batch_size=16, progress=False)
        train_s = time.perf_counter() - t0
        lr = logistic_baseline(tr.features, tr.labels, va.features, va.labels)
        head = ann_head_macs(enc.feature_dim, n_classes)
        ann = energy_report(macs, head, None, args.pj_mac, args.pj_ac)
        row = {"cut": cut, "feature_dim": enc.feature_dim, "encoder_macs": macs, "n_train": len(tr), "n_val": len(va),
               "train_seconds": train_s,
               "ann": {"top1": lr["top1"], "head_macs": head, "energy_pJ": ann["ann_pipeline_pJ"]}, "snn": {}}
        for T in args.steps:
            ops, scores = learner_ops(learner, va.features, T)
            top1 = float((scores.argmax(1).numpy() == va.labels).mean())
            rep = energy_report(macs, head, ops, args.pj_mac, args.pj_ac)
            row["snn"][T] = {"top1": top1, "synops": ops.synops, "input_spikes": ops.input_spikes,
                             "output_spikes": ops.output_spikes, "head_pJ": rep["snn_head"]["pJ"],
                             "energy_pJ": rep["snn_pipeline_pJ"], "encoder_share": rep["encoder_share_snn"]}
        results.append(row)

    # ------------------------------------------------------------------ table
    full = next((r for r in results if r["cut"] is None), results[0])
    print(f"\n### Accuracy vs energy per inference ({args.encoder}, {Path(args.dataset).name}: "
          f"{results[0]['n_train']} train / {results[0]['n_val']} val images; {args.pj_mac} pJ/MAC, {args.pj_ac} pJ/AC)\n")
    print("| cut | features | encoder MACs | encoder energy | head | T | top-1 | head SynOps or MACs | head energy | total / inference | encoder share |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        name = "full" if r["cut"] is None else f"stage {r['cut']}"
        enc_pj = r["encoder_macs"] * args.pj_mac
        print(f"| {name} | {r['feature_dim']} | {r['encoder_macs'] / 1e6:.1f} M | {format_energy(enc_pj)} | ANN (logistic) | - | "
              f"{100 * r['ann']['top1']:.2f} % | {r['ann']['head_macs']:,} MACs | {format_energy(r['ann']['head_macs'] * args.pj_mac)} | "
              f"{format_energy(r['ann']['energy_pJ'])} | {100 * enc_pj / r['ann']['energy_pJ']:.3f} % |")
        for T, s in r["snn"].items():
            print(f"| {name} | {r['feature_dim']} | {r['encoder_macs'] / 1e6:.1f} M | {format_energy(enc_pj)} | SNN (CoLaNET) | {T} | "
                  f"{100 * s['top1']:.2f} % | {s['synops']:,.0f} SynOps | {format_energy(s['head_pJ'])} | "
                  f"{format_energy(s['energy_pJ'])} | {100 * s['encoder_share']:.3f} % |")
    print(f"\nencoder MACs relative to the full network: " + ", ".join(
        f"{'full' if r['cut'] is None else 'stage ' + str(r['cut'])}: {r['encoder_macs'] / full['encoder_macs']:.2f}" for r in results))

    fig_path = args.out.with_name("energy_accuracy.png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"encoder": args.encoder, "dataset": args.dataset, "quick": args.quick, "train_per_class": train_pc,
              "val_per_class": val_pc, "pj_per_mac": args.pj_mac, "pj_per_ac": args.pj_ac, "epochs": args.epochs,
              "seed": args.seed, "results": results, "figure": str(fig_path), "seconds": time.perf_counter() - t_start,
              "torch": torch.__version__, "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
    args.out.write_text(json.dumps(record, indent=1, default=str))
    plot(json.loads(args.out.read_text()), fig_path)
    print(f"\nwrote {args.out} and {fig_path} ({record['seconds']:.0f} s)")


def plot(record: dict, path: Path) -> None:
    """Two panels: accuracy vs energy of the whole inference (the cut trade-off), and
    accuracy vs energy of the head alone (the T trade-off, ANN head for reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pj_mac, pj_ac = record["pj_per_mac"], record["pj_per_ac"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for i, r in enumerate(record["results"]):
        name = "full network" if r["cut"] is None else f"cut at stage {r['cut']} ({r['feature_dim']}-d)"
        steps = list(r["snn"])
        tot = [s["energy_pJ"] / 1e6 for s in r["snn"].values()]
        head = [s["head_pJ"] / 1e3 for s in r["snn"].values()]
        acc = [100 * s["top1"] for s in r["snn"].values()]
        ann_acc = 100 * r["ann"]["top1"]
        ax1.plot(tot, acc, "o-", color=f"C{i}", label=f"{name} + SNN head (T = {', '.join(steps)})")
        ax1.plot([r["ann"]["energy_pJ"] / 1e6], [ann_acc], "*", ms=11, color=f"C{i}", mec="k", label=f"{name} + ANN head")
        ax2.plot(head, acc, "o-", color=f"C{i}", label=f"{name}: SNN head")
        for T, x, y in zip(steps, head, acc):
            ax2.annotate(f"T={T}", (x, y), textcoords="offset points", xytext=(3, 4), fontsize=6, color=f"C{i}")
        ax2.plot([r["ann"]["head_macs"] * pj_mac / 1e3], [ann_acc], "*", ms=11, color=f"C{i}", mec="k",
                 label=f"{name}: ANN head")
    ax1.set_xscale("log")
    ax1.set_xlabel("energy per inference, encoder + head (uJ)")
    ax1.set_title("whole inference: the encoder dominates; cutting it trades accuracy", fontsize=8)
    ax2.set_xscale("log")
    ax2.set_xlabel("energy per inference, head only (nJ)")
    ax2.set_title("head only: SNN over T vs a dense ANN head", fontsize=8)
    for ax in (ax1, ax2):
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=5.5, loc="lower right")
    fig.suptitle(f"{record['encoder']} on {Path(record['dataset']).name}: accuracy vs energy "
                 f"({pj_mac} pJ/MAC, {pj_ac} pJ/AC, 45 nm; arithmetic only)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
