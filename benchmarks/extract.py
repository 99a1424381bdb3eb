"""Feature extraction against this machine's limits: decoding, forward pass, end to end, roofline.

    python benchmarks/extract.py --quick     # ~1-2 min: 3 batches per measurement, eager variants only,
                                             # 100 imagenet-sample images; writes benchmarks/results/quick/extract.json
    python benchmarks/extract.py             # full, ~10-15 min alone on 2 cores: imagenette and imagenet64
                                             # (2,048 val images each), compiled variants, worker sweep,
                                             # ONNX Runtime / OpenVINO, all 1,000 imagenet-sample images
    python benchmarks/extract.py --dataset ../shared/datasets/imagenet64 --images 0 --threads 2
    python benchmarks/extract.py --variants "fp32 openvino,int8 openvino" --out benchmarks/results/extract_int8.json
                                             # the int8 rows alone (~5 min alone on 2 cores): library default vs int8

Everything runs on the same images of each data set (``--images`` rows of the val split,
evenly spaced; a multiple of ``--batch``) and on the CPU:

* **decode** -- the data pipeline alone (JPEG decode, resize, crop to ``uint8`` pixels, collate)
  through :func:`spikebridge.features.pixel_loader` with the library's worker setting
  (:func:`~spikebridge.features.default_workers`, one thread per worker), and with no worker
  process (one core's rate).
* **forward** -- the encoder alone on preloaded ``uint8`` pixel batches, normalisation to
  float included (it runs in the main process, as in extraction; its eager cost is also
  reported alone): the old network (BatchNorms not folded), the folded network in fp32 and
  bf16 autocast, in full mode (or with ``--compile``) both through ``torch.compile``
  (inductor, frozen weights, normalisation fused in; compile time reported separately), and
  the library's OpenVINO engine (``backend="openvino"``, fp32, normalisation included), and the
  int8 model (``precision="int8"``: NNCF post-training quantisation, calibrated on 300 images of
  the data set's *train* split; the calibration -- decode, convert, quantise, save the IR -- is
  timed apart, into a fresh cache, as ``int8_calibration``).
* **end to end** -- :func:`spikebridge.features.extract_features` into a fresh temporary cache,
  as every workflow runs it (loader workers, normalisation, forward, shard writes), for each
  forward variant; full mode adds a sweep over the worker count.
* **roofline** -- encoder MACs per image (:func:`spikebridge.energy.encoder_macs`) against the
  measured rate of a ``--gemm`` cubed ``torch.matmul`` in fp32 and bf16 with the same threads:
  ``bound img/s = GEMM MAC/s / MACs per image``. Targets: end to end within 1.25x of the
  forward (forward share >= 0.8) and forward >= 60 % of the fp32 bound.
* **top-1** on ``imagenet-sample`` (ImageNet-1k classifier of the same weights): the reference
  preprocessing of ``benchmarks/encoders.py`` (timm transform, BatchNorms unfolded, fp32), the
  library pipeline in fp32 and bf16, JPEG draft decoding where it triggers (at a reduced input
  size, since the 256-px sample images are never >= 2x the native 256-px resize), the int8 model
  (calibrated on 300 train images of ``--int8-calibration``, default the last data set), and ONNX
  Runtime / OpenVINO on the same pixels when installed (``pip install -e .[onnx]``).
* **int8 target** (issue 23): int8 end to end >= 2.5x the library default's end to end.
  ``--variants`` runs a subset of the forward variants (e.g. ``"fp32 openvino,int8 openvino"``)
  and then skips the ONNX-file backends.

Writes ``benchmarks/results/extract.json`` (``--quick``: ``benchmarks/results/quick/extract.json``)
stamped with :func:`spikebridge.report.machine_info` and the load average before and after:
timings taken while other jobs share the cores are not the machine's.
"""

from __future__ import annotations

import argparse
import collections
import copy
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from spikebridge.cpu import cpu_has_native_bf16
from spikebridge.data import ImageDataset, draft_scale, open_dataset
from spikebridge.encoders import (
    AUTO_COMPILE_MIN_IMAGES,
    AUTO_OPENVINO_MIN_IMAGES,
    Encoder,
    create_encoder,
    cxx_compiler,
    fold_batchnorm,
    load_pretrained,
    nncf_installed,
    openvino_installed,
    resolve_precision,
    state_checksum,
)
from spikebridge.energy import encoder_macs
from spikebridge.errors import SpikebridgeError
from spikebridge.features import default_workers, extract_features, pixel_loader, tune_allocator
from spikebridge.report import machine_info

from harness import ROOT, result_path

SHARED = ROOT.parent / "shared" / "datasets"
TARGET_RATIO = 1.25  # end-to-end time <= 1.25 x forward time
TARGET_ROOFLINE = 0.60  # forward >= 60 % of the fp32 GEMM bound
TARGET_INT8_SPEEDUP = 2.5  # int8 end to end >= 2.5x the library default's end to end (issue 23)
INT8 = "int8 openvino"


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


# ---------------------------------------------------------------------------------- roofline
def gemm_rate(dtype: torch.dtype, n: int, reps: int) -> dict:
    """Best of ``reps`` timings of an ``n`` cubed matmul: FLOP/s and MAC/s."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "seconds": best, "gflop_s": 2 * n**3 / best / 1e9, "gmac_s": n**3 / best / 1e9}


# ---------------------------------------------------------------------------------- data
def subset(ds: ImageDataset, n: int) -> ImageDataset:
    """``n`` rows of ``ds``, evenly spaced (every class represented), as a data set of their own."""
    rows = np.linspace(0, len(ds) - 1, n).round().astype(int) if n < len(ds) else np.arange(len(ds))
    return dataclasses.replace(ds, samples=[ds.samples[i] for i in rows])


def batches_of(n: int, batch: int) -> list[list[int]]:
    return [list(range(b, min(b + batch, n))) for b in range(0, n, batch)]


def stored_sizes(ds: ImageDataset) -> list[tuple[int, int]]:
    sizes = []
    for key, _ in ds.samples:
        with Image.open(ds.root / key) as img:  # header only
            sizes.append(img.size)
    return sizes


def drafted_count(sizes: list[tuple[int, int]], encoder: Encoder) -> int:
    pre = encoder.preprocess()
    if not pre.jpeg_draft:
        return 0
    return sum(draft_scale(s, pre.resized_size(s)) > 1 for s in sizes)


def decode(ds: ImageDataset, encoder: Encoder, batch: int, workers: int) -> tuple[dict, list[torch.Tensor]]:
    """The data pipeline alone: img/s from loader creation to the last batch, and the pixel batches."""
    t0 = time.perf_counter()
    out = []
    for pixels, rows, bad in pixel_loader(ds, encoder, batches_of(len(ds), batch), workers):
        if bad:
            raise SpikebridgeError(f"unreadable image in the benchmark set: {bad[0][1]}")
        out.append(pixels)
    seconds = time.perf_counter() - t0
    return {"workers": workers, "seconds": seconds, "img_s": rate(len(ds), seconds)}, out


# ---------------------------------------------------------------------------------- forward
@torch.inference_mode()
def forward(encoder: Encoder, inputs: list[torch.Tensor], batch: int, n_images: int) -> dict:
    """The encoder alone on preloaded batches; the first call (compilation) is timed apart."""
    compiled = encoder.prepare(n_images, batch)
    return {"compiled": compiled, **backend_forward(encoder, inputs)}


def end_to_end(ds: ImageDataset, encoder: Encoder, batch: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="spikebridge-extract-bench-") as cache:
        t0 = time.perf_counter()
        fs = extract_features(ds, encoder, cache, batch_size=batch, workers=workers, progress=False)
        seconds = time.perf_counter() - t0
    if len(fs) != len(ds):
        raise SpikebridgeError(f"end-to-end run kept {len(fs)} of {len(ds)} images")
    return {"workers": workers, "seconds": seconds, "img_s": rate(len(ds), seconds)}


# ---------------------------------------------------------------------------------- top-1
def sample_dataset(folder: Path, limit: int) -> ImageDataset:
    from encoders import imagenet_sample  # benchmarks/encoders.py: file list and ImageNet-1k labels

    files, labels = imagenet_sample(folder)
    step = max(1, len(files) // limit)
    picked = list(range(0, len(files), step))[:limit]
    return ImageDataset("imagenet-sample", "val", [str(i) for i in range(1000)],
                        [(files[i].name, labels[i]) for i in picked], folder)


def classifier_encoder(name: str, fold: bool) -> tuple[Encoder, torch.nn.Module]:
    """The full pretrained classifier as an :class:`Encoder` (logits as features), and an unfolded copy."""
    model, source = load_pretrained(name)
    model = model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    cfg = timm.data.resolve_data_config({}, model=model)
    reference = copy.deepcopy(model)
    folded = 0
    if fold:
        example = torch.randn(1, *cfg["input_size"], generator=torch.Generator().manual_seed(0))
        folded = fold_batchnorm(model, example.contiguous(memory_format=torch.channels_last))
    enc = Encoder(name, model, cfg, source, state_checksum(reference), None, model.num_classes, torch.device("cpu"),
                  True, "fp32", True, False, folded)
    return enc, reference


def top1(run, ds: ImageDataset, encoder: Encoder, batch: int, workers: int) -> float:
    """Top-1 of ``run(uint8 pixels [B, H, W, 3]) -> logits`` over ``ds``, pixels from the library loader."""
    correct = 0
    labels = ds.labels
    for pixels, rows, bad in pixel_loader(ds, encoder, batches_of(len(ds), batch), workers):
        if bad:
            raise SpikebridgeError(f"unreadable image in imagenet-sample: {bad[0][1]}")
        logits = torch.as_tensor(np.asarray(run(pixels)))
        correct += int((logits.argmax(1).numpy() == labels[rows]).sum())
    return correct / len(ds)


@torch.inference_mode()
def reference_top1(model: torch.nn.Module, cfg: dict, ds: ImageDataset, batch: int) -> float:
    """The project's existing top-1 path (benchmarks/encoders.py): timm transform on full decodes, fp32."""
    from encoders import evaluate

    files = [ds.root / key for key, _ in ds.samples]
    return evaluate(model, cfg, files, ds.labels.tolist(), batch, "reference")["top1"]


# ---------------------------------------------------------------------------------- ONNX / OpenVINO
def export_onnx(module: torch.nn.Module, input_size: tuple, path: Path) -> None:
    x = torch.zeros(2, *input_size)
    torch.onnx.export(module.eval(), (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)


def onnxruntime_runner(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def openvino_runner(path: Path, threads: int, precision: str):
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": 1,
                                                          "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    return lambda x: compiled(x)[0]


def backend_forward(run, inputs: list) -> dict:
    """``run`` on every batch of ``inputs`` after one untimed-apart first call (compilation)."""
    t0 = time.perf_counter()
    run(inputs[0])
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for x in inputs:
        run(x)
    seconds = time.perf_counter() - t0
    return {"first_call_s": warm, "seconds": seconds, "img_s": rate(sum(len(x) for x in inputs), seconds)}


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few batches, eager variants only (~1-2 min)")
    ap.add_argument("--dataset", type=Path, action="append",
                    help="image folder with val/<class>/ (repeatable; default imagenette, plus imagenet64 in full mode)")
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help=f"torch intra-op threads of the main process (default {torch.get_num_threads()})")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--images", type=int, default=None,
                    help="images per data set, rounded down to whole batches (default 192 quick, 2048 full; 0: the whole val split)")
    ap.add_argument("--sample", type=Path, default=SHARED / "imagenet-sample", help="imagenet-sample folder (top-1)")
    ap.add_argument("--sample-images", type=int, default=None, help="imagenet-sample images (default 100 quick, 1000 full)")
    ap.add_argument("--compile", action="store_true", help="include torch.compile variants in --quick too")
    ap.add_argument("--gemm", type=int, default=2048, help="matmul size for the GEMM rate (default 2048)")
    ap.add_argument("--variants", default=None,
                    help="comma-separated forward variants to run (default: all; e.g. 'fp32 openvino,int8 openvino'); "
                         "a subset skips the ONNX-file backends")
    ap.add_argument("--int8-calibration", type=Path, default=None,
                    help="data set whose train split calibrates the int8 classifier for top-1 (default: the last --dataset)")
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default: benchmarks/results/extract.json; --quick: benchmarks/results/quick/extract.json)")
    args = ap.parse_args(argv)

    for option, value in (("--threads", args.threads), ("--batch", args.batch), ("--gemm", args.gemm)):
        if value < 1:
            raise SpikebridgeError(f"{option} must be >= 1, not {value}")
    if args.images is not None and args.images < 0:
        raise SpikebridgeError(f"--images must be >= 0, not {args.images}")
    if args.sample_images is not None and not 1 <= args.sample_images <= 1000:
        raise SpikebridgeError(f"--sample-images must be in 1..1000, not {args.sample_images}")
    datasets = args.dataset or ([SHARED / "imagenette"] + ([] if args.quick else [SHARED / "imagenet64"]))
    for folder in datasets:
        if not (folder / "val").is_dir():
            raise SpikebridgeError(f"--dataset {folder}: no val/ folder with class subfolders")
    if not args.sample.is_dir():
        raise SpikebridgeError(f"--sample {args.sample}: folder not found")
    n_images = 192 if args.quick and args.images is None else (2048 if args.images is None else args.images)
    n_sample = args.sample_images or (100 if args.quick else 1000)
    with_compile = args.compile or not args.quick
    out = result_path("extract.json", args.quick, args.out)

    torch.set_num_threads(args.threads)
    tune_allocator()
    started = time.time()
    load_start = os.getloadavg()
    reps = 3 if args.quick else 5

    # ------------------------------------------------------------------ encoders and roofline
    base = create_encoder(args.encoder, device="cpu", precision="fp32", compile=False, backend="torch")
    unfolded = create_encoder(args.encoder, device="cpu", precision="fp32", compile=False, fold_bn=False, backend="torch")
    variants = {"fp32 eager unfolded (old)": unfolded, "fp32 eager": base,
                "bf16 eager": dataclasses.replace(base, precision="bf16")}
    if with_compile:
        variants["fp32 compiled"] = dataclasses.replace(base, compile=True)
        variants["bf16 compiled"] = dataclasses.replace(base, precision="bf16", compile=True)
    if openvino_installed():  # the library's engine for fp32 CPU jobs (Encoder.prepare, backend="auto")
        variants["fp32 openvino"] = dataclasses.replace(base, backend="openvino")
        if nncf_installed():  # precision="int8": calibrated per data set below
            variants[INT8] = dataclasses.replace(base, precision="int8", backend="openvino")
    if args.variants:
        wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
        if unknown := [v for v in wanted if v not in variants]:
            raise SpikebridgeError(f"--variants: unknown or unavailable {unknown}; available: {', '.join(variants)}")
        variants = {k: v for k, v in variants.items() if k in wanted}
    macs = encoder_macs(unfolded)
    gemm = {"fp32": gemm_rate(torch.float32, args.gemm, reps), "bf16": gemm_rate(torch.bfloat16, args.gemm, reps)}
    bound = {k: g["gmac_s"] * 1e9 / macs for k, g in gemm.items()}
    print(f"{args.encoder}: {macs / 1e6:.1f} MMACs/image; GEMM {args.gemm}^3 fp32 {gemm['fp32']['gflop_s']:.0f} GFLOP/s, "
          f"bf16 {gemm['bf16']['gflop_s']:.0f} GFLOP/s -> bound {bound['fp32']:.0f} / {bound['bf16']:.0f} img/s", flush=True)

    workers = default_workers("cpu")
    big_job = create_encoder.__kwdefaults__
    default_precision = resolve_precision(big_job["precision"], torch.device("cpu"))
    if big_job["backend"] == "auto" and default_precision == "fp32" and openvino_installed():
        default_label = "fp32 openvino"
    else:
        default_label = f"{default_precision} " + (
            "compiled" if big_job["compile"] is True or (big_job["compile"] == "auto" and cxx_compiler()) else "eager")
    result = {"benchmark": "extract", "mode": "quick" if args.quick else "full", "encoder": args.encoder,
              "threads": args.threads, "batch": args.batch, "machine": machine_info(),
              "native_bf16": cpu_has_native_bf16(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "library_defaults": {"workers": workers, **{k: big_job[k] for k in ("precision", "compile", "backend", "fold_bn", "jpeg_draft")},
                                   "auto_compile_min_images": AUTO_COMPILE_MIN_IMAGES,
                                   "auto_openvino_min_images": AUTO_OPENVINO_MIN_IMAGES},
              "library_default_variant": {"variant": default_label, "for": "extractions of >= "
                                          f"{AUTO_OPENVINO_MIN_IMAGES if default_label.endswith('openvino') else AUTO_COMPILE_MIN_IMAGES} "
                                          "images (smaller ones run the eager variant of the same precision)"},
              "targets": {"end_to_end_over_forward_max": TARGET_RATIO, "forward_share_min": 1 / TARGET_RATIO,
                          "forward_fraction_of_fp32_roofline_min": TARGET_ROOFLINE,
                          "int8_end_to_end_over_default_min": TARGET_INT8_SPEEDUP},
              "roofline": {"macs_per_image": macs, "gemm": gemm, "bound_img_s": bound,
                           "mac_counter": "spikebridge.energy.encoder_macs (torch FLOP counter / 2)"},
              "datasets": {}}

    # ------------------------------------------------------------------ per data set
    for folder in datasets:
        ds_all = open_dataset(str(folder)).val
        n = len(ds_all) if n_images == 0 else min(n_images, len(ds_all))
        n = max(args.batch, n // args.batch * args.batch) if n >= args.batch else n
        ds = subset(ds_all, n)
        sizes = stored_sizes(ds)
        row = {"split": "val", "images": n, "image_sizes": [[list(s), c] for s, c in collections.Counter(sizes).most_common(5)],
               "jpeg_drafted": drafted_count(sizes, base)}
        print(f"\n{folder.name}: {n} images, sizes {row['image_sizes'][:3]}, drafted {row['jpeg_drafted']}", flush=True)
        dec, pixels = decode(ds, base, args.batch, workers)
        dec0, _ = decode(ds, base, args.batch, 0)
        row["decode"] = {"library_workers": dec, "no_worker_process": dec0}
        print(f"  decode: {dec['img_s']:.0f} img/s ({workers} worker), {dec0['img_s']:.0f} img/s (in-process, one core)", flush=True)
        pre = base.preprocess()
        t0 = time.perf_counter()
        for p in pixels:
            pre.normalize(p)
        row["normalize"] = {"seconds": time.perf_counter() - t0, "img_s": rate(n, time.perf_counter() - t0),
                            "note": "uint8 -> float32 /255 -mean /std, eager, main process (inside the forward rates below)"}
        row["forward"], row["end_to_end"] = {}, {}
        calib_dir = None
        if INT8 in variants:  # calibrated on this data set's train split, timed apart, into a fresh cache
            calib_dir = tempfile.mkdtemp(prefix="spikebridge-int8-calibration-")
            variants[INT8] = dataclasses.replace(variants[INT8])  # an uncalibrated copy
            t0 = time.perf_counter()
            record = variants[INT8].calibrate(open_dataset(str(folder)).train, calib_dir)
            row["int8_calibration"] = {"seconds": time.perf_counter() - t0, "calibration": record}
            print(f"  int8 calibration ({record['images']} train images): {row['int8_calibration']['seconds']:.0f} s", flush=True)
        for label, enc in variants.items():
            f = forward(enc, pixels, args.batch, n)
            f["fraction_of_fp32_roofline"] = f["img_s"] / bound["fp32"]
            if enc.precision == "bf16":
                f["fraction_of_bf16_roofline"] = f["img_s"] / bound["bf16"]
            row["forward"][label] = f
            e = end_to_end(ds, enc, args.batch, workers)
            e["end_to_end_over_forward"] = f["img_s"] / e["img_s"]
            e["forward_share"] = e["img_s"] / f["img_s"]
            row["end_to_end"][label] = e
            print(f"  {label:26s} forward {f['img_s']:6.1f} img/s ({100 * f['fraction_of_fp32_roofline']:3.0f} % of fp32 bound"
                  + (f", first call {f['first_call_s']:.0f} s" if f["compiled"] else "") + f")   end to end {e['img_s']:6.1f} img/s "
                  f"(x{e['end_to_end_over_forward']:.2f} of forward)", flush=True)
        for prec in ("fp32", "bf16"):
            eager, comp = row["forward"].get(f"{prec} eager"), row["forward"].get(f"{prec} compiled")
            if eager and comp and comp["img_s"] > eager["img_s"]:
                # images after which compiling (first call, warm or cold inductor cache) has paid for itself
                row.setdefault("compile_break_even_images", {})[prec] = comp["first_call_s"] / (1 / eager["img_s"] - 1 / comp["img_s"])
        if INT8 in row["end_to_end"] and default_label in row["end_to_end"]:
            row["int8_over_default"] = {
                "end_to_end": row["end_to_end"][INT8]["img_s"] / row["end_to_end"][default_label]["img_s"],
                "forward": row["forward"][INT8]["img_s"] / row["forward"][default_label]["img_s"], "default": default_label}
            print(f"  int8 / library default ({default_label}): end to end x{row['int8_over_default']['end_to_end']:.2f}, "
                  f"forward x{row['int8_over_default']['forward']:.2f}", flush=True)
        if not args.quick:
            best = max(row["forward"], key=lambda k: row["forward"][k]["img_s"])
            row["worker_sweep"] = {"variant": best, "runs": [end_to_end(ds, variants[best], args.batch, w) for w in (0, 1, 2)]}
            print(f"  worker sweep ({best}): " + ", ".join(f"{r['workers']}: {r['img_s']:.1f} img/s" for r in row["worker_sweep"]["runs"]),
                  flush=True)
        if calib_dir is not None:
            shutil.rmtree(calib_dir, ignore_errors=True)
        result["datasets"][folder.name] = row

    # ------------------------------------------------------------------ top-1 on imagenet-sample
    sample = sample_dataset(args.sample, n_sample)
    clf, reference = classifier_encoder(args.encoder, fold=True)
    acc = {"images": len(sample), "reference_fp32": reference_top1(reference, clf.data_config, sample, 50)}
    acc["library_fp32"] = top1(clf, sample, clf, 50, workers)
    acc["library_bf16"] = top1(dataclasses.replace(clf, precision="bf16"), sample, clf, 50, workers)
    if openvino_installed():
        ov_clf = dataclasses.replace(clf, backend="openvino")
        ov_clf.prepare(len(sample), 50)
        acc["library_openvino_fp32"] = top1(ov_clf, sample, clf, 50, workers)
    if INT8 in variants:
        calib_from = args.int8_calibration or datasets[-1]
        int8_clf = dataclasses.replace(clf, precision="int8", backend="openvino")
        with tempfile.TemporaryDirectory(prefix="spikebridge-int8-calibration-") as calib_cache:
            acc["int8_calibration"] = int8_clf.calibrate(open_dataset(str(calib_from)).train, calib_cache)
            int8_clf.prepare(len(sample), 50)
            acc["library_int8"] = top1(int8_clf, sample, clf, 50, workers)
        acc["int8_minus_fp32_points"] = 100 * (acc["library_int8"] - acc["library_fp32"])
    acc["bf16_minus_fp32_points"] = 100 * (acc["library_bf16"] - acc["library_fp32"])
    acc["library_minus_reference_points"] = 100 * (acc["library_fp32"] - acc["reference_fp32"])
    sample_sizes = stored_sizes(sample)
    acc["jpeg_drafted_at_native_size"] = drafted_count(sample_sizes, clf)
    side = clf.data_config["input_size"][-1] // 2
    small_cfg = {**clf.data_config, "input_size": (3, side, side)}
    small = dataclasses.replace(clf, data_config=small_cfg)
    acc["draft_check"] = {"input_size": [3, side, side], "jpeg_drafted": drafted_count(sample_sizes, small),
                          "full_decode_fp32": reference_top1(reference, small_cfg, sample, 50),
                          "draft_fp32": top1(small, sample, small, 50, workers)}
    acc["draft_check"]["draft_minus_full_points"] = 100 * (acc["draft_check"]["draft_fp32"] - acc["draft_check"]["full_decode_fp32"])
    print(f"\nimagenet-sample ({len(sample)}): top-1 reference {100 * acc['reference_fp32']:.1f} %, library fp32 "
          f"{100 * acc['library_fp32']:.1f} %, bf16 {100 * acc['library_bf16']:.1f} % ({acc['bf16_minus_fp32_points']:+.1f} points); "
          f"at {side} px: full decode {100 * acc['draft_check']['full_decode_fp32']:.1f} %, JPEG draft "
          f"{100 * acc['draft_check']['draft_fp32']:.1f} % ({acc['draft_check']['jpeg_drafted']} drafted)", flush=True)
    result["top1"] = acc

    # ------------------------------------------------------------------ ONNX Runtime / OpenVINO
    backends = {}
    first = result["datasets"][datasets[0].name]
    with tempfile.TemporaryDirectory(prefix="spikebridge-onnx-") as tmp:
        features_onnx, classifier_onnx = Path(tmp) / "features.onnx", Path(tmp) / "classifier.onnx"
        wanted = [] if args.variants else [  # a subset of variants (--variants): no ONNX-file backends
            ("onnxruntime", "onnxruntime fp32", lambda p: onnxruntime_runner(p, args.threads)),
            ("openvino", "openvino fp32", lambda p: openvino_runner(p, args.threads, "f32")),
            ("openvino", "openvino bf16", lambda p: openvino_runner(p, args.threads, "bf16"))]
        if wanted:
            ds0 = subset(open_dataset(str(datasets[0])).val, first["images"])
            _, pixels = decode(ds0, base, args.batch, workers)
            np_inputs = [base.preprocess().normalize(p).contiguous().numpy() for p in pixels]
        if any(installed(m) for m, _, _ in wanted):
            export_onnx(unfolded.net, tuple(base.data_config["input_size"]), features_onnx)
            export_onnx(reference, tuple(clf.data_config["input_size"]), classifier_onnx)
        for module, label, make in wanted:
            if not installed(module):
                backends[label] = {"installed": False, "how": "pip install -e .[onnx]"}
                print(f"{label}: not installed (pip install -e .[onnx])")
                continue
            f = backend_forward(make(features_onnx), np_inputs)
            run, norm = make(classifier_onnx), clf.preprocess().normalize
            f["top1"] = top1(lambda px: run(norm(px).contiguous().numpy()), sample, clf, 50, workers)
            f["fraction_of_fp32_roofline"] = f["img_s"] / bound["fp32"]
            f["data_set"] = datasets[0].name
            backends[label] = f
            print(f"{label:16s} forward {f['img_s']:6.1f} img/s on {datasets[0].name}, top-1 {100 * f['top1']:.1f} %", flush=True)
    result["backends"] = backends

    # ------------------------------------------------------------------ summary
    result["loadavg"] = {"start": list(load_start), "end": list(os.getloadavg())}
    result["seconds"] = time.time() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
    print("\n| data set | variant | decode img/s | forward img/s | end to end img/s | e2e/forward | forward/fp32 bound |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, row in result["datasets"].items():
        for label, f in row["forward"].items():
            e = row["end_to_end"][label]
            mark = " (library default)" if label == default_label else ""
            print(f"| {name} | {label}{mark} | {row['decode']['library_workers']['img_s']:.0f} | {f['img_s']:.1f} | {e['img_s']:.1f} | "
                  f"{e['end_to_end_over_forward']:.2f} | {100 * f['fraction_of_fp32_roofline']:.0f} % |")
    for label, f in backends.items():
        if f.get("installed", True):
            print(f"| {f['data_set']} | {label} | | {f['img_s']:.1f} | | | {100 * f['fraction_of_fp32_roofline']:.0f} % |")
    print(f"\nload average {result['loadavg']['start'][0]:.1f} -> {result['loadavg']['end'][0]:.1f} on "
          f"{result['machine']['cpus_usable']} cores (timings are only the machine's when nothing else runs); "
          f"{result['seconds']:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
