"""The whole pipeline on Akida: the Lite0 encoder converted to Akida 2.0 (QuantizeML + CNN2SNN, its own
environment) and the CoLaNET head exported to Akida (:mod:`spikebridge.deploy.akida`).

    SPIKEBRIDGE_AKIDA_FULL_PYTHON=$(.ci/akida-full-env) python benchmarks/akida_encoder.py
    python benchmarks/akida_encoder.py --quick          # digits, 64 val images -> results/quick/

Steps (:mod:`spikebridge.deploy.akida_encoder`): the encoder is converted once, calibrated on
``--calibration-images`` class-stratified images of the *train* split, and mapped onto virtual
Akida 2.0 devices (mapping needs no chip). CoLaNET is trained with the library defaults (seed 0)
on the fp32 pipeline's train features -- the deployed model does not see Akida's features while
it learns. On a class-stratified, seeded sample of ``--val-images`` val images (the Akida
software backend runs a few images per second on 2 cores, so not the full split), it reports:

* top-1 of CoLaNET (spiking, T = 32) on the fp32 pipeline's features and on the Akida encoder's,
  and their agreement (same decision);
* the same with the head on Akida too (``AkidaCoLaNET``, 4-bit inputs and weights, calibrated
  on the train rates; the ON/OFF coder runs on the host between the two Akida models);
* cosine similarity of the Akida encoder's features with the fp32 ones;
* the encoder's size, conversion time and mappings.

No Akida 2.0 silicon is on sale, so nothing here is run on a chip and no energy is measured.
Writes ``benchmarks/results/akida_encoder.json`` stamped with the machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from accuracy import features_for
from harness import result_path
from spikebridge.data import open_dataset
from spikebridge.deploy.akida import AkidaCoLaNET
from spikebridge.deploy.akida_encoder import akida_features, convert_encoder, dataset_pixels
from spikebridge.encoders import create_encoder
from spikebridge.energy import stratified_sample
from spikebridge.estimator import SpikingClassifier
from spikebridge.features import DEFAULT_CACHE
from spikebridge.io import write_json_atomic
from spikebridge.report import machine_info

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "datasets" / "imagenet64"))
    ap.add_argument("--calibration-images", type=int, default=256)
    ap.add_argument("--val-images", type=int, default=1280, help="class-stratified val sample scored on Akida")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--quick", action="store_true", help="digits, 64 calibration and 64 val images")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.dataset, args.calibration_images, args.val_images = "digits", 64, 64
    name = "digits" if args.dataset == "digits" else Path(args.dataset.split(":")[-1]).name
    out = result_path("akida_encoder.json", args.quick, args.out)
    splits = open_dataset(args.dataset)
    encoder = create_encoder("efficientnet_lite0", device="cpu")
    tr, va, _ = features_for(args.dataset, "efficientnet_lite0", args.cache_dir)
    if not (np.array_equal(tr.labels, splits.train.labels) and np.array_equal(va.labels, splits.val.labels)):
        raise SystemExit("cached features are not in the data set's row order")

    model_path = args.cache_dir / "akida-encoder" / f"{name}-lite0-{args.calibration_images}.fbz"
    t0 = time.perf_counter()
    sidecar = convert_encoder(encoder, splits.train, model_path, args.calibration_images)
    print(f"converted in {time.perf_counter() - t0:.0f} s: {sidecar['layers']} layers; "
          + ", ".join(f"{k} {'maps' if v['mapped'] else 'does not map'}" for k, v in sidecar["mappings"].items()), flush=True)

    rows = np.sort(stratified_sample(va.labels, args.val_images, seed=0))
    t0 = time.perf_counter()
    akida_x = akida_features(model_path, dataset_pixels(encoder, splits.val, rows))
    akida_seconds = time.perf_counter() - t0
    fp32_x, y = va.features[rows], va.labels[rows]
    cosine = (akida_x * fp32_x).sum(1) / (np.linalg.norm(akida_x, axis=1) * np.linalg.norm(fp32_x, axis=1) + 1e-12)

    clf = SpikingClassifier("colanet", seed=0).fit(tr.features, tr.labels)
    on_fp32, on_akida = clf.predict(fp32_x), clf.predict(akida_x)
    head = AkidaCoLaNET.from_colanet(clf.learner_.model, calibration=tr.features)
    head_fp32, head_akida = (clf.classes_[head.predict(x).numpy()] for x in (fp32_x, akida_x))
    top1 = lambda p: float((p == y).mean())  # noqa: E731
    result = {
        "dataset": args.dataset, "machine": machine_info(), "encoder": sidecar,
        "val_sample": {"images": int(len(rows)), "of": int(len(va.labels)), "sampling": "class-stratified, seed 0"},
        "akida_seconds_per_image": akida_seconds / max(1, len(rows)),
        "feature_cosine": {"mean": float(cosine.mean()), "min": float(cosine.min())},
        "colanet_spiking_T32": {"fp32_encoder": top1(on_fp32), "akida_encoder": top1(on_akida),
                                "agreement": float((on_fp32 == on_akida).mean())},
        "akida_head_4bit": {"fp32_encoder": top1(head_fp32), "akida_encoder": top1(head_akida),
                            "agreement_with_fp32_pipeline": float((head_akida == on_fp32).mean())},
        "note": "no Akida 2.0 silicon is on sale: mapped onto virtual devices, run in Akida's software backend, "
                "no energy measured",
    }
    write_json_atomic(out, result)
    print(f"top-1 on {len(rows)} val images: fp32 pipeline {100 * top1(on_fp32):.2f}, Akida encoder "
          f"{100 * top1(on_akida):.2f} (agreement {100 * result['colanet_spiking_T32']['agreement']:.2f} %), "
          f"Akida encoder + Akida head {100 * top1(head_akida):.2f}; wrote {out}")


if __name__ == "__main__":
    main()
