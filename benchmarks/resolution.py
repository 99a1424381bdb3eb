"""Where the gap to the reference 99.09 % comes from: encoder and input resolution.

    python benchmarks/resolution.py            # both parts below, a few minutes per extraction
    python benchmarks/resolution.py --part sample

1. ``sample``: ImageNet-1k top-1 of each pretrained classifier on ``imagenet-sample`` (1,000
   full-resolution ImageNet val images, one per class) as shipped, and after shrinking each
   image to 84 x 84 px first (the resolution of the 64-class set; mini-ImageNet's), then
   the model's own preprocessing. The difference is what 84-px inputs cost the pretrained network.
2. ``probe``: the linear probe (logistic regression on standardised features, C chosen by
   3-fold CV on train among 0.003, 0.01, 0.03, where the wide search of ``accuracy.py`` put it
   on this data) on imagenet64 features for Lite0 / Lite1 / Lite2 at their native resolution
   and for Lite0 with the 84-px images fed at 84, 128 and 224 px.

Writes ``benchmarks/results/resolution.json`` (``--quick``: ``benchmarks/results/quick/resolution.json``).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import timm
import torch
from PIL import Image

from spikebridge.baselines import choose_logistic_c, logistic_baseline
from spikebridge.data import open_dataset
from spikebridge.encoders import create_encoder, load_pretrained
from spikebridge.energy import encoder_macs
from spikebridge.features import DEFAULT_CACHE, extract_features, tune_allocator
from spikebridge.report import machine_info
from spikebridge.currents import PRECISION_ENV

# published accuracy: the fp32 simulation every CPU reproduces (spikebridge.currents.default_bf16)
os.environ.setdefault(PRECISION_ENV, "fp32")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
ENCODERS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@torch.inference_mode()
def sample_top1(name: str, shrink: int | None, limit: int | None = None) -> float:
    from encoders import imagenet_sample  # benchmarks/encoders.py: file list and labels

    files, labels = imagenet_sample(SHARED / "imagenet-sample")
    files, labels = files[:limit], labels[:limit]
    model, _ = load_pretrained(name)
    model = model.eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model), is_training=False)
    correct = 0
    for b in range(0, len(files), 50):
        images = []
        for f in files[b : b + 50]:
            img = Image.open(f).convert("RGB")
            if shrink:
                img = img.resize((shrink, shrink), Image.BICUBIC)
            images.append(transform(img))
        pred = model(torch.stack(images)).argmax(1)
        correct += int((pred == torch.tensor(labels[b : b + 50])).sum())
    return correct / len(files)


def probe_row(name: str, size: int | None, cache: Path) -> dict:
    splits = open_dataset(str(SHARED / "imagenet64"))
    enc = create_encoder(name, device="cpu")
    if size is not None:  # feed the images at another resolution (no crop: the images are already tight)
        enc = replace(enc, data_config={**enc.data_config, "input_size": (3, size, size), "crop_pct": 1.0})
    tr, va = (extract_features(ds, enc, cache, progress=False) for ds in (splits.train, splits.val))
    C, cv = choose_logistic_c(tr.features, tr.labels, grid=(0.003, 0.01, 0.03))
    out = logistic_baseline(tr.features, tr.labels, va.features, va.labels, C)
    res = enc.data_config["input_size"][1]
    return {"encoder": name, "input_px": res, "C": C, "cv_accuracy": {f"{c:g}": a for c, a in cv.items()},
            "top1": out["top1"], "top5": out["top5"], "macs_per_image": encoder_macs(enc)}


def main(argv=None):
    from harness import result_path  # benchmarks/harness.py

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["sample", "probe", "both"], default="both")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--quick", action="store_true",
                    help="the first 100 ImageNet-sample images; the probe for Lite0 at its native resolution only")
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default: benchmarks/results/resolution.json; "
                         "--quick: benchmarks/results/quick/resolution.json)")
    args = ap.parse_args(argv)
    args.out = result_path("resolution.json", args.quick, args.out)  # read, merged into and written
    limit = 100 if args.quick else None
    tune_allocator()
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result["machine"] = machine_info()
    result["quick"] = args.quick
    if args.part in ("sample", "both"):
        result["imagenet_sample"] = {}
        for name in ENCODERS:
            full, small = sample_top1(name, None, limit), sample_top1(name, 84, limit)
            result["imagenet_sample"][name] = {"top1_full_resolution": full, "top1_from_84px": small}
            print(f"{name}: ImageNet-sample top-1 {100 * full:.1f} % full resolution, {100 * small:.1f} % from 84 px", flush=True)
    if args.part in ("probe", "both"):
        rows = [(n, None) for n in ENCODERS] + [("efficientnet_lite0", 84), ("efficientnet_lite0", 128)]
        rows = rows[:1] if args.quick else rows
        result["imagenet64_probe"] = []
        for name, size in rows:
            row = probe_row(name, size, args.cache_dir)
            result["imagenet64_probe"].append(row)
            print(f"{name} at {row['input_px']} px: probe top-1 {100 * row['top1']:.2f} % (C={row['C']:g}), "
                  f"{row['macs_per_image'] / 1e6:.0f} MMACs", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
