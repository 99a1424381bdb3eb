"""Intel Lava (Loihi 2 bit-accurate fixed-point models) runs the exported int8 CoLaNET spike for spike.

    python benchmarks/lava_deploy.py                      # Imagenette + imagenet64, full val splits
    python benchmarks/lava_deploy.py --datasets digits    # the demo's digits (a minute)
    python benchmarks/lava_deploy.py --limit 200          # the first 200 val examples of each

For each data set: CoLaNET trained with the library defaults (seed 0, T = 32, mini-batch 16, as
benchmarks/deploy.py), quantised by :meth:`Int8CoLaNET.quantise` twice -- the default int8 model
(24-bit membrane, subtractive reset) and ``dynamics="loihi"`` (Loihi's CUBA LIF arithmetic as
Lava computes it: module docstring of :mod:`spikebridge.deploy.fixed_point`). The loihi model is
run in Lava (:func:`spikebridge.deploy.lava_host.run_lava`: ``RingBuffer`` -> ``Dense`` -> ``LIFReset``
with lateral ``Dense`` processes, ``Loihi2SimCfg(select_tag="fixed_pt")``, in the Lava environment
``$SPIKEBRIDGE_LAVA_PYTHON`` or ``--lava-python``; ``.ci/lava-env`` builds one) and compared with
``Int8CoLaNET.simulate`` of the same model on the same input spikes:

* ``spike_counts_equal``: fraction of (example, neuron) spike counts equal; ``examples_identical``:
  examples whose counts, first-spike steps and final membranes are all equal;
* ``decision_agreement``: the readout on Lava's spikes vs on ours; top-1 of each int8 model.

Also records why lava-dl's NIR import was not measured (``nir_import``) and the differences
between Lava's LIF and the default int8 model (``differences``). Writes benchmarks/results/lava.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spikebridge.currents import PRECISION_ENV

# published accuracy: the fp32 simulation every CPU reproduces (spikebridge.currents.default_bf16)
os.environ.setdefault(PRECISION_ENV, "fp32")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

DATASETS = {"digits": "digits", "imagenette": str(ROOT.parent / "shared" / "datasets" / "imagenette"),
            "imagenet64": str(ROOT.parent / "shared" / "datasets" / "imagenet64")}
NIR_IMPORT = ("not measured: lava-dl 0.6.0 (the release on PyPI, pinned to lava-nc 0.10.0) has no NIR reader -- no "
              "module of its wheel mentions nir; lava.lib.dl.netx.hdf5.Network reads only lava-dl's own SLAYER "
              ".net HDF5 layout")
DIFFERENCES = [
    "input: Lava's LIF MSB-aligns the synaptic sum by 6 bits (u = a * 2**6), so the membrane and its "
    "truncating decay run on a 64x finer grid than the default int8 model's; the rounding of trunc(v*(4096-dv)/4096) "
    "therefore differs step by step",
    "reset: Lava's LIF resets v to 0 after a spike; the default int8 model (as trained) subtracts the threshold",
    "threshold: Lava spikes when v > vth * 2**6 (strict); the default int8 model when v >= threshold_q",
    "range: Lava clips v to [-(2**23-1), 2**23-1] on the 64x finer grid (2**17 weight LSBs) and wraps the 24-bit "
    "current once (x - 2**24 above 2**23, x + 2**24 at or below -2**23); the default model saturates at 2**23 LSBs",
    "vth is one 17-bit value per LIF process (one process per member); Dense weights are 8-bit even numbers "
    "(mixed sign) with one exponent per process, so the 24-bit lateral weight goes as base-128 digits over up to "
    "4 Dense processes",
    "timing: Dense delivers one step late on both paths, so Lava runs T + 1 steps per example; LIFReset zeroes u "
    "and v at each example's first step",
]


def features(name: str, cache: Path):
    from accuracy import features_for

    tr, va, classes = features_for(DATASETS[name], "efficientnet_lite0", cache)
    return tr, va, classes


def train_colanet(tr, steps: int, seed: int, batch: int):
    from spikebridge.learner import create_learner
    from spikebridge.training import train

    t0 = time.perf_counter()
    learner = create_learner("colanet", tr.features.shape[1], len(np.unique(tr.labels)), seed=seed, steps=steps)
    learner, _ = train(learner, tr.features, tr.labels, batch_size=batch, progress=False)
    return learner.model, time.perf_counter() - t0


def one(name: str, args) -> dict:
    from spikebridge.deploy.fixed_point import Int8CoLaNET
    from spikebridge.deploy.lava_host import copies_for, run_lava

    tr, va, _ = features(name, args.cache_dir)
    model, train_s = train_colanet(tr, args.steps, args.seed, args.train_batch)
    f = va.features[: args.limit] if args.limit else va.features
    y = torch.as_tensor(va.labels[: len(f)])
    base = Int8CoLaNET.quantise(model)
    q = Int8CoLaNET.quantise(model, dynamics="loihi")
    x = q.spikes_for(f)
    ours = q.simulate(x)
    ours_pred = q.scores(ours).argmax(1)
    base_pred = base.predict(f)
    float_pred = model.predict_spiking(f, args.steps)
    copies = copies_for(q)
    print(f"{name}: {len(f)} val examples, {q.weights.shape[0]} neurons x {q.weights.shape[1]} inputs, loihi exponent "
          f"{q.exponent} (default {base.exponent}); running Lava with {copies} copies side by side", flush=True)
    t0 = time.perf_counter()
    lava, report = run_lava(q, x, args.lava_python, chunk=args.chunk, copies=copies, progress=True)
    lava_s = time.perf_counter() - t0
    lava_pred = q.scores(lava).argmax(1)
    same = (lava.counts == ours.counts) & (lava.first_spike == ours.first_spike) & (lava.v_final == ours.v_final)
    top1 = lambda p: float((p == y).double().mean())  # noqa: E731
    out = {"n_val": len(f), "n_val_split": len(va.features), "n_train": len(tr.features), "steps": args.steps,
           "neurons": int(q.weights.shape[0]), "inputs": int(q.weights.shape[1]), "members": len(q.threshold),
           "train_seconds": train_s, "lava_seconds": lava_s, "copies": copies, "lava": report,
           "loihi_model": {"exponent": q.exponent, "threshold_q": q.threshold.tolist(), "lateral_q": q.lateral.tolist(),
                           "decay_dv": q.decay_dv, "lif": {"du": 4095, "dv": q.decay_dv, "vth": q.threshold.tolist(),
                                                           "bias_mant": 0, "reset_interval": args.steps + 1,
                                                           "reset_offset": 2}},
           "default_model": {"exponent": base.exponent, "threshold_q": base.threshold.tolist(),
                             "lateral_q": base.lateral.tolist(), "reset": base.reset},
           "spike_counts_equal": float((lava.counts == ours.counts).double().mean()),
           "first_spikes_equal": float((lava.first_spike == ours.first_spike).double().mean()),
           "final_v_equal": float((lava.v_final == ours.v_final).double().mean()),
           "examples_identical": int(same.all(1).sum()),
           "decision_agreement": float((lava_pred == ours_pred).double().mean()),
           "top1": {"float_spiking": top1(float_pred), "int8_default": top1(base_pred), "int8_loihi": top1(ours_pred),
                    "lava": top1(lava_pred)},
           "loihi_vs_default_agreement": float((ours_pred == base_pred).double().mean()),
           "output_spikes_per_example": float(ours.counts.sum(1).double().mean())}
    print(f"{name}: spike counts equal {100 * out['spike_counts_equal']:.3f} %, examples identical "
          f"{out['examples_identical']}/{len(f)}, decisions agree {100 * out['decision_agreement']:.3f} %; top-1 Lava "
          f"{100 * out['top1']['lava']:.2f} %, int8 loihi {100 * out['top1']['int8_loihi']:.2f} %, int8 default "
          f"{100 * out['top1']['int8_default']:.2f} %, float {100 * out['top1']['float_spiking']:.2f} %", flush=True)
    return out


def main(argv=None) -> int:
    from spikebridge.features import DEFAULT_CACHE
    from spikebridge.io import write_json_atomic
    from spikebridge.report import machine_info

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["imagenette", "imagenet64"], choices=list(DATASETS))
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--lava-python", default=None, help="the Lava environment's python (default $SPIKEBRIDGE_LAVA_PYTHON)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N val examples of each data set")
    ap.add_argument("--chunk", type=int, default=400, help="examples per Lava run")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lava.json")
    args = ap.parse_args(argv)

    for name in args.datasets:
        entry = one(name, args)
        entry["command"] = " ".join(["python benchmarks/lava_deploy.py", *(argv if argv is not None else sys.argv[1:])])
        result = json.loads(args.out.read_text()) if args.out.is_file() else {}  # read late: other data sets' runs
        result.setdefault("datasets", {})[name] = entry
        result.update(machine=machine_info(), nir_import=NIR_IMPORT, differences=DIFFERENCES)
        write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
