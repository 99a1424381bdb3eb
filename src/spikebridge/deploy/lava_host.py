"""Run an [`Int8CoLaNET`][spikebridge.deploy.fixed_point.Int8CoLaNET] with ``dynamics="loihi"`` in Intel's Lava (Loihi 2
bit-accurate fixed-point models) and read its spikes back as an `IntRecord`.

Lava 0.10 runs on Python 3.10 only, so it lives in its own environment (``.ci/lava-env`` builds
one; ``$SPIKEBRIDGE_LAVA_PYTHON`` names its python) and `lava_worker` runs there as a file:
the model goes over as its own safetensors file, the input spikes as a bit-packed ``.npy``, the
result comes back as ``.npz`` (no pickle).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import SpikebridgeError
from .fixed_point import Int8CoLaNET, IntRecord

LAVA_ENV = "SPIKEBRIDGE_LAVA_PYTHON"
WORKER = Path(__file__).with_name("lava_worker.py")
WEIGHT_BUDGET = 64 << 20  # bytes of the block-diagonal feed-forward Dense (int32) that caps the copies


def copies_for(model: Int8CoLaNET, most: int = 8) -> int:
    """Copies of the network side by side: ``copies**2 * 4 J' N`` bytes of block-diagonal int32
    weights stay within `WEIGHT_BUDGET` (at most ``most``)."""
    J, N = model.weights.shape
    return int(max(1, min(most, (WEIGHT_BUDGET / (4 * J * N)) ** 0.5)))


def lava_python(python: str | os.PathLike | None = None) -> Path | None:
    """The Lava environment's python: ``python``, else ``$SPIKEBRIDGE_LAVA_PYTHON``; None if unset."""
    python = python or os.environ.get(LAVA_ENV)
    return Path(python) if python else None


def run_lava(model: Int8CoLaNET, input_spikes: torch.Tensor, python: str | os.PathLike | None = None, *,
             chunk: int = 400, copies: int | None = None, progress: bool = False) -> tuple[IntRecord, dict]:
    """Simulate ``model`` on binary ``input_spikes [T, B, N]`` in Lava; returns the spike counts,
    first spikes and final membranes (Lava units, as `simulate()` with
    ``dynamics="loihi"``) and the worker's report. ``chunk`` examples per Lava run, ``copies`` of
    the network side by side (`lava_worker`; default `copies_for()`)."""
    exe = lava_python(python)
    if exe is None or not exe.exists():
        raise SpikebridgeError(f"no Lava environment (${LAVA_ENV}={exe}): build one with .ci/lava-env and set "
                               f"${LAVA_ENV} to the python it prints")
    if model.dynamics != "loihi":
        raise SpikebridgeError("Lava's LIF runs Int8CoLaNET dynamics 'loihi' only: quantise with dynamics='loihi'")
    T, B, N = input_spikes.shape
    copies = copies or copies_for(model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / "model.int8.safetensors")
        np.save(tmp / "spikes.npy", np.packbits(input_spikes.numpy().astype(bool), axis=-1))
        jobs = {"model": str(tmp / "model.int8.safetensors"), "spikes": str(tmp / "spikes.npy"),
                "out": str(tmp / "out.npz"), "report": str(tmp / "report.json"), "chunk": chunk, "copies": int(copies),
                "progress": progress}
        (tmp / "jobs.json").write_text(json.dumps(jobs))
        run = subprocess.run([str(exe), str(WORKER), str(tmp / "jobs.json")], text=True,
                             stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE)
        if run.returncode != 0:
            tail = (run.stderr or "").strip().splitlines()[-1:] or ["(see stderr above)"]
            raise SpikebridgeError(f"Lava worker failed (exit {run.returncode}): {tail[0]}")
        with np.load(tmp / "out.npz", allow_pickle=False) as out:
            record = IntRecord(torch.from_numpy(out["counts"]).long(), torch.from_numpy(out["first"]).long(),
                               torch.from_numpy(out["v"]).long(), T)
        report = json.loads((tmp / "report.json").read_text())
    return record, report
