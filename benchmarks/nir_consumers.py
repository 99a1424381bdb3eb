r"""More NIR consumers (Sinabs for Speck, Rockpool for Xylo) and the hardware fit, on Imagenette.

    python benchmarks/nir_consumers.py            # full val (3,925), trains CoLaNET with the library defaults
    python benchmarks/nir_consumers.py --quick    # a class-stratified 500-example val sample
    python benchmarks/nir_consumers.py --model runs/x/model.safetensors   # a trained model instead

For each consumer the exported graph is read with the consumer's own NIR entry point
(``sinabs.from_nir``, ``rockpool.nn.modules.from_nir``), fed our input spikes, and decided by
the library's readout (`spikebridge.deploy.network.readout_scores`) on its output spikes (final
membrane for the last tie-break where the consumer exposes it). Each row reports

* ``agreement``: the consumer's decisions vs ours (``CoLaNET.simulate`` + ``column_decision``);
* ``reference_agreement`` / ``spike_match``: vs our own simulation of the *same* graph (lateral
  inhibition dropped or made feed-forward), i.e. whether the consumer runs what the graph says;
* what the importer needed and what it rejected (the exact error).

The graphs beside the exported one (``no_lateral``, ``feedforward_inhibition``, ``if``,
``rockpool``), our simulation of each and the consumers' runs are
:mod:`spikebridge.deploy.nir_consumers`. Sinabs 3.1.3 pins ``nir<=1.0.4`` and runs in its own
virtual environment (``/work/venvs/sinabs``, or ``--sinabs-python`` / ``$SPIKEBRIDGE_SINABS_PYTHON``;
``.ci/sinabs-env`` builds one), where :mod:`spikebridge.deploy.sinabs_worker` runs with the graph
files and the input spikes (bit-packed ``.npy``) and writes the output spikes back (``.npz``, no pickle).

Also records ``hardware_fit`` (:func:`spikebridge.deploy.hardware.fit_all`) for the trained model.
Writes the keys ``nir_consumers`` and ``hardware_fit`` of benchmarks/results/deploy.json (other keys
kept; ``--quick``: benchmarks/results/quick/deploy.json).
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

from spikebridge.currents import PRECISION_ENV
from spikebridge.deploy.nir_consumers import (SINABS_ENV, SINABS_PYTHON, decide, reference_spikes, run_rockpool,
                                              run_sinabs, sinabs_python, variant_graph, without_v_reset)

os.environ.setdefault(PRECISION_ENV, "fp32")  # published accuracy: the fp32 simulation every CPU reproduces

ROOT = Path(__file__).resolve().parent.parent


# =========================================================================== the benchmark
def _versions(names):
    import importlib.metadata as md

    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = None
    return out


def measure(model, features, labels, steps: int, sinabs_py: Path | None, batch: int = 500, log=print) -> dict:
    """Agreement of every consumer x graph with our decisions on ``features`` (see the module docstring)."""
    import torch

    from spikebridge.deploy.network import network_of

    from spikebridge.deploy.nir import export_nir

    net = network_of(model)
    g = model.config.lateral_inhibition
    spikes = torch.cat([model.spikes_for(features[b : b + batch], steps) for b in range(0, len(features), batch)], 1)
    ours = torch.cat([model.column_decision(model.simulate(spikes[:, b : b + batch]))
                      for b in range(0, spikes.shape[1], batch)])
    labels = torch.as_tensor(np.asarray(labels))
    refs = {v: reference_spikes(net, spikes, v, g) for v in ("recurrent", "no_lateral", "feedforward_inhibition", "if")}
    ref_pred = {v: decide(net, s, steps, u) for v, (s, u) in refs.items()}
    result = {"n_val": len(labels), "steps": steps, "neurons": net.size, "inputs": int(net.weights.shape[1]),
              "ours_top1": float((ours == labels).double().mean()),
              "ours_output_spikes": float(refs["recurrent"][0].sum() / len(labels)),
              "graph_effects": {v: {"agreement_with_ours": float((p == ours).double().mean()),
                                    "top1": float((p == labels).double().mean())} for v, p in ref_pred.items()},
              "consumers": {}}
    rec_check = float((ref_pred["recurrent"] == ours).double().mean())
    log(f"our decisions: top-1 {100 * result['ours_top1']:.2f} % on {len(labels)} val; reference loop agrees on "
        f"{100 * rec_check:.2f} %")
    for v, e in result["graph_effects"].items():
        log(f"  graph {v}: our simulation agrees with our decisions on {100 * e['agreement_with_ours']:.2f} % "
            f"(top-1 {100 * e['top1']:.2f} %)")

    def row(name, graph, reference, out, v, notes, **extra):
        pred = decide(net, out, steps, v)
        r = {"graph": graph, "status": "ran", "agreement": float((pred == ours).double().mean()),
             "top1": float((pred == labels).double().mean()), "disagreements": int((pred != ours).sum()),
             "output_spikes": float(torch.as_tensor(out, dtype=torch.float32).sum() / len(labels)),
             "notes": notes, **extra}
        if reference:
            r["reference"] = reference
            r["reference_agreement"] = float((pred == ref_pred[reference]).double().mean())
            counts = torch.as_tensor(out, dtype=torch.float32).sum(0)
            r["spike_match"] = float((counts == refs[reference][0].sum(0)).double().mean())
        log(f"  {name} / {graph}: agreement {100 * r['agreement']:.2f} % ({r['disagreements']} differ)"
            + (f", vs our {reference} simulation {100 * r['reference_agreement']:.2f} %, spike counts equal "
               f"{100 * r['spike_match']:.2f} %" if reference else ""))
        return r

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {}
        for target, layout in (("generic", "nested"), ("generic", "flat"), ("norse", "nested")):
            files[f"{target}_{layout}"] = tmp / f"{target}_{layout}.nir"
            export_nir(model, files[f"{target}_{layout}"], target=target, layout=layout)
        import nir

        for v in ("no_lateral", "feedforward_inhibition", "if", "rockpool"):
            files[v] = tmp / f"{v}.nir"
            nir.write(str(files[v]), variant_graph(net, model.config.dt, v))

        # ------------------------------------------------------------- Rockpool
        rp = {"versions": _versions(["rockpool", "nir", "nirtorch", "torch"]),
              "entry_point": "rockpool.nn.modules.from_nir", "runs": []}
        log(f"rockpool {rp['versions']['rockpool']}:")
        for key, graph in (("generic_nested", "as exported (generic, nested LIF <-> Linear)"),
                           ("generic_flat", "as exported (generic, flat LIF <-> Linear)")):
            try:
                run_rockpool(files[key], spikes[:, :2], False)
                rp["runs"].append({"graph": graph, "status": "ran"})
            except Exception as exc:
                err = f"{type(exc).__name__}: {exc}".splitlines()[0]
                rp["runs"].append({"graph": graph, "status": "rejected", "error": err})
                log(f"  rockpool / {graph}: rejected: {err}")
        out, v = run_rockpool(files["norse_nested"], spikes, False)
        rp["runs"].append(row("rockpool", "as exported (--target norse: nested CubaLIF, tau_syn = dt)", "recurrent",
                              out, v, "imports, but Rockpool takes dt = tau_mem/(1+r) and filters the input "
                              "through its synapse (decay applied before the membrane adds it)"))
        for single in (False, True):
            out, v = run_rockpool(files["rockpool"], spikes, single)
            note = ("max_spikes_per_dt = 1 set after import (one spike per step, as ours)" if single else
                    "default max_spikes_per_dt = 2^16: several spikes per step when v >= 2 theta")
            rp["runs"].append(row("rockpool", f"rockpool layout (recurrent CubaLIF){', one spike per step' if single else ''}",
                                  "recurrent", out, v, note, single_spike=single))
        rp["needed"] = ["CubaLIF (its LIF branch reads a 'tau_mem' field that nir.LIF lacks)",
                        "the recurrent pair as a nested 4-node sub-graph (CubaLIF + Linear), mapped to "
                        "LIFTorch(has_rec=True); a top-level cycle is not",
                        "r = tau_mem/dt - 1 (r only sets dt), tau_mem = -dt/ln(beta), tau_syn -> 0 with weights / "
                        "exp(-dt/tau_syn)", "max_spikes_per_dt = 1 for our one-spike neuron (threshold test v >= theta "
                        "and subtractive reset as ours)"]
        result["consumers"]["rockpool"] = rp

        # ------------------------------------------------------------- Sinabs
        if sinabs_py is None:
            log("sinabs: no Sinabs environment (set --sinabs-python or $SPIKEBRIDGE_SINABS_PYTHON); skipped")
            result["consumers"]["sinabs"] = {"status": "not run: no Sinabs environment"}
            return result
        stripped = {}
        for key in ("generic_nested", "generic_flat", "no_lateral", "feedforward_inhibition", "if"):
            files[key + "_104"] = tmp / f"{key}_104.nir"
            files[key + "_104"].write_bytes(files[key].read_bytes())
            stripped[key] = without_v_reset(files[key + "_104"])
        jobs = [
            {"name": "generic_nested", "graph": str(files["generic_nested"]), "single_spike": False,
             "readout": "winner_take_all.lif"},
            {"name": "generic_nested_104", "graph": str(files["generic_nested_104"]), "single_spike": False,
             "readout": "winner_take_all.lif"},
            {"name": "generic_flat_104", "graph": str(files["generic_flat_104"]), "single_spike": False,
             "readout": "lif"},
            {"name": "no_lateral", "graph": str(files["no_lateral_104"]), "single_spike": False, "readout": "lif"},
            {"name": "no_lateral_single", "graph": str(files["no_lateral_104"]), "single_spike": True, "readout": "lif"},
            {"name": "feedforward_inhibition_single", "graph": str(files["feedforward_inhibition_104"]),
             "single_spike": True, "readout": "lif"},
            {"name": "if_single", "graph": str(files["if_104"]), "single_spike": True, "readout": "lif"},
        ]
        t0 = time.perf_counter()
        report = run_sinabs(sinabs_py, jobs, spikes.numpy(), tmp)
        sb = {"versions": report["versions"], "entry_point": "sinabs.from_nir", "python": str(sinabs_py), "runs": [],
              "seconds": time.perf_counter() - t0}
        log(f"sinabs {sb['versions']['sinabs']} (nir {sb['versions']['nir']}, nirtorch {sb['versions']['nirtorch']}):")
        described = {
            "generic_nested": ("as exported (generic, nested)", None, ""),
            "generic_nested_104": ("as exported, v_reset removed (nested)", "recurrent",
                                   "reads; the lateral Linear has no Sinabs module and is dropped without a word, "
                                   "tau (seconds) is read as time steps: alpha = exp(-1/tau) ~ 0, so no neuron "
                                   "fires and the readout's last tie-break (final membrane = last step's current) "
                                   "decides"),
            "generic_flat_104": ("as exported, v_reset removed (flat)", "recurrent",
                                 "as nested: the recurrent Linear silently dropped, tau read as steps"),
            "no_lateral": ("no_lateral (LIF, tau in steps)", "no_lateral",
                           "default MultiSpike: floor(v/theta) spikes per step"),
            "no_lateral_single": ("no_lateral (LIF, tau in steps), one spike per step", "no_lateral",
                                  "spike_fn = SingleSpike set after import (v >= theta, subtract as ours)"),
            "feedforward_inhibition_single": ("feedforward_inhibition (same-step), one spike per step",
                                              "feedforward_inhibition",
                                              "lateral inhibition from an uninhibited copy through an Affine, "
                                              "same step; SingleSpike"),
            "if_single": ("if (IAF, Speck's neuron), no lateral, one spike per step", "if",
                          "IAFSqueeze with min_v_mem = -theta (Sinabs' IF import); SingleSpike"),
        }
        for job, entry in zip(jobs, report["runs"]):
            graph, reference, note = described[job["name"]]
            if entry["status"] != "ran":
                sb["runs"].append({"graph": graph, "status": "rejected", "stage": entry["stage"], "error": entry["error"]})
                log(f"  sinabs / {graph}: rejected at {entry['stage']}: {entry['error']}")
                continue
            if entry.get("dropped_nodes"):
                note += f" (nodes without a module: {', '.join(entry['dropped_nodes'])})"
            sb["runs"].append(row("sinabs", graph, reference, entry["spikes"], entry["v"], note,
                                  max_spikes_per_step=entry["max_spikes_per_step"], modules=entry["modules"]))
        sb["needed"] = ["NIR <= 1.0.4 files: the LIF 'v_reset' field (NIR 1.0.8) removed, else nir.read raises",
                        "tau in time steps (-1/ln(beta)), not seconds; r is ignored (norm_input=False)",
                        "Affine, not Linear, for any weight (nir.Linear has no Sinabs module and its node is dropped "
                        "silently, so the recurrent lateral edge vanishes)",
                        "no recurrence: each module runs all T steps at once",
                        "spike_fn = SingleSpike for one spike per step (default MultiSpike)"]
        sb["stripped_fields"] = stripped["generic_nested"]
        result["consumers"]["sinabs"] = sb
    return result


def load_model(args):
    from spikebridge.colanet import CoLaNET

    if args.model:
        from spikebridge.learner import load_learner

        learner, _ = load_learner(args.model)
        model = getattr(learner, "model", learner)
        if not isinstance(model, CoLaNET):
            raise SystemExit(f"{args.model} is not a CoLaNET model")
        return model
    from spikebridge.learner import create_learner
    from spikebridge.training import train

    tr = args.train_split
    learner = create_learner("colanet", tr.features.shape[1], len(np.unique(tr.labels)), seed=args.seed, steps=args.steps)
    learner, _ = train(learner, tr.features, tr.labels, progress=False)
    return learner.model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "datasets" / "imagenette"))
    ap.add_argument("--model", type=Path, default=None, help="a trained CoLaNET (model.safetensors); default: train one")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sinabs-python", default=None, help=f"python of the Sinabs environment (default ${SINABS_ENV} "
                                                          f"or {SINABS_PYTHON})")
    ap.add_argument("--quick", action="store_true", help="a seeded class-stratified 500-example val sample")
    ap.add_argument("--out", type=Path, default=None,
                    help="file whose nir_consumers and hardware_fit keys are written (default: "
                         "benchmarks/results/deploy.json; --quick: benchmarks/results/quick/deploy.json)")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from accuracy import features_for
    from harness import result_path

    args.out = result_path("deploy.json", args.quick, args.out)  # read, merged into and written

    from spikebridge.deploy.hardware import fit_all, fit_report
    from spikebridge.features import DEFAULT_CACHE
    from spikebridge.io import write_json_atomic
    from spikebridge.report import machine_info

    tr, va, _ = features_for(args.dataset, "efficientnet_lite0", DEFAULT_CACHE)
    args.train_split = tr
    features, labels = va.features, va.labels
    if args.quick:
        from spikebridge.energy import stratified_sample

        keep = stratified_sample(labels, 500, seed=args.seed)
        features, labels = features[keep], labels[keep]
    t0 = time.perf_counter()
    model = load_model(args)
    print(f"CoLaNET: {int(model.active.sum())} recruited neurons ({time.perf_counter() - t0:.0f} s)")
    sinabs_py = sinabs_python(args.sinabs_python)
    t0 = time.perf_counter()
    result = {"quick": args.quick, "model": str(args.model) if args.model else "trained (library defaults, seed "
              f"{args.seed})", **measure(model, features, labels, args.steps, sinabs_py),
              "peers_versions": _versions(["snntorch", "norse"]), "seconds": time.perf_counter() - t0,
              "machine": machine_info()}
    fits = fit_all(model)
    lines = fit_report(model)
    print("\n".join(lines))
    hardware = {"model": {"inputs": result["inputs"], "neurons": result["neurons"], "classes": model.n_classes},
                "chips": {k: f.to_dict() for k, f in fits.items()}, "report": lines, "machine": result["machine"]}
    from spikebridge.deploy.hardware import CHIPS

    hardware["limits"] = {k: {"name": c.name, "toolchain": c.toolchain, "source": c.source, "uncertain": c.uncertain}
                          for k, c in CHIPS.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    write_json_atomic(args.out, {**previous, "nir_consumers": result, "hardware_fit": hardware})
    print(f"wrote the keys nir_consumers and hardware_fit of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
