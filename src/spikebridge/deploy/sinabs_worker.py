r"""Run NIR graphs in Sinabs (``sinabs.from_nir``) for `run_sinabs()`.

Sinabs 3.1.3 pins ``nir<=1.0.4``, so it lives in its own environment (``.ci/sinabs-env`` builds
one; ``$SPIKEBRIDGE_SINABS_PYTHON`` names its python) and this file runs there, as a file: it
imports numpy, torch, nir and sinabs only -- never spikebridge::

    $SPIKEBRIDGE_SINABS_PYTHON src/spikebridge/deploy/sinabs_worker.py JOBS.json

``JOBS.json``: ``{"spikes": .npy of bit-packed input spikes [T, B, ceil(N / 8)] (``np.packbits``
on the last axis), "inputs": N, "runs": [{"name", "graph": .nir file, "single_spike": bool,
"readout": name of the LIF module whose final membrane is read, "batch": examples per run,
"out": .npz to write}], "report": .json to write}``. Each run that imports writes ``spikes``
``[T, B, J']`` (uint16) and ``v`` ``[B, J']`` into its ``out``; the report holds the versions and,
per run, ``status`` (``"ran"`` or ``"rejected"`` with the importer's ``stage`` and ``error``), the
modules Sinabs built and the graph nodes it dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # run as a file: its folder (spikebridge/deploy, with nir.py) must not shadow packages


def sinabs_worker(jobs_file: str) -> int:
    """Run the jobs of ``jobs_file`` (module docstring) and write their outputs and the report."""
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


if __name__ == "__main__":
    sys.exit(sinabs_worker(sys.argv[1]))
