r"""Run an exported int8 CoLaNET (``Int8CoLaNET``, ``dynamics="loihi"``) in Intel's Lava on its
bit-accurate Loihi model (``Loihi2SimCfg(select_tag="fixed_pt")``).

Run as a file by the Lava environment's python (``.ci/lava-env``; Lava 0.10 needs Python 3.10,
spikebridge 3.11), so it imports numpy, safetensors and lava only -- never spikebridge or torch::

    $SPIKEBRIDGE_LAVA_PYTHON src/spikebridge/deploy/lava_worker.py JOBS.json

``JOBS.json``: ``{"model": int8 .safetensors, "spikes": .npy of bit-packed input spikes
[T, B, ceil(N / 8)] (``np.packbits`` on the last axis), "out": .npz to write, "chunk": examples per
Lava run, "copies": copies of the network side by side, "report": .json to write}``. Writes
``counts``, ``first`` (1-based first spike step, ``T + 1`` if none) and ``v`` (membrane after the
last step, Lava units) ``[B, J']`` into ``out`` and versions, process counts and the spikes seen
between examples into ``report``.

The network of each member ``k`` (Lava processes, all Lava's own)::

    io.source.RingBuffer (input spikes) -> Dense (2 w_q, weight_exp -1) -> LIFReset
    LIFReset.s_out -> Dense (-2 d_b, weight_exp 7 b - 1), b = 0..3 -> LIFReset.a_in   (lateral)
    LIFReset.s_out -> io.sink.RingBuffer;  Monitor probes LIFReset.v

* Dense: Lava's 8-bit mixed-sign weights are even numbers in [-256, 254] (the LSB is truncated),
  then shifted by ``weight_exp``; ``2 w_q`` with ``weight_exp = -1`` delivers ``sum w_q x`` exactly.
* Lateral weight ``g_q`` (up to 24 bits) as base-128 digits ``g_q = sum_b d_b 128**b``: one Dense
  per non-zero digit, weights ``-2 d_b`` between different neurons of the member, exponent ``7 b - 1``.
* LIF: ``du = 4095`` (decay constant ``du + 1 = 4096``: no current memory), ``dv = decay_dv``,
  ``vth = theta_q``, ``bias 0``; Lava's arithmetic is what ``Int8CoLaNET.step_loihi`` writes down.
* Timing: Dense delivers a step late, in both paths, so our step ``tau`` of example ``e`` is LIF
  step ``e P + tau + 2`` (Lava counts from 1) with ``P = T + 1`` steps per example. ``LIFReset``
  (``reset_interval = P``, ``reset_offset = 2``) zeroes ``u`` and ``v`` before the first step of each
  example. The one step between examples (input 0, lateral input <= 0 unless the current wraps,
  ``|decay(v)| <= |v| <= vth``) does not spike, so no inhibition crosses into the next example
  (``gap_spikes`` counts exceptions: a wrap there would show as a difference from our simulation).
* ``copies`` independent copies of the network run side by side as one network with
  block-diagonal weights (``kron(I, W)``): Lava's cost is mostly per step, so ``copies`` examples
  share each step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # run as a file: its folder (spikebridge/deploy, with nir.py) must not shadow packages

ACT_DIGIT = 7  # lateral weight digits: 7 bits each (Dense weights -2 d, |2 d| <= 254)
DIGITS = 4  # 4 x 7 = 28 bits cover the 24-bit lateral weight


def load_model(path: str) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != "spikebridge-int8":
        raise SystemExit(f"{path} is not a spikebridge int8 model")
    if meta.get("dynamics_kind") != "loihi":
        raise SystemExit(f"{path} has dynamics {meta.get('dynamics_kind', 'spikebridge')!r}; Lava's LIF runs "
                         "dynamics 'loihi' (Int8CoLaNET.quantise(model, dynamics='loihi'))")
    return tensors, meta


def lateral_digits(g: int) -> list[tuple[int, int]]:
    """``[(b, d_b)]`` with ``g = sum_b d_b 128**b``, non-zero digits only."""
    if not 0 <= g < 1 << (ACT_DIGIT * DIGITS):
        raise SystemExit(f"lateral weight {g} outside [0, 2**{ACT_DIGIT * DIGITS})")
    return [(b, (g >> (ACT_DIGIT * b)) & 127) for b in range(DIGITS) if (g >> (ACT_DIGIT * b)) & 127]


def build(t: dict, meta: dict, spikes: np.ndarray, copies: int):
    """Lava processes for input spikes ``[copies N, steps]`` (int32) of ``copies`` independent copies of
    the network side by side (block-diagonal weights); returns (source, [(idx, sink, monitor, lif)], n)."""
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFReset
    from lava.proc.monitor.process import Monitor

    steps = spikes.shape[1]
    P = int(meta["steps"]) + 1
    w = t["weights"].astype(np.int32)
    member = t["member"].astype(np.int64)
    src = Source(data=spikes)
    members, n_procs = [], 1
    for k in range(len(t["threshold"])):
        idx = np.flatnonzero(member == k)
        if len(idx) == 0:
            continue
        M = len(idx)
        lanes = np.eye(copies, dtype=np.int32)
        lif = LIFReset(shape=(copies * M,), du=4095, dv=int(meta["decay_dv"]), vth=int(t["threshold"][k]),
                       bias_mant=0, bias_exp=0, reset_interval=P, reset_offset=2)
        ff = Dense(weights=np.kron(lanes, 2 * w[idx]), weight_exp=-1, num_weight_bits=8)
        src.s_out.connect(ff.s_in)
        ff.a_out.connect(lif.a_in)
        n_procs += 2
        if M > 1:
            others = np.kron(lanes, 1 - np.eye(M, dtype=np.int32))
            for b, d in lateral_digits(int(t["lateral"][k])):
                lat = Dense(weights=-2 * d * others, weight_exp=ACT_DIGIT * b - 1, num_weight_bits=8)
                lif.s_out.connect(lat.s_in)
                lat.a_out.connect(lif.a_in)
                n_procs += 1
        sink = Sink(shape=(copies * M,), buffer=steps)
        lif.s_out.connect(sink.a_in)
        mon = Monitor()
        mon.probe(lif.v, steps)
        members.append((idx, sink, mon, lif))
        n_procs += 2
    return src, members, n_procs


def run_chunk(t: dict, meta: dict, x: np.ndarray, copies: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Input spikes ``x [T, C, N]`` (0/1) of ``C`` examples -> counts, first, v ``[C, J']``, gap spikes,
    processes. Example ``e = lane S + slot`` runs in copy ``lane`` from step ``slot P`` (``S`` slots)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    T, C, N = x.shape
    P = T + 1
    S = -(-C // copies)
    J = len(t["member"])
    x = np.concatenate([x, np.zeros((T, S * copies - C, N), x.dtype)], 1)  # silent padding examples
    data = np.zeros((copies, N, S, P), dtype=np.int32)  # column slot P + tau: step tau (Lava step slot P + tau + 1)
    data[..., :T] = x.reshape(T, copies, S, N).transpose(1, 3, 2, 0)
    src, members, n_procs = build(t, meta, data.reshape(copies * N, S * P), copies)
    try:
        src.run(condition=RunSteps(num_steps=S * P), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out_s = np.zeros((copies, J, S * P), dtype=np.int64)
        out_v = np.zeros((copies, J, S * P), dtype=np.int64)
        for idx, sink, mon, lif in members:
            out_s[:, idx] = sink.data.get().astype(np.int64).reshape(copies, len(idx), S * P)
            v = np.asarray(mon.get_data()[lif.name]["v"]).reshape(S * P, copies, len(idx))
            out_v[:, idx] = v.transpose(1, 2, 0).astype(np.int64)
    finally:
        src.stop()
    # LIF step slot P + tau + 2 is column slot P + tau + 1; column slot P is the step between examples
    s = np.roll(out_s, -1, axis=-1).reshape(copies, J, S, P).transpose(0, 2, 1, 3).reshape(copies * S, J, P)[:C]
    v = np.roll(out_v, -1, axis=-1).reshape(copies, J, S, P).transpose(0, 2, 1, 3).reshape(copies * S, J, P)[:C]
    gap = int(s[..., T].sum())
    s = s[..., :T]
    fired = s.any(-1)
    first = np.where(fired, s.argmax(-1) + 1, T + 1)
    return s.sum(-1), first, v[..., T - 1], gap, n_procs


def main(argv=None) -> int:
    import importlib.metadata as md

    import lava.proc.dense.process  # noqa: F401  Lava sets multiprocessing's start method: before tqdm fixes it

    jobs = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    t, meta = load_model(jobs["model"])
    packed = np.load(jobs["spikes"], allow_pickle=False)
    N = int(meta["n_inputs"])
    T, B = packed.shape[:2]
    if T != int(meta["steps"]):
        raise SystemExit(f"spikes have {T} steps; the model runs {meta['steps']}")
    chunk = int(jobs.get("chunk", 100))
    copies = int(jobs.get("copies", 1))
    counts, first, v = [], [], []
    gap, n_procs = 0, 0
    bar = None
    if jobs.get("progress", True):
        try:
            from tqdm import tqdm

            bar = tqdm(total=B, desc="Lava fixed_pt", unit="ex", file=sys.stderr)
        except ImportError:
            pass
    for b in range(0, B, chunk):
        x = np.unpackbits(packed[:, b : b + chunk], axis=-1, count=N)
        c, f, vv, g, n_procs = run_chunk(t, meta, x, copies)
        counts.append(c), first.append(f), v.append(vv)
        gap += g
        if bar is not None:
            bar.update(x.shape[1])
        else:
            print(f"Lava: {min(b + chunk, B)}/{B} examples", file=sys.stderr, flush=True)
    if bar is not None:
        bar.close()
    np.savez(jobs["out"], counts=np.concatenate(counts), first=np.concatenate(first), v=np.concatenate(v))
    report = {"versions": {p: md.version(p) for p in ("lava-nc", "numpy")}, "python": sys.version.split()[0],
              "examples": B, "chunk": chunk, "copies": copies, "processes_per_run": n_procs, "gap_spikes": gap,
              "run_cfg": "Loihi2SimCfg(select_tag='fixed_pt')", "neuron": "lava.proc.lif.process.LIFReset"}
    Path(jobs["report"]).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
