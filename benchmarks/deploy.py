"""Neuromorphic deployment check on Imagenette: NIR round trip, peer simulators, int8 model.

    python benchmarks/deploy.py                                   # extracts Lite0 features if needed
    python benchmarks/deploy.py --train CACHE/train_key --val CACHE/val_key   # cached feature folders

Trains CoLaNET (shipped adaptive defaults, mini-batch 16, T = 32), then reports

* import identity: export to NIR (+ sidecar), import, predictions identical on every val example;
* peer agreement: the graph run by snnTorch's and Norse's NIR import on the same input spikes,
  decided by the same readout, vs our predictions on the full val split (plus the fraction of
  per-neuron spike counts equal to our simulation of the peer's own reset rule);
* float vs int8 (``Int8CoLaNET``) top-1 at T = 32, and the int8 model's size in bytes.

Writes benchmarks/results/deploy.json (``--quick``: benchmarks/results/quick/deploy.json), keeping
the keys the other deployment benchmarks wrote into it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from harness import result_path

import spikebridge as sb
from spikebridge.deploy.fixed_point import Int8CoLaNET
from spikebridge.currents import PRECISION_ENV
from spikebridge.deploy.peer_agreement import peer_predictions
from spikebridge.learner import create_learner
from spikebridge.training import train

# published accuracy: the fp32 simulation every CPU reproduces (spikebridge.currents.default_bf16)
os.environ.setdefault(PRECISION_ENV, "fp32")

ROOT = Path(__file__).resolve().parent.parent


def load(args):
    if args.train and args.val:
        from spikebridge.features import load_features

        return load_features(args.train), load_features(args.val)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from accuracy import features_for

    tr, va, _ = features_for(args.dataset, "efficientnet_lite0", args.cache_dir)
    return tr, va


def top1(pred, labels) -> float:
    return float((np.asarray(pred) == np.asarray(labels)).mean())


def main(argv=None):
    from spikebridge.features import DEFAULT_CACHE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "datasets" / "imagenette"))
    ap.add_argument("--train", type=Path, default=None, help="cached train feature folder (skips extraction)")
    ap.add_argument("--val", type=Path, default=None, help="cached val feature folder")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--epochs", type=int, default=None, help="default: CoLaNET's adaptive epochs")
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peers", nargs="*", default=["snntorch", "norse"])
    ap.add_argument("--quick", action="store_true", help="2 epochs, a seeded class-stratified 600-example val sample")
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default: benchmarks/results/deploy.json; --quick: benchmarks/results/quick/deploy.json)")
    args = ap.parse_args(argv)
    args.out = result_path("deploy.json", args.quick, args.out)  # read, merged into and written

    tr, va = load(args)
    if args.quick:
        from dataclasses import replace

        from spikebridge.energy import stratified_sample

        args.epochs = args.epochs or 2
        keep = stratified_sample(va.labels, 600, seed=args.seed)
        va = replace(va, features=va.features[keep], labels=va.labels[keep], index=va.index[keep])
    t0 = time.perf_counter()
    learner = create_learner("colanet", tr.features.shape[1], len(np.unique(tr.labels)), seed=args.seed, steps=args.steps)
    learner, _ = train(learner, tr.features, tr.labels, epochs=args.epochs, batch_size=args.train_batch, progress=False)
    model = learner.model
    result = {"quick": args.quick, "n_train": len(tr), "n_val": len(va), "steps": args.steps, "train_seconds": time.perf_counter() - t0,
              "neurons": int(model.active.sum()), "inputs": model.n_inputs}
    ours = model.predict_spiking(va.features, args.steps)
    result["float_top1"] = top1(ours, va.labels)
    print(f"CoLaNET trained: {result['neurons']} recruited LIF neurons, float top-1 at T={args.steps}: "
          f"{100 * result['float_top1']:.2f} % ({len(va)} val)")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = sb.export(model, Path(tmp) / "model.nir", format="nir", classes=va.classes)
        back = sb.load(Path(tmp) / "model.nir")
        identical = bool(torch.equal(back.predict_spiking(va.features, args.steps), ours))
        result["nir"] = {"identical_predictions": identical, "graph_bytes": summary["bytes"],
                         "sidecar_bytes": summary["sidecar_bytes"], "nodes": summary["nodes"],
                         "seconds": time.perf_counter() - t0}
        print(f"NIR export -> import: predictions identical on all {len(va)} val examples: {identical} "
              f"(graph {summary['bytes']} bytes + sidecar {summary['sidecar_bytes']} bytes)")

        result["peers"] = {}
        for peer in args.peers:
            t0 = time.perf_counter()
            try:
                r = peer_predictions(model, va.features, peer, steps=args.steps)
            except ImportError as exc:
                print(f"{peer}: not installed ({exc})")
                continue
            result["peers"][peer] = {"agreement": r["agreement"], "top1": top1(r["predictions"], va.labels),
                                     "reference_spike_match": r["reference_spike_match"], "peer_reset": r["peer_reset"],
                                     "disagreements": int((r["predictions"] != r["ours"]).sum()),
                                     "seconds": time.perf_counter() - t0}
            p = result["peers"][peer]
            print(f"{peer}: predictions agree with ours on {100 * p['agreement']:.2f} % of {len(va)} val examples "
                  f"({p['disagreements']} differ; peer top-1 {100 * p['top1']:.2f} %; reset {p['peer_reset']}; "
                  f"spike counts equal to our simulation of that reset: {100 * p['reference_spike_match']:.2f} %)")

        for reset in ("subtract", "zero"):
            q = Int8CoLaNET.quantise(model, reset)
            t0 = time.perf_counter()
            pred = q.predict(va.features, args.steps)
            entry = {"top1": top1(pred, va.labels), "agreement_with_float": float((pred == ours).double().mean()),
                     "seconds": time.perf_counter() - t0, "exponent": q.exponent, "decay_dv": q.decay_dv,
                     "threshold_q": q.threshold.tolist(), "lateral_q": q.lateral.tolist()}
            if reset == "subtract":
                s = q.save(Path(tmp) / "model.int8.safetensors")
                entry.update(file_bytes=s["file_bytes"], network_bytes=s["network_bytes"],
                             float32_weight_bytes=s["float32_weight_bytes"], bit_widths=s["bit_widths"])
            result[f"int8_{reset}"] = entry
    i8 = result["int8_subtract"]
    print(f"int8 (8-bit weights x 2^{i8['exponent']}, 24-bit membrane, decay {4096 - i8['decay_dv']}/4096): "
          f"top-1 {100 * i8['top1']:.2f} % vs float {100 * result['float_top1']:.2f} % "
          f"({100 * (i8['top1'] - result['float_top1']):+.2f} points; same prediction as float on "
          f"{100 * i8['agreement_with_float']:.2f} %)")
    print(f"int8 with Loihi-1 reset to zero: top-1 {100 * result['int8_zero']['top1']:.2f} %")
    print(f"int8 model size: {i8['network_bytes']} bytes on chip (weights, thresholds, lateral, decay, exponent, "
          f"class map), {i8['file_bytes']} bytes as a file (with the host-side normaliser); float32 weights "
          f"alone: {i8['float32_weight_bytes']} bytes")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from spikebridge.report import machine_info

    result["machine"] = machine_info()
    # deploy.json is shared with the Akida, NIR-consumer and integer-learning benchmarks: keep their keys
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    from spikebridge.io import write_json_atomic

    write_json_atomic(args.out, {**previous, **result})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
