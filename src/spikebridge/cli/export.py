"""The ``spikebridge export`` command line (argument parsing imports neither torch nor NIR;
the export itself is `export()`, [`api`][spikebridge.deploy.api])."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from ..deploy.formats import AKIDA_BITS, CONVENTIONS, FORMATS, TARGETS, check_akida_bits, sidecar_path
from ..errors import SpikebridgeError


EXPORT_HELP = """\
formats:
  nir   Neuromorphic Intermediate Representation (HDF5; the exchange format of Lava for Loihi 2,
        SpiNNaker2, Rockpool for Xylo, snnTorch, Norse): input -> Affine (W - gamma) -> LIF
        population with lateral inhibition as a recurrent Linear -> output; unrecruited neurons
        are dropped. OUT.json (sidecar) holds what NIR has no field for: time step, reset rule,
        class column of each neuron, decision rule, rate coder and normaliser, plasticity rule.
        --target snntorch|norse writes an equivalent graph laid out for that simulator's NIR
        import (snnTorch still resets to zero instead of subtracting; see spikebridge.deploy).
  int8  fixed-point model as on Loihi-class chips: 8-bit signed weights with one power-of-two
        exponent, 24-bit saturating integer membrane, threshold and lateral weight, 12-bit decay
        v <- trunc(v*(4096-dv)/4096); safetensors (int8 weights) + OUT.json. Simulated exactly
        by spikebridge.deploy.fixed_point.Int8CoLaNET. --dynamics loihi: Loihi's CUBA LIF as Lava computes it,
        run spike for spike by Lava's bit-accurate models (benchmarks/lava_deploy.py).
  akida BrainChip Akida model (.fbz, Akida's own format; opens with akida.Model(path)): InputData
        (spike counts over T = 2**input_bits - 1 steps of the regular coder) -> FullyConnected with
        --weight-bits integer weights (W - gamma, one scale per neuron, fitted to the input rates
        of --calibration features when given) and no activation; the class
        is read from the output potentials as CoLaNET's continuous readout; --weight-slices 2 adds a
        second Akida neuron per neuron for the first one's quantisation error. OUT.json holds the
        coder, T, scales, thresholds, class of each neuron and the decision rule. Needs
        pip install 'spikebridge[akida]'. --with-encoder DATASET also converts the encoder the
        model was trained on to Akida 2.0 (OUT with suffix .encoder.fbz + .json): QuantizeML and
        CNN2SNN, calibrated on train images of DATASET, in their own environment
        ($SPIKEBRIDGE_AKIDA_FULL_PYTHON, built by .ci/akida-full-env); the ON/OFF coder runs on
        the host between the two models (spikebridge.deploy.akida_encoder).

In Python: spikebridge.export(model, OUT, format=...) writes the same files from a classifier,
learner or CoLaNET; spikebridge.load(OUT) reads any of them back.
"""


def add_export_command(subparsers) -> argparse.ArgumentParser:
    """Register ``spikebridge export`` on an argparse sub-parser collection."""
    p = subparsers.add_parser(
        "export", help="export a trained CoLaNET to NIR, an int8 fixed-point model or BrainChip Akida",
        description="Export the inference graph of a model written by 'spikebridge train' for\n"
                    "neuromorphic hardware and simulators.",
        epilog=EXPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model.safetensors written by 'spikebridge train'")
    p.add_argument("--format", choices=list(FORMATS), default="nir", help="output format (default: nir)")
    p.add_argument("--out", type=Path, default=None,
                   help="output file (default: beside the model, i.e. in its run folder under runs/: model.nir, "
                        "model.int8.safetensors or model.fbz); a JSON sidecar OUT.json is written beside it")
    p.add_argument("--target", choices=list(TARGETS), default=None,
                   help="nir only: 'generic' (default), or a graph tuned for the NIR import of 'snntorch' or 'norse'")
    p.add_argument("--convention", choices=list(CONVENTIONS), default=None,
                   help="nir only: how tau maps to our per-step decay beta: 'euler' tau = dt/(1-beta) (default; "
                        "what snnTorch, Norse and Lava integrate) or 'exact' tau = -dt/ln(beta) (generic target only)")
    p.add_argument("--reset", choices=["subtract", "zero"], default=None,
                   help="int8 only: reset by subtraction (default, as trained) or to zero (Loihi 1 CUBA)")
    p.add_argument("--dynamics", choices=["spikebridge", "loihi"], default=None,
                   help="int8 only: 'spikebridge' (default) or 'loihi': Loihi's CUBA LIF arithmetic as Lava's "
                        "bit-accurate model computes it (6-bit aligned input, strict threshold, reset to zero), "
                        "which Lava runs spike for spike (spikebridge.deploy.lava_host)")
    bits = "|".join(map(str, AKIDA_BITS))
    p.add_argument("--input-bits", type=int, default=None, metavar=bits,
                   help="akida only: input bit width (default 4); the counts cover T = 2**bits - 1 steps (15, 3, 1)")
    p.add_argument("--weight-bits", type=int, default=None, metavar=bits,
                   help="akida only: weight bit width (default 4)")
    p.add_argument("--weight-slices", type=int, default=None, metavar="L",
                   help="akida only: Akida neurons per CoLaNET neuron, each quantising the previous ones' error "
                        "(default 1; 2 gives about twice the weight precision with twice the neurons)")
    p.add_argument("--calibration", type=Path, default=None, metavar="FEATURES",
                   help="akida only: a cached feature folder (e.g. the training split's, under the feature cache) "
                        "whose input rates the weight quantiser fits (default: the plain weight error)")
    p.add_argument("--with-encoder", default=None, metavar="DATASET",
                   help="akida only: also convert the model's encoder to Akida 2.0, calibrated on train images of "
                        "DATASET (needs $SPIKEBRIDGE_AKIDA_FULL_PYTHON, built by .ci/akida-full-env)")
    p.add_argument("--calibration-images", type=int, default=None, metavar="N",
                   help="with --with-encoder: train images the encoder's quantisation is calibrated on (default 256)")
    p.set_defaults(func=cmd_export)
    return p


APPLIES_TO = {"--with-encoder": ("akida",), "--calibration-images": ("akida",), "--target": ("nir",), "--convention": ("nir",), "--reset": ("int8",), "--dynamics": ("int8",), "--input-bits": ("akida",),
              "--weight-bits": ("akida",), "--weight-slices": ("akida",),
              "--calibration": ("akida",)}


def check_export_options(args) -> None:
    """Refuse options the chosen format or target cannot honour (before the model is read)."""
    given = {"--target": args.target, "--convention": args.convention, "--reset": args.reset,
             "--dynamics": args.dynamics,
             "--input-bits": args.input_bits, "--weight-bits": args.weight_bits,
             "--weight-slices": args.weight_slices, "--calibration": args.calibration,
             "--with-encoder": args.with_encoder, "--calibration-images": args.calibration_images}
    wrong = [o for o, v in given.items() if v is not None and args.format not in APPLIES_TO[o]]
    if wrong:
        raise SpikebridgeError(f"{wrong[0]} does not apply to --format {args.format}; leave it out")
    if args.format == "nir":
        args.target, args.convention = args.target or "generic", args.convention or "euler"
        if args.target != "generic" and args.convention != "euler":
            raise SpikebridgeError(f"--target {args.target} needs --convention euler (its NIR import integrates "
                                   f"with forward Euler); --convention {args.convention} is only for --target generic")
    elif args.format == "int8":
        args.dynamics = args.dynamics or "spikebridge"
        if args.dynamics == "loihi" and args.reset == "subtract":
            raise SpikebridgeError("--dynamics loihi resets to zero (Lava's LIF); leave out --reset subtract")
        args.reset = args.reset or ("zero" if args.dynamics == "loihi" else "subtract")
    else:
        args.input_bits = 4 if args.input_bits is None else args.input_bits
        args.weight_bits = 4 if args.weight_bits is None else args.weight_bits
        check_akida_bits(args.input_bits, "--input-bits")
        check_akida_bits(args.weight_bits, "--weight-bits")
        args.weight_slices = 1 if args.weight_slices is None else args.weight_slices
        if not 1 <= args.weight_slices <= 4:
            raise SpikebridgeError(f"--weight-slices {args.weight_slices} must be from 1 to 4")
        if args.calibration_images is not None and args.with_encoder is None:
            raise SpikebridgeError("--calibration-images applies to --with-encoder; leave it out")
        if args.calibration_images is not None and args.calibration_images < 1:
            raise SpikebridgeError(f"--calibration-images must be >= 1 (got {args.calibration_images})")
        if args.with_encoder is not None:
            from ..deploy.akida_encoder import akida_full_python

            akida_full_python()  # the environment exists, before any work
        if importlib.util.find_spec("akida") is None:
            raise SpikebridgeError("--format akida needs BrainChip's 'akida' package: pip install 'spikebridge[akida]'")


#: the file written when --out is not given: beside the model
DEFAULT_OUT = {"nir": lambda model: model.with_suffix(".nir"), "akida": lambda model: model.with_suffix(".fbz"),
               "int8": lambda model: model.with_name(model.stem + ".int8.safetensors")}


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:  # unreadable paths: compared by name above
        return False


def export_out(args) -> Path:
    """The output file (--out, default beside the model); refused when it is a folder, or when it
    or its sidecar is an input (the model, --calibration): an export never overwrites what it reads."""
    model = Path(args.model)
    out = Path(args.out) if args.out is not None else DEFAULT_OUT[args.format](model)
    if out.is_dir():
        raise SpikebridgeError(f"--out {out} is a folder; give the file to write, e.g. "
                               f"{out / DEFAULT_OUT[args.format](model).name}")
    inputs = [model] + ([Path(args.calibration)] if args.calibration is not None else [])
    for written in (out, sidecar_path(out)):
        for given in inputs:
            if _same_file(written, given):
                raise SpikebridgeError(f"--out {out} would overwrite the input {given}"
                                       + (" (with its sidecar)" if written != out else "")
                                       + "; choose another output file")
    return out


def export_encoder(args, meta: dict, model) -> None:
    """``--with-encoder``: the model's encoder converted to Akida 2.0 beside the head."""
    from ..data import open_dataset
    from ..deploy.akida_encoder import DEFAULT_CALIBRATION_IMAGES, convert_encoder
    from ..encoders import create_encoder

    trained_on = meta.get("encoder") or {}
    if trained_on.get("precision", "fp32") != "fp32":
        raise SpikebridgeError(f"{args.model} was trained on {trained_on['precision']} features; the Akida encoder "
                               "is converted from the fp32 network")
    encoder = create_encoder(trained_on.get("encoder", "efficientnet_lite0"), device="cpu", cut=trained_on.get("cut"))
    if trained_on.get("weights_sha256") and trained_on["weights_sha256"] != encoder.weight_checksum:
        raise SpikebridgeError(f"{args.model} was trained with other {encoder.name} weights than the installed ones")
    if encoder.feature_dim != model.n_inputs:
        raise SpikebridgeError(f"{args.model} reads {model.n_inputs} features; {encoder.name} gives {encoder.feature_dim}")
    out = args.out.with_name(args.out.stem + ".encoder.fbz")
    side = convert_encoder(encoder, open_dataset(args.with_encoder).train, out,
                           args.calibration_images or DEFAULT_CALIBRATION_IMAGES)
    fits = [name for name, m in side["mappings"].items() if m["mapped"]]
    print(f"Akida encoder: {out} ({side['fbz_bytes']} bytes; {side['layers']} Akida 2.0 layers, 8-bit, calibrated on "
          f"{side['calibration']['images']} train images; maps onto {', '.join(fits) or 'none of'} "
          f"{'' if fits else ', '.join(side['mappings'])})")
    print(f"sidecar:       {out}.json")


def cmd_export(args) -> int:
    check_export_options(args)
    args.out = export_out(args)  # before the model is read
    from ..deploy.api import colanet_of, export
    from ..learner import load_learner

    learner, meta = load_learner(args.model)
    try:
        model = colanet_of(learner)
    except SpikebridgeError as exc:
        raise SpikebridgeError(f"{args.model}: {exc}") from None
    if args.format == "nir":
        s = export(model, args.out, format="nir", target=args.target, convention=args.convention,
                   classes=meta.get("classes"))
        print(f"NIR graph: {s['path']} ({s['bytes']} bytes; nodes {', '.join(s['nodes'])}; "
              f"{s['neurons']} LIF neurons, {s['inputs']} inputs)")
        print(f"sidecar:   {s['sidecar']} ({s['sidecar_bytes']} bytes)")
    elif args.format == "akida":
        calibration = None
        if args.calibration is not None:
            from ..features import load_features

            calibration = load_features(args.calibration).features
            if calibration.shape[1] != model.n_inputs:
                raise SpikebridgeError(f"{args.calibration} holds {calibration.shape[1]}-dimensional features; the model "
                                       f"reads {model.n_inputs}")
        s = export(model, args.out, format="akida", input_bits=args.input_bits, weight_bits=args.weight_bits,
                   classes=meta.get("classes"), calibration=calibration, slices=args.weight_slices)
        print(f"Akida model: {s['path']} ({s['bytes']} bytes; InputData {s['channels']} channels of "
              f"{s['input_bits']}-bit spike counts over T = {s['steps']} steps -> FullyConnected {s['neurons']} "
              f"neurons ({s['recruited']} recruited) x {s['slices']} slice(s), {s['weight_bits']}-bit weights)")
        print(f"sidecar:     {s['sidecar']} ({s['sidecar_bytes']} bytes)")
        if args.with_encoder is not None:
            export_encoder(args, meta, model)
    else:
        s = export(model, args.out, format="int8", reset=args.reset, dynamics=args.dynamics)
        print(f"int8 model: {s['path']} ({s['file_bytes']} bytes on disk; network {s['network_bytes']} bytes vs "
              f"{s['float32_weight_bytes']} bytes of float32 weights; weight LSB 2^{s['exponent']}, decay dv "
              f"{s['decay_dv']}/4096)")
        print(f"sidecar:    {s['sidecar']}")
    from ..deploy.hardware import fit_report

    print("hardware fit (documented limits; spikebridge.deploy.hardware):")
    print("\n".join("  " + line for line in fit_report(model)))
    return 0
