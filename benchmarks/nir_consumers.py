r"""More NIR consumers (Sinabs for Speck, Rockpool for Xylo) and the hardware fit, on Imagenette.

    python benchmarks/nir_consumers.py            # full val (3,925), trains CoLaNET with the library defaults
    python benchmarks/nir_consumers.py --quick    # a class-stratified 500-example val sample
    python benchmarks/nir_consumers.py --model runs/x/model.safetensors   # a trained model instead

For each consumer the exported graph is read with the consumer's own NIR entry point
(``sinabs.from_nir``, ``rockpool.nn.modules.from_nir``), fed our input spikes, and decided by
the library's readout (:func:`spikebridge.export.readout_scores`) on its output spikes (final
membrane for the last tie-break where the consumer exposes it). Each row reports

* ``agreement``: the consumer's decisions vs ours (``CoLaNET.simulate`` + ``column_decision``);
* ``reference_agreement`` / ``spike_match``: vs our own simulation of the *same* graph (lateral
  inhibition dropped or made feed-forward), i.e. whether the consumer runs what the graph says;
* what the importer needed and what it rejected (the exact error).

Graphs beside the exported one, where an importer cannot take it (built here with ``nir``):

* ``no_lateral``: input -> Affine -> LIF -> output (the recurrent edge dropped);
* ``feedforward_inhibition``: a copy of the population without inhibition (``lif_drive``)
  inhibits the real one through an Affine (``-g theta`` between different neurons of a member)
  in the *same* step: lateral inhibition with no recurrent edge (ours acts one step late);
* ``if``: integrate-and-fire nodes (Speck's neuron: no multiplicative leak), no lateral edge;
* ``rockpool``: the nested recurrent CubaLIF that Rockpool's importer maps onto its
  ``LIFTorch(has_rec=True)``; Rockpool derives ``dt = min(tau_mem / (1 + r))`` and decays the
  synaptic current before the membrane adds it, so the graph has ``r = tau_mem/dt - 1``,
  ``tau_mem = -dt/ln(beta)`` and a near-instantaneous synapse (``tau_syn = dt/(24 ln 2)``,
  decay ``b`` = 2^-24) with every weight divided by ``b`` (``b I / b = I``).

Sinabs 3.1.3 pins ``nir<=1.0.4`` and runs in its own virtual environment
(``/work/venvs/sinabs``, or ``--sinabs-python`` / ``$SPIKEBRIDGE_SINABS_PYTHON``; ``.ci/sinabs-env``
builds one): this script calls itself there (``--worker``) with the graph files and the input spikes (bit-packed ``.npy``)
and reads the output spikes back (``.npz``, no pickle).

Also records ``hardware_fit`` (:func:`spikebridge.export.hardware.fit_all`) for the trained model.
Writes the keys ``nir_consumers`` and ``hardware_fit`` of benchmarks/results/deploy.json (other keys
kept; ``--quick``: benchmarks/results/quick/deploy.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    from spikebridge.currents import PRECISION_ENV
except ImportError:  # the Sinabs worker: this file run in the Sinabs environment, which has no spikebridge
    pass
else:  # published accuracy: the fp32 simulation every CPU reproduces (spikebridge.currents.default_bf16)
    os.environ.setdefault(PRECISION_ENV, "fp32")

ROOT = Path(__file__).resolve().parent.parent
SINABS_ENV = "SPIKEBRIDGE_SINABS_PYTHON"
SINABS_PYTHON = Path("/work/venvs/sinabs/bin/python")
SYNAPSE_SHIFT = 24  # rockpool graph: synaptic decay 2^-24 per step, weights scaled by its inverse


# =========================================================================== the Sinabs worker
# Runs in the Sinabs environment: imports numpy, torch, nir and sinabs only (no spikebridge).
def sinabs_worker(jobs_file: str) -> int:
    import importlib.metadata as md

    import nir
    import torch
    from sinabs.activation import SingleSpike
    from sinabs.nir import from_nir

    jobs = json.loads(Path(jobs_file).read_text())
    packed = np.load(jobs["spikes"], allow_pickle=False)  # [T, B, ceil(N / 8)] bits, unpacked per batch
    T, B, N = packed.shape[0], packed.shape[1], jobs["inputs"]
    versions = {p: md.version(p) for p in ("sinabs", "nir", "nirtorch", "torch")}
    report = {"versions": versions, "runs": []}
    for job in jobs["runs"]:
        entry = {"name": job["name"]}
        try:
            graph = nir.read(job["graph"])
        except Exception as exc:  # the importer's own refusal is the result
            entry.update(status="rejected", stage="nir.read", error=f"{type(exc).__name__}: {exc}".splitlines()[0])
            report["runs"].append(entry)
            continue
        try:
            module = from_nir(graph, num_timesteps=T)
        except Exception as exc:
            entry.update(status="rejected", stage="sinabs.from_nir", error=f"{type(exc).__name__}: {exc}".splitlines()[0])
            report["runs"].append(entry)
            continue
        entry["modules"] = {name: type(m).__name__ for name, m in module.named_children()}
        entry["dropped_nodes"] = sorted(set(_flat_node_names(graph)) - set(_flat_module_names(module)))
        neurons = [m for m in module.modules() if hasattr(m, "spike_fn")]
        if job["single_spike"]:
            for m in neurons:
                m.spike_fn = SingleSpike
        readout = dict(module.named_modules())[job["readout"]]
        outs, vs = [], []
        with torch.no_grad():
            for b in range(0, B, job["batch"]):
                chunk = np.unpackbits(packed[:, b : b + job["batch"]], axis=-1, count=N).astype(np.float32)
                x = torch.from_numpy(chunk).permute(1, 0, 2).reshape(-1, N)  # [B T, N], sample-major
                nb = x.shape[0] // T
                for m in neurons:
                    m.reset_states(randomize=False)
                out = module(x)
                out = out[0] if isinstance(out, tuple) else out
                outs.append(out.reshape(nb, T, -1).permute(1, 0, 2).numpy().copy())
                vs.append(readout.v_mem.reshape(nb, -1).numpy().copy())  # the next reset zeroes the buffer in place
        out = np.concatenate(outs, 1)
        np.savez(job["out"], spikes=out.astype(np.uint16), v=np.concatenate(vs).astype(np.float32))
        entry.update(status="ran", max_spikes_per_step=int(out.max()))
        report["runs"].append(entry)
    Path(jobs["report"]).write_text(json.dumps(report))
    return 0


def _flat_node_names(graph, prefix=""):
    for name, node in graph.nodes.items():
        if hasattr(node, "nodes"):
            yield from _flat_node_names(node, prefix + name + ".")
        elif type(node).__name__ not in ("Input", "Output"):
            yield prefix + name


def _flat_module_names(module, prefix=""):
    for name, m in module.named_children():
        if type(m).__name__ == "GraphExecutor":
            yield from _flat_module_names(m, prefix + name + ".")
        elif type(m).__name__ != "Identity":
            yield prefix + name


# =========================================================================== graphs
def _full(j, value):
    return np.full(j, value, dtype=np.float64)


def variant_graph(net, dt: float, variant: str):
    """A NIR graph of the exported network ``net`` (:class:`spikebridge.export.Network`) laid out
    for a consumer (module docstring): ``no_lateral``, ``feedforward_inhibition``, ``if`` (Sinabs:
    ``tau`` in time steps) or ``rockpool``."""
    import math

    import nir
    import torch

    J, N = net.weights.shape
    w = net.weights.numpy().astype(np.float32)
    zeros = np.zeros(J, np.float32)
    theta = net.neuron_threshold().numpy().astype(np.float32)
    size_in, size_out = np.array([N]), np.array([J])
    io = {"input": nir.Input(input_type=size_in), "output": nir.Output(output_type=size_out)}
    tau_steps = -1.0 / math.log(net.beta)  # Sinabs: alpha = exp(-1 / tau), tau in time steps

    def sinabs_lif():
        return nir.LIF(tau=_full(J, tau_steps), r=_full(J, 1.0), v_leak=_full(J, 0.0), v_threshold=theta)

    if variant == "no_lateral":
        nodes = {**io, "synapses": nir.Affine(weight=w, bias=zeros), "lif": sinabs_lif()}
        return nir.NIRGraph(nodes=nodes, edges=[("input", "synapses"), ("synapses", "lif"), ("lif", "output")])
    if variant == "if":
        nodes = {**io, "synapses": nir.Affine(weight=w, bias=zeros), "lif": nir.IF(r=_full(J, 1.0), v_threshold=theta)}
        return nir.NIRGraph(nodes=nodes, edges=[("input", "synapses"), ("synapses", "lif"), ("lif", "output")])
    lateral = net.lateral_matrix().numpy().astype(np.float32)
    if variant == "feedforward_inhibition":
        nodes = {**io, "synapses": nir.Affine(weight=w, bias=zeros), "lif_drive": sinabs_lif(),
                 "inhibition": nir.Affine(weight=lateral, bias=zeros), "lif": sinabs_lif()}
        # edge order matters to nirtorch's depth-first execution order: lif_drive, inhibition, then lif
        edges = [("input", "synapses"), ("synapses", "lif_drive"), ("lif_drive", "inhibition"), ("inhibition", "lif"),
                 ("synapses", "lif"), ("lif", "output")]
        return nir.NIRGraph(nodes=nodes, edges=edges)
    if variant == "rockpool":
        b = float(torch.exp(torch.tensor(-float(SYNAPSE_SHIFT) * math.log(2.0))))  # as Rockpool computes it (float32)
        tau_mem = -dt / math.log(net.beta)
        tau_syn = dt / (SYNAPSE_SHIFT * math.log(2.0))
        neuron = nir.CubaLIF(tau_syn=_full(J, tau_syn), tau_mem=_full(J, tau_mem), r=_full(J, tau_mem / dt - 1.0),
                             v_leak=_full(J, 0.0), v_threshold=theta, w_in=_full(J, 1.0))
        population = nir.NIRGraph(
            nodes={"input": nir.Input(input_type=size_out), "lif": neuron,
                   "lateral": nir.Linear(weight=(lateral / b).astype(np.float32)),
                   "output": nir.Output(output_type=size_out)},
            edges=[("input", "lif"), ("lif", "lateral"), ("lateral", "lif"), ("lif", "output")])
        nodes = {**io, "synapses": nir.Affine(weight=(w / b).astype(np.float32), bias=zeros),
                 "winner_take_all": population}
        return nir.NIRGraph(nodes=nodes, edges=[("input", "synapses"), ("synapses", "winner_take_all"),
                                                ("winner_take_all", "output")])
    raise ValueError(f"unknown graph variant {variant!r}")


def without_v_reset(path: Path) -> list[str]:
    """Delete the ``v_reset`` fields of ``path`` (NIR 1.0.4, which Sinabs pins, has none and
    refuses a file that has them; 0 is what 1.0.4 assumes). Returns the fields removed."""
    import h5py

    names = []
    with h5py.File(path, "a") as f:
        f.visit(lambda k: names.append(k) if k.rsplit("/", 1)[-1] == "v_reset" else None)
        for k in names:
            del f[k]
    return names


# =========================================================================== our reference
def reference_spikes(net, input_spikes, variant: str, lateral: float):
    """Our simulation of ``variant`` of the exported network: output spikes ``[T, B, J']`` and the
    final membrane ``[B, J']``.

    ``recurrent`` (as exported and as ``CoLaNET.simulate``), ``no_lateral`` (``g = 0``), ``if``
    (``beta = 1``, ``g = 0``) or ``feedforward_inhibition``: a population without inhibition
    ``s1``, then ``I_j[t] - g theta sum_{l != j, same member} s1_l[t]`` into the output population
    (:func:`spikebridge.neurons.lif_population` for both)."""
    import torch

    from spikebridge.currents import spike_currents
    from spikebridge.neurons import PopulationParameters, lif_population

    currents = spike_currents(input_spikes, net.weights.unsqueeze(0), "dense")[0]  # [T, B, J']
    T, B, J = currents.shape

    def run(cur, g, beta=net.beta):
        out, v = torch.zeros(T, B, J), torch.zeros(B, J)
        for k in range(len(net.threshold)):
            sel = net.member == k
            p = PopulationParameters(beta, net.threshold[k : k + 1], g)
            rec = lif_population(cur[:, :, sel].unsqueeze(0), p, keep_spikes=True)
            out[:, :, sel], v[:, sel] = rec.spikes[:, 0], rec.v_final[0]
        return out, v

    if variant == "recurrent":
        return run(currents, lateral)
    if variant == "no_lateral":
        return run(currents, 0.0)
    if variant == "if":
        return run(currents, 0.0, beta=1.0)
    if variant == "feedforward_inhibition":
        drive, _ = run(currents, 0.0)
        inhibition = torch.einsum("tbl,jl->tbj", drive, net.lateral_matrix())  # -g theta * (others' spikes)
        return run(currents + inhibition, 0.0)
    raise ValueError(f"unknown reference variant {variant!r}")


# =========================================================================== consumers
def decide(net, spikes, steps: int, v=None):
    """Predictions from output spikes ``[T, B, J']`` (counts may exceed 1) with the library readout."""
    import torch

    from peers import _first_spike
    from spikebridge import export as ex

    spikes = torch.as_tensor(spikes, dtype=torch.float32)
    v = None if v is None else torch.as_tensor(v, dtype=torch.float32)
    return ex.readout_scores(spikes.sum(0), _first_spike(spikes), net, steps, v).argmax(1)


def run_rockpool(path: Path, input_spikes, single_spike: bool, batch: int = 500):
    """Import ``path`` with ``rockpool.nn.modules.from_nir`` and run it: ``(spikes [T, B, J'], v [B, J'])``."""
    import warnings

    import nir
    import torch
    from rockpool.nn.modules import from_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nirtorch.load's deprecation note
        module = from_nir(nir.read(str(path)))
    neurons = [m for m in module.modules() if hasattr(m, "max_spikes_per_dt")]
    for m in neurons:
        if single_spike:
            m.max_spikes_per_dt = torch.tensor(1.0)
        m._record = True  # keep the membrane of every example (the module's own state holds only the first)
    readout = neurons[-1]
    x = torch.as_tensor(input_spikes, dtype=torch.float32).permute(1, 0, 2)  # [B, T, N]
    outs, vs = [], []
    with torch.no_grad():
        for b in range(0, x.shape[0], batch):
            for m in neurons:
                m.reset_state()
            out = module(x[b : b + batch])
            out = out[0] if isinstance(out, tuple) else out
            outs.append(out.permute(1, 0, 2))
            vs.append(readout._record_dict["vmem"][:, -1].clone())
    return torch.cat(outs, 1), torch.cat(vs)


def sinabs_python(explicit: str | None) -> Path | None:
    p = Path(explicit or os.environ.get(SINABS_ENV) or SINABS_PYTHON)
    return p if p.is_file() else None


def run_sinabs(python: Path, jobs: list[dict], input_spikes, workdir: Path, timeout: int = 3600) -> dict:
    """Run ``jobs`` (graph, single_spike, readout node) in the Sinabs environment; returns its report
    with each ran job's ``spikes [T, B, J']`` and ``v [B, J']`` loaded."""
    spikes_file = workdir / "input_spikes.npy"
    np.save(spikes_file, np.packbits(np.asarray(input_spikes, dtype=np.uint8), axis=-1))
    for i, job in enumerate(jobs):
        job.setdefault("out", str(workdir / f"sinabs_{i}.npz"))
        job.setdefault("batch", 250)
    spec = {"spikes": str(spikes_file), "inputs": int(input_spikes.shape[-1]), "runs": jobs,
            "report": str(workdir / "sinabs_report.json")}
    (workdir / "jobs.json").write_text(json.dumps(spec))
    proc = subprocess.run([str(python), str(Path(__file__).resolve()), "--worker", str(workdir / "jobs.json")],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the Sinabs worker failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    report = json.loads(Path(spec["report"]).read_text())
    for job, entry in zip(jobs, report["runs"]):
        if entry["status"] == "ran":
            with np.load(job["out"], allow_pickle=False) as data:
                entry["spikes"], entry["v"] = data["spikes"].astype(np.float32), data["v"]
    return report


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

    from spikebridge import export as ex

    net = ex.network_of(model)
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
            ex.export_nir(model, files[f"{target}_{layout}"], target=target, layout=layout)
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
        from spikebridge.train import load_learner

        learner, _ = load_learner(args.model)
        model = getattr(learner, "model", learner)
        if not isinstance(model, CoLaNET):
            raise SystemExit(f"{args.model} is not a CoLaNET model")
        return model
    from spikebridge.learner import create_learner
    from spikebridge.train import train

    tr = args.train_split
    learner = create_learner("colanet", tr.features.shape[1], len(np.unique(tr.labels)), seed=args.seed, steps=args.steps)
    learner, _ = train(learner, tr.features, tr.labels, progress=False)
    return learner.model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run Sinabs jobs (in the Sinabs environment)
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
    if args.worker:
        return sinabs_worker(args.worker)

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from accuracy import features_for
    from harness import result_path

    args.out = result_path("deploy.json", args.quick, args.out)  # read, merged into and written

    from spikebridge.export.hardware import fit_all, fit_report
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
    from spikebridge.export.hardware import CHIPS

    hardware["limits"] = {k: {"name": c.name, "toolchain": c.toolchain, "source": c.source, "uncertain": c.uncertain}
                          for k, c in CHIPS.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    write_json_atomic(args.out, {**previous, "nir_consumers": result, "hardware_fit": hardware})
    print(f"wrote the keys nir_consumers and hardware_fit of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
