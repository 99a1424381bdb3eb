"""Encoder table: ImageNet-sample top-1/top-5, MACs, feature size and resolution per encoder.

    python benchmarks/encoders.py                                  # Lite0, Lite1, Lite2 (offline wheels)
    python benchmarks/encoders.py --encoder efficientnet_lite2     # one encoder
    python benchmarks/encoders.py --limit 100                      # first 100 images only (smoke run)

Each encoder is the full pretrained model (``load_pretrained``: classifier included), run on
every image of ``../shared/datasets/imagenet-sample`` (1,000 ImageNet val images, one per
class, named ``<wnid>_<label>.JPEG``; the ImageNet-1k class index of a wnid is its position
among the sorted wnids) with the preprocessing of the model's own timm data config, i.e.
at its native resolution. MACs per image are counted by :func:`spikebridge.energy.count_macs`
(torch's FLOP counter / 2, convolutions and matrix products only) for the feature extractor
that spikebridge runs (``create_encoder``, classifier removed) and for the full classifier.
Writes ``benchmarks/results/encoders.json`` stamped with :func:`spikebridge.report.machine_info`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import timm
import torch
from PIL import Image
from tqdm.auto import tqdm

from spikebridge.encoders import create_encoder, load_pretrained
from spikebridge.energy import DEFAULT_PJ_MAC, count_macs, encoder_macs
from spikebridge.errors import SpikebridgeError
from spikebridge.features import tune_allocator
from spikebridge.report import machine_info

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "imagenet-sample"
DEFAULT_ENCODERS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def imagenet_sample(folder: Path) -> tuple[list[Path], list[int]]:
    """Sorted image files and their ImageNet-1k class indices."""
    files = sorted(folder.glob("*.JPEG"))
    wnids = [f.name.split("_", 1)[0] for f in files]
    if len(files) != 1000 or len(set(wnids)) != 1000:
        raise SpikebridgeError(f"{folder} must hold 1000 images named <wnid>_*.JPEG, one per class (found {len(files)})")
    index = {w: i for i, w in enumerate(sorted(wnids))}
    return files, [index[w] for w in wnids]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, config: dict, files: list[Path], labels: list[int], batch: int, name: str) -> dict:
    transform = timm.data.create_transform(**config, is_training=False)
    model = model.eval().to(memory_format=torch.channels_last)
    top1 = top5 = 0
    seconds = 0.0
    for b in tqdm(range(0, len(files), batch), desc=name, unit="batch", leave=False):
        x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files[b : b + batch]])
        y = torch.tensor(labels[b : b + batch])
        t0 = time.perf_counter()
        logits = model(x.contiguous(memory_format=torch.channels_last))
        seconds += time.perf_counter() - t0
        if not torch.isfinite(logits).all():
            raise SpikebridgeError(f"{name}: non-finite logits on images {b}..{b + len(y) - 1}")
        top = logits.topk(5, dim=1).indices
        top1 += int((top[:, 0] == y).sum())
        top5 += int((top == y[:, None]).any(dim=1).sum())
    n = len(files)
    return {"images": n, "top1": top1 / n, "top5": top5 / n, "top1_correct": top1, "top5_correct": top5,
            "forward_seconds": seconds, "images_per_s": n / seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", action="append", help=f"encoder name, repeatable (default: {', '.join(DEFAULT_ENCODERS)})")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="imagenet-sample folder")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (smoke run)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "encoders.json")
    args = ap.parse_args(argv)

    tune_allocator()
    files, labels = imagenet_sample(args.data)
    if args.limit:
        files, labels = files[: args.limit], labels[: args.limit]
    rows = {}
    for name in args.encoder or DEFAULT_ENCODERS:
        model, source = load_pretrained(name)
        config = timm.data.resolve_data_config({}, model=model)
        encoder = create_encoder(name, device="cpu")  # what spikebridge runs: classifier removed
        if encoder.data_config != config:
            raise SpikebridgeError(f"{name}: create_encoder's preprocessing {encoder.data_config} differs from {config}")
        c, h, w = config["input_size"]
        full_macs = count_macs(model.eval(), torch.zeros(1, c, h, w))
        feature_macs = encoder_macs(encoder)
        row = {"architecture": model.default_cfg.get("architecture"), "weight_source": source,
               "weights_sha256": encoder.weight_checksum, "feature_dim": encoder.feature_dim,
               "resolution": [h, w], "preprocessing": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
               "params": sum(p.numel() for p in model.parameters()),
               "macs_per_image_features": feature_macs, "macs_per_image_classifier": full_macs,
               "encoder_energy_uJ": feature_macs * DEFAULT_PJ_MAC / 1e6}
        del encoder
        row.update(evaluate(model, config, files, labels, args.batch, name))
        rows[name] = row
        print(f"{name:22s} {h}px  D={row['feature_dim']}  {feature_macs / 1e6:7.1f} MMACs (features)  "
              f"top-1 {100 * row['top1']:.1f} %  top-5 {100 * row['top5']:.1f} %  ({source})", flush=True)

    result = {"benchmark": "encoders", "data": str(args.data.name), "images": len(files),
              "label_rule": "ImageNet-1k index = position of the file's wnid among the sorted wnids",
              "mac_counter": "torch.utils.flop_counter / 2 (conv + matmul only)", "pj_per_mac": DEFAULT_PJ_MAC,
              "batch": args.batch, "machine": machine_info(), "encoders": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
