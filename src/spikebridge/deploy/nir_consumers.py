r"""NIR consumers beyond snnTorch/Norse: Rockpool (Xylo) and Sinabs (Speck), on graphs laid out
for them, and our own simulation of each graph to compare with.

Graphs beside the exported one, where an importer cannot take it (`variant_graph()`, built
with ``nir``):

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

`reference_spikes()` simulates each variant with our population loop; `decide()` applies
the library readout (`readout_scores()`) to a consumer's output spikes.
`run_rockpool()` imports a graph with ``rockpool.nn.modules.from_nir`` in this process;
`run_sinabs()` runs graphs in Sinabs' own environment (Sinabs 3.1.3 pins ``nir<=1.0.4``;
``$SPIKEBRIDGE_SINABS_PYTHON`` or ``/work/venvs/sinabs``, built by ``.ci/sinabs-env``), where
`sinabs_worker` runs as a file; `without_v_reset()` makes a file
readable by NIR 1.0.4. Used by ``benchmarks/nir_consumers.py``; needs ``nir`` (and Rockpool or
the Sinabs environment for the consumers).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import torch

from ..currents import spike_currents
from ..neurons import PopulationParameters, lif_population
from .network import first_spike_steps, readout_scores

SINABS_ENV = "SPIKEBRIDGE_SINABS_PYTHON"
SINABS_PYTHON = Path("/work/venvs/sinabs/bin/python")
SINABS_WORKER = Path(__file__).with_name("sinabs_worker.py")
SYNAPSE_SHIFT = 24  # rockpool graph: synaptic decay 2^-24 per step, weights scaled by its inverse


# --------------------------------------------------------------------------- graphs
def _full(j, value):
    return np.full(j, value, dtype=np.float64)


def variant_graph(net, dt: float, variant: str):
    """A NIR graph of the exported network ``net`` (`Network`) laid out
    for a consumer (module docstring): ``no_lateral``, ``feedforward_inhibition``, ``if`` (Sinabs:
    ``tau`` in time steps) or ``rockpool``."""
    import nir

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


# --------------------------------------------------------------------------- our reference
def reference_spikes(net, input_spikes, variant: str, lateral: float):
    """Our simulation of ``variant`` of the exported network: output spikes ``[T, B, J']`` and the
    final membrane ``[B, J']``.

    ``recurrent`` (as exported and as ``CoLaNET.simulate``), ``no_lateral`` (``g = 0``), ``if``
    (``beta = 1``, ``g = 0``) or ``feedforward_inhibition``: a population without inhibition
    ``s1``, then ``I_j[t] - g theta sum_{l != j, same member} s1_l[t]`` into the output population
    ([`lif_population()`][spikebridge.neurons.lif_population] for both)."""
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


# --------------------------------------------------------------------------- consumers
def decide(net, spikes, steps: int, v=None):
    """Predictions from output spikes ``[T, B, J']`` (counts may exceed 1) with the library readout."""
    spikes = torch.as_tensor(spikes, dtype=torch.float32)
    v = None if v is None else torch.as_tensor(v, dtype=torch.float32)
    return readout_scores(spikes.sum(0), first_spike_steps(spikes), net, steps, v).argmax(1)


def run_rockpool(path: Path, input_spikes, single_spike: bool, batch: int = 500):
    """Import ``path`` with ``rockpool.nn.modules.from_nir`` and run it: ``(spikes [T, B, J'], v [B, J'])``."""
    import nir
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


def sinabs_python(explicit: str | None = None) -> Path | None:
    """The Sinabs environment's python: ``explicit``, else ``$SPIKEBRIDGE_SINABS_PYTHON``, else
    `SINABS_PYTHON`; None if that file does not exist."""
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
    proc = subprocess.run([str(python), str(SINABS_WORKER), str(workdir / "jobs.json")],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the Sinabs worker failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    report = json.loads(Path(spec["report"]).read_text())
    for job, entry in zip(jobs, report["runs"]):
        if entry["status"] == "ran":
            with np.load(job["out"], allow_pickle=False) as data:
                entry["spikes"], entry["v"] = data["spikes"].astype(np.float32), data["v"]
    return report
