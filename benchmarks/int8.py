"""The int8 encoder (``--precision int8``): ImageNet-sample top-1, feature agreement, energy.

    python benchmarks/int8.py                  # top-1 (1,000 images), features, energy (~15 min on 2 cores)
    python benchmarks/int8.py --quick          # smoke run: 100 sample images, one calibration seed
    python benchmarks/extract.py               # the int8 timing rows (forward, end to end), alone on the machine

No timings here (accuracy and counts only; extraction speed is measured by
``benchmarks/extract.py``, whose ``int8 openvino`` variant runs only when nothing else shares
the cores). Sections (``--sections``, comma-separated):

* **top1** -- ImageNet-1k top-1 / top-5 on ``imagenet-sample`` (1,000 val images, one per class)
  of Lite0's own classifier through the library pipeline (``uint8`` pixels, OpenVINO): the fp32
  engine (the library default) against the int8 model of :meth:`spikebridge.encoders.Encoder.calibrate`,
  calibrated on ``--calibration-images`` images of the *train* split of ``--calibration-dataset``
  (ILSVRC-2012 train images of the 64-class task: disjoint from the val sample), for each
  ``--calibration-seeds`` (seed = which images are drawn).
* **features** -- per data set (``--dataset``, repeatable), the Lite0 features of the val split
  that the accuracy tables use, fp32 against int8 (from the feature cache; extracted if absent):
  cosine similarity per image, relative L2 error.
* **energy** -- encoder energy per image with fp32 MACs (4.6 pJ) and int8 MACs (0.23 pJ: 0.2 pJ
  multiply + 0.03 pJ add, Horowitz 2014, 45 nm), beside the heads: a logistic-regression ANN
  head (MACs at the same precision) and CoLaNET's spiking head (seed 0, default settings,
  trained on the int8 features of the first ``--dataset``; SynOps counted on its val split at
  T = 32, accumulates at 0.9 pJ fp32 or 0.03 pJ int8).

Writes ``benchmarks/results/int8.json`` (sections run are replaced, the others kept; ``--quick``:
``benchmarks/results/quick/int8.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from spikebridge.data import open_dataset  # noqa: E402
from spikebridge.encoders import DEFAULT_CALIBRATION_IMAGES, create_encoder  # noqa: E402
from spikebridge.energy import (DEFAULT_PJ_AC, DEFAULT_PJ_MAC, ENERGY_SOURCE, INT8_PJ_AC, INT8_PJ_MAC,  # noqa: E402
                                INT8_SOURCE, ann_head_macs, encoder_macs, energy_report, learner_ops, stratified_sample)
from spikebridge.errors import SpikebridgeError  # noqa: E402
from spikebridge.features import DEFAULT_CACHE, extract_features, tune_allocator  # noqa: E402
from spikebridge.report import machine_info  # noqa: E402

from harness import ROOT, result_path  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
SECTIONS = ("top1", "features", "energy")


def sample_top1(run, ds, encoder, batch: int) -> dict:
    """Top-1 / top-5 of ``run(uint8 pixels) -> logits`` over ``ds`` (library loader, in-process decoding)."""
    from spikebridge.features import pixel_loader

    top1 = top5 = 0
    labels = torch.as_tensor(ds.labels)
    preds = []
    for pixels, rows, bad in pixel_loader(ds, encoder, [list(range(b, min(b + batch, len(ds)))) for b in range(0, len(ds), batch)], 0):
        if bad:
            raise SpikebridgeError(f"unreadable image in imagenet-sample: {bad[0][1]}")
        logits = torch.as_tensor(np.asarray(run(pixels)))
        top = logits.topk(5, dim=1).indices
        y = labels[rows]
        top1 += int((top[:, 0] == y).sum())
        top5 += int((top == y[:, None]).any(dim=1).sum())
        preds.append(top[:, 0])
    return {"top1": top1 / len(ds), "top5": top5 / len(ds), "predictions": torch.cat(preds).tolist()}


def top1_section(args) -> dict:
    from extract import classifier_encoder, sample_dataset  # benchmarks/extract.py

    sample = sample_dataset(args.sample, args.sample_images)
    calib = open_dataset(str(args.calibration_dataset)).train
    clf, _ = classifier_encoder("efficientnet_lite0", fold=True)
    fp32 = dataclasses.replace(clf, backend="openvino")
    fp32.prepare(len(sample), args.batch)
    out = {"images": len(sample), "classifier": "efficientnet_lite0 with its ImageNet-1k head (logits as features)",
           "calibration_dataset": f"{args.calibration_dataset.name}/train ({len(calib):,} images)"}
    ref = sample_top1(fp32, sample, fp32, args.batch)
    out["fp32_openvino"] = {k: ref[k] for k in ("top1", "top5")}
    print(f"imagenet-sample ({len(sample)}): fp32 OpenVINO top-1 {100 * ref['top1']:.1f} %", flush=True)
    runs = []
    for seed in args.calibration_seeds:
        int8 = dataclasses.replace(clf, precision="int8", backend="openvino", calibration_images=args.calibration_images,
                                   calibration_seed=seed)
        t0 = time.perf_counter()
        record = int8.calibrate(calib, args.cache_dir)
        seconds = time.perf_counter() - t0
        int8.prepare(len(sample), args.batch)
        r = sample_top1(int8, sample, int8, args.batch)
        agree = float(np.mean(np.asarray(r["predictions"]) == np.asarray(ref["predictions"])))
        runs.append({"seed": seed, "top1": r["top1"], "top5": r["top5"], "agreement_with_fp32": agree,
                     "minus_fp32_points": 100 * (r["top1"] - ref["top1"]), "calibration": record,
                     "calibration_seconds_shared_machine": seconds})
        print(f"  int8, {record['images']} calibration images, seed {seed}: top-1 {100 * r['top1']:.1f} % "
              f"({100 * (r['top1'] - ref['top1']):+.1f} points), same prediction as fp32 on {100 * agree:.1f} %", flush=True)
    out["int8"] = runs
    deltas = [r["minus_fp32_points"] for r in runs]
    out["int8_top1_mean"] = float(np.mean([r["top1"] for r in runs]))
    out["int8_minus_fp32_points"] = {"mean": float(np.mean(deltas)), "min": float(min(deltas)), "max": float(max(deltas))}
    out["note"] = ("calibration_seconds_shared_machine: wall time of calibrate() (decode, convert, quantise, save) while "
                   "other jobs shared the cores: not a timing to publish")
    return out


def features_section(args) -> dict:
    out = {}
    for folder in args.dataset:
        splits = open_dataset(str(folder))
        fp32 = create_encoder(device="cpu", precision="fp32")
        int8 = create_encoder(device="cpu", precision="int8", calibration_images=args.calibration_images)
        extract_features(splits.train, int8, args.cache_dir, progress=False)  # calibrates (cached)
        a = extract_features(splits.val, fp32, args.cache_dir, progress=False)
        b = extract_features(splits.val, int8, args.cache_dir, progress=False)
        if not np.array_equal(a.index, b.index):
            raise SpikebridgeError(f"{folder.name}: fp32 and int8 entries keep different rows")
        x, y = a.features.astype(np.float64), b.features.astype(np.float64)
        cos = (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-30)
        rel = np.linalg.norm(x - y, axis=1) / np.maximum(np.linalg.norm(x, axis=1), 1e-30)
        out[folder.name] = {"split": "val", "images": len(a), "fp32_entry": a.key[:20], "int8_entry": b.key[:20],
                            "calibration": b.info["encoder"]["calibration"],
                            "cosine": {"mean": float(cos.mean()), "min": float(cos.min()), "p01": float(np.quantile(cos, 0.01))},
                            "relative_l2_error": {"mean": float(rel.mean()), "max": float(rel.max())}}
        print(f"{folder.name}: fp32 vs int8 val features, cosine mean {cos.mean():.4f} (min {cos.min():.4f}), "
              f"relative L2 error mean {rel.mean():.3f}", flush=True)
    return out


def energy_section(args) -> dict:
    from spikebridge.learner import create_learner
    from spikebridge.training import train

    enc = create_encoder(device="cpu", precision="fp32", backend="torch")
    macs = encoder_macs(enc)
    folder = args.dataset[0]
    splits = open_dataset(str(folder))
    int8 = create_encoder(device="cpu", precision="int8", calibration_images=args.calibration_images)
    tr = extract_features(splits.train, int8, args.cache_dir, progress=False)
    va = extract_features(splits.val, int8, args.cache_dir, progress=False)
    n_classes = len(splits.classes)
    learner = create_learner("colanet", tr.features.shape[1], n_classes, seed=0)
    learner, _ = train(learner, tr.features, tr.labels, progress=False)
    rows = stratified_sample(va.labels, min(args.energy_examples, len(va)), seed=0)
    ops, scores = learner_ops(learner, va.features[rows], args.steps)
    top1 = float((scores.argmax(1).numpy() == va.labels[rows]).mean())
    head = ann_head_macs(tr.features.shape[1], n_classes)
    fp32 = energy_report(macs, head, ops, DEFAULT_PJ_MAC, DEFAULT_PJ_AC)
    int8_rep = energy_report(macs, head, ops, INT8_PJ_MAC, INT8_PJ_AC)
    mixed = energy_report(macs, head, ops, DEFAULT_PJ_MAC, DEFAULT_PJ_AC, pj_mac_encoder=INT8_PJ_MAC)
    per_op = {
        "fp32_mac_over_fp32_ac": DEFAULT_PJ_MAC / DEFAULT_PJ_AC,
        "int8_mac_over_int8_ac": INT8_PJ_MAC / INT8_PJ_AC,
        "int8_mac_over_fp32_ac": INT8_PJ_MAC / DEFAULT_PJ_AC,
    }
    heads = {
        "synops_per_inference": ops.synops,
        "ann_head_macs": head,
        "snn_head_over_ann_head_fp32": fp32["snn_head_vs_ann_head"],
        "snn_head_fp32_acs_over_ann_head_int8_macs": mixed["snn_head"]["pJ"] / (head * INT8_PJ_MAC),
        "snn_head_over_ann_head_int8": int8_rep["snn_head_vs_ann_head"],
    }
    print(f"encoder {macs / 1e6:.0f} MMACs: {macs * DEFAULT_PJ_MAC / 1e9:.3f} mJ fp32, {macs * INT8_PJ_MAC / 1e9:.4f} mJ int8; "
          f"SNN head {ops.synops:.3g} SynOps; SNN/ANN head energy {heads['snn_head_over_ann_head_fp32']:.3g} (fp32 both), "
          f"{heads['snn_head_fp32_acs_over_ann_head_int8_macs']:.3g} (fp32 ACs vs int8 MACs), "
          f"{heads['snn_head_over_ann_head_int8']:.3g} (int8 both)", flush=True)
    return {"dataset": folder.name, "encoder": "efficientnet_lite0", "encoder_macs": macs,
            "pj_per_mac": {"fp32": DEFAULT_PJ_MAC, "int8": INT8_PJ_MAC}, "pj_per_ac": {"fp32": DEFAULT_PJ_AC, "int8": INT8_PJ_AC},
            "sources": {"fp32": ENERGY_SOURCE, "int8": INT8_SOURCE},
            "encoder_energy_uJ": {"fp32": macs * DEFAULT_PJ_MAC / 1e6, "int8": macs * INT8_PJ_MAC / 1e6},
            "encoder_fp32_over_int8": DEFAULT_PJ_MAC / INT8_PJ_MAC,
            "spiking_head": {"rule": "colanet", "seed": 0, "steps": args.steps, "examples": len(rows),
                             "features": "int8", "top1_on_those_examples": top1, "neurons": learner.n_neurons()},
            "reports": {"all fp32": fp32, "all int8": int8_rep, "int8 encoder, fp32 heads": mixed},
            "per_operation_ratio": per_op, "heads": heads,
            "encoder_share_of_snn_pipeline": {"fp32": fp32["encoder_share_snn"], "int8": int8_rep["encoder_share_snn"]}}


def main(argv=None) -> int:
    os.environ.setdefault("SPIKEBRIDGE_SIMULATION_PRECISION", "fp32")  # as the accuracy tables
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--sample", type=Path, default=SHARED / "imagenet-sample")
    ap.add_argument("--sample-images", type=int, default=1000)
    ap.add_argument("--calibration-dataset", type=Path, default=SHARED / "imagenet64",
                    help="top1: the data set whose train split calibrates the classifier (default imagenet64)")
    ap.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES)
    ap.add_argument("--calibration-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dataset", type=Path, action="append",
                    help="features/energy: image folder(s) with train/ and val/ (default imagenet64, imagenette)")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--energy-examples", type=int, default=2048, help="val examples the spiking head's SynOps are counted on")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--quick", action="store_true", help="100 sample images, one calibration seed, 512 energy examples")
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default: benchmarks/results/int8.json; --quick: benchmarks/results/quick/int8.json)")
    args = ap.parse_args(argv)
    args.out = result_path("int8.json", args.quick, args.out)  # read, merged into and written
    if args.quick:
        args.sample_images, args.calibration_seeds, args.energy_examples = 100, args.calibration_seeds[:1], 512
    sections = [s for s in args.sections.split(",") if s]
    if unknown := set(sections) - set(SECTIONS):
        raise SpikebridgeError(f"--sections: unknown {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    if not 1 <= args.sample_images <= 1000:
        raise SpikebridgeError(f"--sample-images must be in 1..1000, not {args.sample_images}")
    args.dataset = args.dataset or [SHARED / "imagenet64", SHARED / "imagenette"]
    tune_allocator()
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result.update({"benchmark": "int8", "machine": machine_info(), "load_average_start": list(os.getloadavg())})
    for name in sections:
        result[name] = {"top1": top1_section, "features": features_section, "energy": energy_section}[name](args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
