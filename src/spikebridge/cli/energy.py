"""The ``spikebridge energy`` command line (argument parsing imports no torch; the counting
itself is [`energy`][spikebridge.energy])."""

from __future__ import annotations

import argparse

from .. import checks
from ..energy import DEFAULT_PJ_AC, DEFAULT_PJ_MAC, ENERGY_SOURCE, INT8_PJ_MAC
from ..errors import SpikebridgeError
from .common import check_model_classes, encoder_of_model


def add_energy_command(subparsers) -> argparse.ArgumentParser:
    """Register ``spikebridge energy`` on an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "energy", help="MACs, SynOps and estimated energy per inference of a trained model",
        description="Count encoder MACs (torch FLOP counter), the MACs of an equivalent dense ANN head and "
                    "the spiking head's synaptic operations (simulated on the val split), and estimate the "
                    f"energy per inference ({ENERGY_SOURCE}; override with --pj-mac / --pj-ac).")
    p.add_argument("--model", required=True, help="model.safetensors written by 'spikebridge train'")
    p.add_argument("--dataset", default="digits", help="data set whose val split the spikes are counted on (default: digits)")
    p.add_argument("--encoder", default=None, help="timm encoder name (default: the one the model was trained on)")
    p.add_argument("--weights", default=None, help="local encoder checkpoint (as for 'train')")
    p.add_argument("--cut", type=int, default=None, help="encoder stage cut (default: the model's)")
    p.add_argument("--steps", type=int, default=None, help="time steps T (default: the model's)")
    p.add_argument("--max-examples", type=int, default=None,
                   help="simulate a seeded class-stratified sample of this many val examples (default: the whole val split)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-examples sample (default: 0)")
    p.add_argument("--hidden", type=int, nargs="*", default=[], help="hidden layer sizes of the ANN head compared (default: none, linear)")
    p.add_argument("--pj-mac", type=float, default=DEFAULT_PJ_MAC, help=f"pJ per multiply-accumulate (default: {DEFAULT_PJ_MAC})")
    p.add_argument("--pj-ac", type=float, default=DEFAULT_PJ_AC, help=f"pJ per accumulate (default: {DEFAULT_PJ_AC})")
    p.add_argument("--pj-mac-encoder", type=float, default=None,
                   help=f"pJ per encoder MAC (default: {INT8_PJ_MAC} for a model trained on int8 features, "
                        "i.e. an int8 MAC at 45 nm, else --pj-mac)")
    p.add_argument("--cache-dir", default=None, help="feature cache folder (default: $SPIKEBRIDGE_CACHE or ~/.cache/spikebridge)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:i]' for feature extraction")
    p.add_argument("--json", default=None, help="also write the report as JSON to this file")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_energy)
    return p


def cmd_energy(args) -> int:
    checks.number("--pj-mac", args.pj_mac, 0.0)  # NaN or inf would print NaN / inf energies
    checks.number("--pj-ac", args.pj_ac, 0.0)
    if args.pj_mac_encoder is not None:
        checks.number("--pj-mac-encoder", args.pj_mac_encoder, 0.0)
    if args.max_examples is not None and args.max_examples < 1:
        raise SpikebridgeError(f"--max-examples must be >= 1 (got {args.max_examples})")
    if args.steps is not None:
        checks.steps("--steps", args.steps)

    import json
    from pathlib import Path

    from ..data import open_dataset
    from ..encoders import create_encoder
    from ..energy import ann_head_macs, encoder_macs, energy_report, learner_ops, report_rows, stratified_sample
    from ..features import DEFAULT_CACHE, extract_features
    from ..learner import load_learner

    if not Path(args.model).is_file():
        raise SpikebridgeError(f"model file not found: {args.model}")
    learner, meta = load_learner(args.model)
    name, cut = encoder_of_model(args, meta)
    steps = args.steps or meta["config"]["steps"]
    if steps < 1:
        raise SpikebridgeError("--steps must be >= 1")
    splits = open_dataset(args.dataset)
    check_model_classes(args.model, meta, args.dataset, splits.classes)
    trained_on = meta.get("encoder") or {}
    int8 = trained_on.get("precision") == "int8"  # its features came from the int8 encoder: count on those
    calibration = trained_on.get("calibration") or {}
    encoder = create_encoder(name, weights=args.weights, cut=cut, device="cpu" if int8 else args.device,
                             **({"precision": "int8", "calibration_images": calibration.get("images_requested"),
                                 "calibration_seed": calibration.get("seed")} if int8 else {}))
    if int8:
        encoder.calibrate(splits.train, args.cache_dir or DEFAULT_CACHE, progress=not args.no_progress)
    pj_encoder = getattr(args, "pj_mac_encoder", None)
    pj_encoder = pj_encoder if pj_encoder is not None else (INT8_PJ_MAC if int8 else args.pj_mac)
    n_inputs = meta.get("n_inputs")
    if n_inputs is not None and n_inputs != encoder.feature_dim:
        raise SpikebridgeError(f"{args.model} expects {n_inputs} features, {name} (cut {cut}) gives {encoder.feature_dim}")
    val = extract_features(splits.val, encoder, args.cache_dir or DEFAULT_CACHE, progress=not args.no_progress)
    total = len(val.labels)
    if args.max_examples is not None and args.max_examples < total:
        rows = stratified_sample(val.labels, args.max_examples, args.seed)
        sample = f"class-stratified sample of {len(rows)} of {total} val examples (seed {args.seed})"
    else:
        rows = slice(None)
        sample = f"whole val split ({total} examples)"
    ops, scores = learner_ops(learner, val.features[rows], steps)
    n = scores.shape[0]
    top1 = float((scores.argmax(1).numpy() == val.labels[rows]).mean())
    rep = energy_report(encoder_macs(encoder), ann_head_macs(encoder.feature_dim, len(splits.classes), tuple(args.hidden)),
                        ops, args.pj_mac, args.pj_ac, pj_mac_encoder=pj_encoder)
    rep.update({"model": str(args.model), "encoder_name": name, "cut": cut, "steps": steps, "examples": n,
                "sample": sample, "top1_spiking": top1})
    rows = [("encoder", f"{name} (cut {cut if cut is not None else 'none: full network'})"),
            ("time steps T", str(steps)), ("examples simulated", sample),
            (f"top-1 (spiking, {n} val examples)", f"{100 * top1:.2f} %")]
    rows += report_rows(rep)
    width = max(len(k) for k, _ in rows)
    print("-" * (width + 24))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("-" * (width + 24))
    if pj_encoder != args.pj_mac:
        print(f"encoder MACs at {pj_encoder} pJ" + (" (int8 encoder: 0.2 pJ multiply + 0.03 pJ add, Horowitz 2014, 45 nm)"
                                                    if pj_encoder == INT8_PJ_MAC else " (--pj-mac-encoder)"))
    if (args.pj_mac, args.pj_ac) == (DEFAULT_PJ_MAC, DEFAULT_PJ_AC):
        print(f"per-operation energy: {ENERGY_SOURCE} (arithmetic only; memory traffic not modelled)")
    else:
        print(f"per-operation energy: {args.pj_mac} pJ/MAC, {args.pj_ac} pJ/AC as given (defaults: {ENERGY_SOURCE}); "
              "arithmetic only, memory traffic not modelled")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rep, indent=1))
        print(f"wrote {args.json}")
    return 0
