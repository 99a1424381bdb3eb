"""Speed of spikebridge against snnTorch, Norse and BindsNET on the same work, and against rooflines.

    python benchmarks/speed.py --quick        # ~2 min alone: 1 training epoch, 3 repeats, few training examples
    python benchmarks/speed.py                # full (~5-10 min): the default model, 10 repeats, more examples
    python benchmarks/speed.py --threads 1    # the single-thread comparison
    python benchmarks/speed.py --neurons 640  # a fixed-size network instead of the default model

Everything runs in one process, with the intra-op threads set once (``--threads``, default
torch's) for every row, on the same inputs: EfficientNet-Lite0 features of Imagenette
(cached through ``benchmarks/accuracy.py``'s ``features_for``; a cache miss extracts them
first, once, which takes many minutes; or ``--train/--val`` cache folders), a seeded
class-stratified batch of val (``--batch`` 256) rate-coded by the library's coder (T = 32).
The model is a CoLaNET trained on Imagenette train with the library defaults (``--quick``:
one epoch) or, with ``--neurons``, a fixed-size one whose free microcolumns are filled with
prototypes of training examples, so that every neuron is recruited.

1. **Inference** (one batch; min over interleaved repeats), same spikes, same weights
   ``W - gamma``, same LIF dynamics (``v = beta v + I``, spike at ``v >= theta``, subtractive reset):
   * spikebridge ``CoLaNET.simulate`` with ``method`` auto, dense and event, with the lateral
     inhibition of CoLaNET and without it (``g = 0``);
   * Norse ``LIFBoxCell`` (``reset_subtract``; its input gain ``dt * tau_mem_inv`` compensated in the
     weights so its Euler step is ``v = beta v + I``) and snnTorch ``Leaky`` (``reset_mechanism=
     "subtract"``, ``reset_delay=False``: the reset in the step of the spike, as ours), fed the
     currents of one ``nn.Linear`` over all T steps ("as shipped") or our event-driven currents,
     each eager and under ``torch.compile``. Neither cell expresses lateral inhibition, so the
     like-for-like rows compare them with our ``g = 0`` run on the same currents path.
2. **Rooflines** of this machine, timed in the same rounds: a large fp32 GEMM (peak FLOP/s),
   the GEMM of the dense currents' shape ``[T*B, N] x [N, J]``, and ``embedding_bag`` over random
   rows of the same ``[N, J]`` table with the real number of input spikes per bag (the gather
   the event path cannot avoid). SynOps/s = input spikes x fan-out (recruited neurons) / time.
3. **Training** (examples/s, batches interleaved across rows, min over passes): spikebridge's
   ``diehl-cook`` rule vs BindsNET's ``DiehlAndCook2015`` (same inputs and excitatory neurons,
   the paper's post-spike rule, same T, batch and spike trains); CoLaNET's spiking learn mode
   vs BindsNET's ``PostPre`` STDP on one ``Connection`` into ``LIFNodes`` of the same size; and
   CoLaNET's continuous mode, which simulates nothing and is listed only as such.

Writes ``benchmarks/results/speed.json`` (``--quick``: ``benchmarks/results/quick/speed.json``;
``--out`` overrides both), stamped with the machine and the load average at the start. Run it
alone: with other jobs on the cores, every loop of small tensor ops slows down many-fold
(OpenMP's spinning waits); the script warns when the load average says so, and the README
renderer does not quote timings of a busy run.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.metadata
import json
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from spikebridge.coding import encode
from spikebridge.colanet import CoLaNET, CoLaNETConfig
from spikebridge.cpu import cpu_has_native_bf16
from spikebridge.crossover import event_crossover
from spikebridge.current_paths import spike_density
from spikebridge.currents import resolve_method, spike_currents
from spikebridge.energy import balanced_sample
from spikebridge.learner import create_learner
from spikebridge.peer_cells import norse_lifbox, norse_run, snntorch_leaky, snntorch_run
from spikebridge.report import machine_info
from spikebridge.training import train

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "imagenette"
ENCODER = "efficientnet_lite0"
TARGETS = {"event_of_gather_roofline": 0.5, "dense_of_gemm_peak": 0.7}
BUSY_LOAD_PER_CORE = 0.5  # without /proc/stat: load average above this fraction of the usable cores
BUSY_FRACTION = 0.2  # CPUs busier than this (other processes) in the 2 s before the start: timings unreliable


# ------------------------------------------------------------------------------ inputs and model
def load_inputs(args):
    from spikebridge.features import load_features

    if args.train and args.val:
        return load_features(args.train), load_features(args.val), f"cached feature folders {args.train.name}, {args.val.name}"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from accuracy import features_for

    tr, va, _ = features_for(args.dataset, ENCODER, args.cache_dir)
    return tr, va, f"{ENCODER} features of {Path(args.dataset).name} (feature cache)"


def build_model(train_fs, neurons: int | None, epochs: int | None, steps: int, seed: int = 0):
    """A CoLaNET trained on ``train_fs`` with the library defaults (continuous learn mode,
    adaptive microcolumns and epochs; ``epochs`` overrides the count), or with ``neurons``
    fixed (``neurons // classes`` microcolumns; free ones then get prototypes of random
    training examples of their class, so that all are recruited)."""
    x, y = train_fs.features, train_fs.labels
    classes = int(y.max()) + 1
    config = CoLaNETConfig(steps=steps, seed=seed, microcolumns=None if neurons is None else max(1, neurons // classes))
    learner = create_learner("colanet", x.shape[1], classes, config=config)
    learner, hist = train(learner, x, y, epochs=epochs, progress=False)
    model = learner.model
    filled = 0
    if neurons is not None:
        rates = model.rates(x)
        labels = torch.as_tensor(y)
        gen = torch.Generator().manual_seed(seed)
        for j in (~model.active[0]).nonzero().flatten().tolist():
            pool = (labels == int(model.column[j])).nonzero().flatten()
            pick = pool[torch.randint(len(pool), (1,), generator=gen)]
            model.weights[0, j] = model.config.w_max * rates[int(pick)]
            model.active[0, j] = True
            filled += 1
        model.calibrate(rates[:4096])
    K, J, N = model.weights.shape
    info = {"kind": "library defaults" if neurons is None else f"fixed size: {J} neurons",
            "epochs": hist["epochs_planned"], "train_seconds": hist["train_seconds"],
            "microcolumns": model.config.microcolumns, "features": int(x.shape[1]), "input_channels": N,
            "neurons": K * J, "recruited": int(model.active.sum()), "prototype_filled": filled,
            "theta": float(model.threshold[0]), "beta": model.config.beta,
            "lateral_inhibition": model.config.lateral_inhibition, "coder": model.config.coder}
    return model, info


# ------------------------------------------------------------------------------ peers
def import_peer(module: str):
    """``(module, None)`` or ``(None, the import error)``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # norse: torch.jit.script deprecation notices
            return importlib.import_module(module), None
    except Exception as exc:  # ImportError, or a peer that breaks with this torch: recorded, rows skipped
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def explain_fn(fn, args: tuple) -> dict:
    """What ``torch._dynamo.explain`` says about ``fn``: graphs, graph breaks, first reasons.
    (It resets dynamo's caches: call it before compiling anything.)"""
    try:
        exp = torch._dynamo.explain(fn)(*args)
    except Exception as exc:  # diagnostics only: the error is the information
        return {"explain_error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    return {"graphs": exp.graph_count, "graph_breaks": exp.graph_break_count,
            "break_reasons": sorted({r.reason.splitlines()[0][:160] for r in exp.break_reasons})[:3]}


def compile_fn(fn, args: tuple, name: str) -> tuple:
    """``torch.compile(fn)`` and the seconds of its first call (the compilation):
    ``(compiled or None, info)``; a failure is reported on stderr and in ``info["error"]``."""
    try:
        compiled = torch.compile(fn)
        t0 = time.perf_counter()
        compiled(*args)
        return compiled, {"compile_s": time.perf_counter() - t0}
    except Exception as exc:  # no compiler, no headers...: the row is skipped and the error recorded
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        print(f"torch.compile failed for {name}: {error}", file=sys.stderr)
        return None, {"error": error}


# ------------------------------------------------------------------------------ timing
def run_interleaved(fns: dict, repeats: int) -> dict:
    """Seconds of every call: one warm-up call each, then ``repeats`` rounds that call each
    once, in an order rotated from round to round (a slow spell of a shared machine is spread)."""
    for fn in fns.values():
        fn()
    names, times = list(fns), {k: [] for k in fns}
    for r in range(repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return {k: {"min_s": min(v), "median_s": float(np.median(v)), "runs": len(v)} for k, v in times.items()}


# ------------------------------------------------------------------------------ 1. inference + rooflines
def counts_of(result) -> torch.Tensor:
    """Spike counts ``[B, J]`` of a simulate record or of a peer's ``[T, B, J]`` spikes."""
    return result.counts[0] if hasattr(result, "counts") else result.sum(0)


@torch.no_grad()
def inference_benchmark(model: CoLaNET, spikes: torch.Tensor, repeats: int, peers: dict, gemm_n: int) -> dict:
    T, B, N = spikes.shape
    K, J, _ = model.weights.shape
    cfg = model.config
    theta = float(model.threshold[0])
    w_eff = model.effective_weights()  # [K, J, N]
    KJ = K * J
    flat = copy.copy(model)  # the same weights, without lateral inhibition
    flat.config = replace(model.config, lateral_inhibition=0.0)

    rows: dict[str, dict] = {}
    fns: dict[str, callable] = {}

    def add(name, fn, **meta):
        rows[name] = meta
        fns[name] = fn

    # fp32, like the peers (the arithmetic compared like for like); bf16 (opt-in, on a CPU with native
    # bf16: SPIKEBRIDGE_SIMULATION_PRECISION=auto) is timed in its own row
    for m in ("auto", "dense", "event"):
        add(f"spikebridge CoLaNET.simulate, {m}", lambda m=m: model.simulate(spikes, method=m, bf16=False),
            group="ours", currents=m, inhibition=True, compiled=False)
    for m in ("auto", "dense", "event"):
        add(f"spikebridge CoLaNET.simulate, {m}, no inhibition", lambda m=m: flat.simulate(spikes, method=m, bf16=False),
            group="ours, g = 0", currents=m, inhibition=False, compiled=False)
    if cpu_has_native_bf16():
        add("spikebridge CoLaNET.simulate, auto, bf16 (opt-in)", lambda: model.simulate(spikes, method="auto", bf16=True),
            group="ours, bf16 (opt-in)", currents="auto", inhibition=True, compiled=False)

    compile_info: dict[str, dict] = {}
    peer_rows = []
    if peers.get("norse") is not None:
        cell, gain = norse_lifbox(cfg.beta, theta, cfg.dt)
        fc = torch.nn.Linear(N, KJ, bias=False)
        fc.weight.copy_(w_eff.reshape(KJ, N) / gain)
        w_event = w_eff / gain

        def norse_dense(x):
            return norse_run(cell, fc(x.to(torch.float32)))

        def norse_loop(c):
            return norse_run(cell, c)

        peer_rows.append(("Norse LIFBoxCell", norse_dense, norse_loop, w_event))
    if peers.get("snntorch") is not None:
        leaky = snntorch_leaky(cfg.beta, theta)
        fc_s = torch.nn.Linear(N, KJ, bias=False)
        fc_s.weight.copy_(w_eff.reshape(KJ, N))

        def snn_dense(x):
            return snntorch_run(leaky, fc_s(x.to(torch.float32)))

        def snn_loop(c):
            return snntorch_run(leaky, c)

        peer_rows.append(("snnTorch Leaky", snn_dense, snn_loop, w_eff))
    to_compile = []
    for peer, dense_fn, loop_fn, w_table in peer_rows:
        def event_currents(w=w_table):
            return spike_currents(spikes, w, "event")[0]

        add(f"{peer}, nn.Linear currents (as shipped)", lambda f=dense_fn: f(spikes),
            group="peer", currents="dense", inhibition=False, compiled=False)
        add(f"{peer}, our event-driven currents", lambda f=loop_fn, c=event_currents: f(c()),
            group="peer", currents="event", inhibition=False, compiled=False)
        to_compile.append((f"{peer}, nn.Linear currents (as shipped), torch.compile", dense_fn, (spikes,), None, "dense"))
        to_compile.append((f"{peer}, our event-driven currents, torch.compile (neuron loop)", loop_fn,
                           (event_currents(),), event_currents, "event"))
    for name, fn, args, _, _ in to_compile:  # explain resets dynamo: all of it before any compilation
        compile_info[name] = explain_fn(fn, args)
    for name, fn, args, currents_fn, path in to_compile:
        compiled, info = compile_fn(fn, args, name)
        compile_info[name].update(info)
        if compiled is None:
            continue
        call = (lambda f=compiled: f(spikes)) if currents_fn is None else (lambda f=compiled, c=currents_fn: f(c()))
        add(name, call, group="peer", currents=path, inhibition=False, compiled=True)

    # rooflines and the currents alone
    x_float = spikes.to(torch.float32).view(T * B, N)
    w_t = w_eff.reshape(KJ, N).t().contiguous()
    out_gemm = torch.empty(T * B, KJ)
    big_a, big_b, big_out = torch.randn(gemm_n, gemm_n), torch.randn(gemm_n, gemm_n), torch.empty(gemm_n, gemm_n)
    per_row = spikes.reshape(T * B, N).ne(0).sum(1)
    events = int(per_row.sum())
    gen = torch.Generator().manual_seed(0)
    rand_cols = torch.randint(N, (events,), generator=gen)
    rand_offsets = torch.cumsum(per_row, 0) - per_row
    table = w_eff.permute(2, 0, 1).reshape(N, KJ).contiguous()
    add("roofline: GEMM peak", lambda: torch.mm(big_a, big_b, out=big_out), group="roofline")
    add("roofline: dense-currents GEMM", lambda: torch.mm(x_float, w_t, out=out_gemm), group="roofline")
    add("roofline: embedding_bag gather", lambda: torch.nn.functional.embedding_bag(rand_cols, table, rand_offsets, mode="sum"),
        group="roofline")
    add("spikebridge currents only, dense", lambda: spike_currents(spikes, w_eff, "dense"), group="currents")
    add("spikebridge currents only, event", lambda: spike_currents(spikes, w_eff, "event"), group="currents")

    # spike counts of every row against ours on the same currents path (outside the timing)
    results = {k: fns[k]() for k in rows if rows[k]["group"] in ("ours", "ours, g = 0", "ours, bf16 (opt-in)", "peer")}
    reference = {m: counts_of(results[f"spikebridge CoLaNET.simulate, {m}, no inhibition"]) for m in ("dense", "event")}
    auto_path = resolve_method(spikes, "auto", KJ)
    reference["auto"] = reference[auto_path]
    for k, r in results.items():
        c = counts_of(r)
        rows[k]["out_spikes_per_sample"] = float(c.sum()) / B
        if not rows[k]["inhibition"]:
            rows[k]["identical_counts_vs_ours_g0"] = float((c == reference[rows[k]["currents"]]).float().mean())

    times = run_interleaved(fns, repeats)
    for k, t in times.items():
        rows[k].update(t)
    return {"rows": rows, "compile": compile_info, "events": events, "fan_out": KJ, "auto_path": auto_path,
            "auto_crossover": event_crossover(KJ), "gemm_n": gemm_n}


def analyse_inference(inf: dict, T: int, B: int, N: int) -> dict:
    """Like-for-like pairing, ratios, SynOps/s and roofline fractions (adds to ``inf``)."""
    rows, KJ, events = inf["rows"], inf["fan_out"], inf["events"]
    t = {k: r["min_s"] for k, r in rows.items()}
    synops = events * KJ
    dense_flop = 2.0 * T * B * N * KJ
    for k, r in rows.items():
        r["samples_per_s"] = B / r["min_s"]
        if r["group"] in ("ours", "ours, g = 0", "ours, bf16 (opt-in)", "peer"):
            r["synops_per_s"] = synops / r["min_s"]
        if r["group"] == "peer":  # like-for-like: our g = 0 run on the same currents path
            ours = f"spikebridge CoLaNET.simulate, {r['currents']}, no inhibition"
            r.update(like_for_like=True, ours=ours, ratio_to_ours=r["min_s"] / t[ours],
                     ratio_to_ours_auto=r["min_s"] / t["spikebridge CoLaNET.simulate, auto, no inhibition"])
        elif r["group"] in ("ours", "ours, g = 0"):
            r["like_for_like"] = r["group"] == "ours, g = 0"
    gemm_peak = 2.0 * inf["gemm_n"] ** 3 / t["roofline: GEMM peak"]
    roof = {
        "gemm_peak_flops": gemm_peak,
        "dense_shape_gemm_flops": dense_flop / t["roofline: dense-currents GEMM"],
        "gather_synops_per_s": synops / t["roofline: embedding_bag gather"],
        "gather_bytes_per_s": synops * 4 / t["roofline: embedding_bag gather"],
        "dense_flop_per_batch": dense_flop, "synops_per_batch": synops,
    }
    sim = lambda m: t[f"spikebridge CoLaNET.simulate, {m}"]  # noqa: E731
    roof["fractions"] = {
        "dense simulate of GEMM peak": dense_flop / sim("dense") / gemm_peak,
        "dense simulate of same-shape GEMM": t["roofline: dense-currents GEMM"] / sim("dense"),
        "dense currents of GEMM peak": dense_flop / t["spikebridge currents only, dense"] / gemm_peak,
        "dense currents of same-shape GEMM": t["roofline: dense-currents GEMM"] / t["spikebridge currents only, dense"],
        "event simulate of gather roofline": t["roofline: embedding_bag gather"] / sim("event"),
        "event currents of gather roofline": t["roofline: embedding_bag gather"] / t["spikebridge currents only, event"],
    }
    peers = {k: r for k, r in rows.items() if r.get("like_for_like") and r["group"] == "peer"}
    slower = sorted(k for k, r in peers.items() if r["ratio_to_ours"] <= 1.0)
    targets = {
        "ours fastest in every like-for-like row": (not slower) if peers else None,
        "event path >= 50 % of the gather roofline": roof["fractions"]["event simulate of gather roofline"] >= TARGETS["event_of_gather_roofline"],
        "dense path >= 70 % of GEMM peak": roof["fractions"]["dense simulate of GEMM peak"] >= TARGETS["dense_of_gemm_peak"],
    }
    return {"rooflines": roof, "targets": targets, "peers_not_slower": slower}


# ------------------------------------------------------------------------------ 3. training
def bindsnet_diehl_cook(n_inputs: int, n_neurons: int, batch: int):
    from bindsnet.learning import MCC_learning
    from bindsnet.models import DiehlAndCook2015

    torch.manual_seed(0)  # BindsNET draws its initial weights from torch's global generator
    net = DiehlAndCook2015(n_inpt=n_inputs, n_neurons=n_neurons, batch_size=batch, norm=0.1 * n_inputs,
                           learning_rule=MCC_learning.DiehlAndCook, learning_rule_kwargs={"x_tar": 0.4})
    return net


def bindsnet_postpre(n_inputs: int, n_neurons: int, batch: int):
    from bindsnet.learning import PostPre
    from bindsnet.network import Network
    from bindsnet.network.nodes import Input, LIFNodes
    from bindsnet.network.topology import Connection

    net = Network(dt=1.0, batch_size=batch)
    inp, out = Input(n=n_inputs, traces=True), LIFNodes(n=n_neurons, traces=True)
    net.add_layer(inp, name="X")
    net.add_layer(out, name="Y")
    gen = torch.Generator().manual_seed(0)
    w = 0.3 * torch.rand(n_inputs, n_neurons, generator=gen) / n_inputs ** 0.5
    net.add_connection(Connection(inp, out, w=w, update_rule=PostPre, nu=(1e-4, 1e-3), wmin=0.0, wmax=1.0),
                       source="X", target="Y")
    return net


def bindsnet_step(net, spikes: torch.Tensor, steps: int) -> None:
    net.run(inputs={"X": spikes}, time=steps)
    net.reset_state_variables()


def time_training(fns: dict, n_batches: int, passes: int) -> dict:
    """Seconds per pass over ``n_batches`` for every row: batches interleaved across rows
    (batch b of every row, then b + 1, rotating the order), one warm-up batch each first."""
    for fn in fns.values():
        fn(0)
    names, totals = list(fns), {k: [] for k in fns}
    for p in range(passes):
        acc = dict.fromkeys(names, 0.0)
        for b in range(n_batches):
            r = p * n_batches + b
            for k in names[r % len(names):] + names[: r % len(names)]:
                t0 = time.perf_counter()
                fns[k](b)
                acc[k] += time.perf_counter() - t0
        for k in names:
            totals[k].append(acc[k])
    return {k: {"min_s": min(v), "median_s": float(np.median(v)), "runs": len(v)} for k, v in totals.items()}


@torch.no_grad()
def training_benchmark(model: CoLaNET, train_fs, n_examples: int, batch: int, passes: int, bn, bn_status) -> dict:
    order = np.random.default_rng(0).permutation(len(train_fs.labels))[:n_examples]
    x, y = train_fs.features[order], torch.as_tensor(train_fs.labels[order])
    n = len(y) - len(y) % batch
    n_batches = n // batch
    classes = model.n_classes
    T = model.config.steps
    rows, fns = {}, {}

    # Diehl & Cook: ours and BindsNET's, same inputs (the rule's percentile rates), neurons, T, batch, spike trains
    dc = create_learner("diehl-cook", x.shape[1], classes, steps=T, seed=0)
    dc.prepare(train_fs.features, train_fs.labels)
    dc_rates = dc.rates(x[:n])
    c = dc.config
    dc_size = (dc_rates.shape[1], dc.n_neurons())
    fns["spikebridge diehl-cook"] = lambda b: dc.learn(dc_rates[b * batch : (b + 1) * batch], y[b * batch : (b + 1) * batch])
    rows["spikebridge diehl-cook"] = {"pair": "diehl-cook", "inputs": dc_size[0], "neurons": dc_size[1], "comparable": True}

    # CoLaNET: spiking learn mode (a spiking simulation per batch) and continuous mode, from the trained model
    spiking = create_learner("colanet", x.shape[1], classes, config=model.config, learn_mode="spiking")
    spiking.model = copy.deepcopy(model)
    continuous = create_learner("colanet", x.shape[1], classes, config=model.config, learn_mode="continuous")
    continuous.model = copy.deepcopy(model)
    co_rates = model.rates(x[:n])
    K, J, N = model.weights.shape

    def colanet_step(learner, b):
        idx = torch.arange(b * batch, (b + 1) * batch).unsqueeze(0)
        learner.learn(co_rates[idx], y[idx], rate=learner.rate_at(b * batch, n, 1))

    fns["spikebridge CoLaNET, spiking learn mode"] = lambda b: colanet_step(spiking, b)
    rows["spikebridge CoLaNET, spiking learn mode"] = {"pair": "stdp", "inputs": N, "neurons": K * J, "comparable": True}
    fns["spikebridge CoLaNET, continuous mode: no simulation (not comparable)"] = lambda b: colanet_step(continuous, b)
    rows["spikebridge CoLaNET, continuous mode: no simulation (not comparable)"] = {"pair": None, "inputs": N, "neurons": K * J,
                                                               "comparable": False}

    bn_names = {"diehl-cook": "BindsNET DiehlAndCook2015 (paper's post-spike rule)",
                "stdp": "BindsNET PostPre STDP, Connection -> LIFNodes"}
    if bn is None:
        for pair, name in bn_names.items():
            rows[name] = {"pair": pair, "status": bn_status}
    else:
        # the same spike trains, pre-encoded for BindsNET (ours encode inside learn(); regular coder: deterministic)
        dc_spikes = [encode(dc_rates[b * batch : (b + 1) * batch], T, c.coder, dt=c.dt, max_rate=1.0 / c.dt).bool()
                     for b in range(n_batches)]
        mc = model.config
        co_spikes = [encode(co_rates[b * batch : (b + 1) * batch], T, mc.coder, dt=mc.dt, max_rate=1.0 / mc.dt).bool()
                     for b in range(n_batches)]
        net_dc = bindsnet_diehl_cook(dc_size[0], dc_size[1], batch)
        net_pp = bindsnet_postpre(N, K * J, batch)
        fns[bn_names["diehl-cook"]] = lambda b: bindsnet_step(net_dc, dc_spikes[b], T)
        rows[bn_names["diehl-cook"]] = {"pair": "diehl-cook", "inputs": dc_size[0], "neurons": dc_size[1],
                                        "inhibitory_neurons": dc_size[1], "comparable": True,
                                        "same_spike_trains": c.coder == "regular"}
        fns[bn_names["stdp"]] = lambda b: bindsnet_step(net_pp, co_spikes[b], T)
        rows[bn_names["stdp"]] = {"pair": "stdp", "inputs": N, "neurons": K * J, "comparable": True,
                                  "same_spike_trains": mc.coder == "regular"}
    times = time_training(fns, n_batches, passes)
    for k, t in times.items():
        rows[k].update(t, examples=n, examples_per_s=n / t["min_s"])
    for k, r in rows.items():
        if "examples_per_s" in r and r["pair"] and not k.startswith("BindsNET"):
            other = bn_names[r["pair"]]
            if "examples_per_s" in rows[other]:
                r["ratio_vs_bindsnet"] = r["examples_per_s"] / rows[other]["examples_per_s"]
                rows[other].update(ours=k, ratio_to_ours=r["ratio_vs_bindsnet"])  # its time / ours
    return {"rows": rows, "batch": batch, "steps": T, "examples": n, "passes": passes}


# ------------------------------------------------------------------------------ report
def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def print_report(res: dict) -> None:
    cfg, inf, an = res["config"], res["inference"], res["analysis"]
    print(f"\n### Inference: {cfg['input_channels']} -> {cfg['model']['neurons']} LIF, batch {cfg['batch']}, "
          f"T = {cfg['steps']}, density {100 * cfg['input_density']:.2f} %, {cfg['threads']} thread(s) "
          f"(min of {cfg['repeats']} interleaved runs)\n")
    out = []
    for k, r in inf["rows"].items():
        if r["group"] in ("roofline", "currents"):
            continue
        lfl = "yes" if r.get("like_for_like") else "no"
        ratio = f"{r['ratio_to_ours']:.2f}" if "ratio_to_ours" in r else "-"
        same = f"{100 * r['identical_counts_vs_ours_g0']:.2f}" if "identical_counts_vs_ours_g0" in r else "-"
        out.append([k, f"{1000 * r['min_s']:.2f}", f"{r['samples_per_s']:,.0f}", f"{r['synops_per_s'] / 1e9:.2f}",
                    ratio, lfl, same])
    print(table(out, ["row", "ms / batch", "samples/s", "GSynOps/s", "x ours (g=0, same path)", "like-for-like",
                      "% counts = ours"]))
    for k, v in inf["compile"].items():
        if "error" in v:
            print(f"- {k}: torch.compile failed: {v['error']}")
        else:
            print(f"- {k}: compiled in {v.get('compile_s', float('nan')):.1f} s, {v.get('graphs', '?')} graph(s), "
                  f"{v.get('graph_breaks', '?')} graph break(s)" + (f": {v['break_reasons'][0]}" if v.get("break_reasons") else ""))
    for key, status in res["peer_status"].items():
        if status:
            print(f"- {key}: rows skipped ({status})")
    roof = an["rooflines"]
    print(f"\n### Rooflines (same run)\n\nGEMM peak {roof['gemm_peak_flops'] / 1e9:.1f} GFLOP/s "
          f"({inf['gemm_n']}^3 fp32); dense-currents-shape GEMM {roof['dense_shape_gemm_flops'] / 1e9:.1f} GFLOP/s; "
          f"gather (embedding_bag) {roof['gather_synops_per_s'] / 1e9:.2f} GSynOps/s = "
          f"{roof['gather_bytes_per_s'] / 1e9:.1f} GB/s of weight rows")
    for k, v in roof["fractions"].items():
        print(f"- {k}: {100 * v:.1f} %")
    print(f"\n### Training: batch {res['training']['batch']}, T = {res['training']['steps']}, "
          f"{res['training']['examples']} examples x {res['training']['passes']} pass(es)\n")
    out = []
    for k, r in res["training"]["rows"].items():
        if "examples_per_s" in r:
            ratio = f"{r['ratio_vs_bindsnet']:.1f}" if "ratio_vs_bindsnet" in r else "-"
            out.append([k, f"{r['inputs']} -> {r['neurons']}", f"{r['examples_per_s']:,.0f}", ratio])
        else:
            out.append([f"{k} ({r['status']})", "-", "-", "-"])
    print(table(out, ["row", "size", "examples/s", "x BindsNET (same rule family)"]))
    print("\n### Targets\n")
    for k, v in res["targets"].items():
        print(f"- {k}: {'met' if v else ('n/a' if v is None else 'NOT met')}")
    if an["peers_not_slower"]:
        print(f"  (peer rows at least as fast as ours: {', '.join(an['peers_not_slower'])})")


def main(argv=None):
    from harness import result_path  # benchmarks/harness.py
    from spikebridge.features import DEFAULT_CACHE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 training epoch, 3 repeats, few training examples (~2 min)")
    ap.add_argument("--dataset", default=str(DEFAULT_DATA), help="Imagenette folder (default: ../shared/datasets/imagenette)")
    ap.add_argument("--train", type=Path, default=None, help="cached train feature folder (instead of --dataset)")
    ap.add_argument("--val", type=Path, default=None, help="cached val feature folder")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for every row (default: torch's)")
    ap.add_argument("--batch", type=int, default=256, help="inference batch (default: 256)")
    ap.add_argument("--steps", type=int, default=32, help="time steps T (default: 32)")
    ap.add_argument("--neurons", type=int, default=None, help="fixed network size instead of the library defaults")
    ap.add_argument("--epochs", type=int, default=None, help="model training epochs (default: the library's; quick: 1)")
    ap.add_argument("--train-batch", type=int, default=16, help="examples per plasticity update, every rule (default: 16)")
    ap.add_argument("--train-examples", type=int, default=None, help="training examples timed per pass (quick 128, full 512)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default: 3 quick, 10 full)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the val batch and the model")
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default: benchmarks/results/speed.json; --quick: benchmarks/results/quick/speed.json)")
    args = ap.parse_args(argv)
    args.out = result_path("speed.json", args.quick, args.out)

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    machine = machine_info()
    cores = machine.get("cpus_usable") or os.cpu_count() or 1
    from spikebridge.report import cpu_busy_fraction

    # others' CPU use right now (the load average still counts a benchmark that just finished)
    busy_now = cpu_busy_fraction(2.0)
    busy = bool(busy_now > BUSY_FRACTION) if busy_now is not None else bool(load and load[0] > BUSY_LOAD_PER_CORE * cores)
    if busy:
        print(f"warning: the CPUs were {100 * (busy_now or 0):.0f} % busy before the start (load average "
              f"{load[0] if load else float('nan'):.1f} on {cores} usable cores): other processes compete "
              f"for the CPU and these timings are unreliable (run alone)", file=sys.stderr)
    repeats = args.repeats or (3 if args.quick else 10)
    epochs = args.epochs if args.epochs is not None else (1 if args.quick else None)
    n_train = args.train_examples or (128 if args.quick else 512)
    passes = 2 if args.quick else 3
    t_start = time.perf_counter()

    peers, status = {}, {}
    for key, module in (("snntorch", "snntorch"), ("norse", "norse.torch"), ("bindsnet", "bindsnet")):
        peers[key], status[key] = import_peer(module)
    versions = {"torch": torch.__version__, "snntorch": version_of("snntorch"), "norse": version_of("norse"),
                "bindsnet": version_of("bindsnet")}

    train_fs, val_fs, source = load_inputs(args)
    model, model_info = build_model(train_fs, args.neurons, epochs, args.steps, args.seed)
    idx = balanced_sample(val_fs.labels, args.batch, args.seed)
    spikes = model.spikes_for(val_fs.features[idx], args.steps)  # uint8 [T, B, N]
    T, B, N = spikes.shape
    density = spike_density(spikes)
    print(f"inputs: {source}; model: {model_info['kind']}, {model_info['recruited']} of {model_info['neurons']} neurons "
          f"recruited, {model_info['epochs']} epoch(s); val batch of {B} ({np.bincount(val_fs.labels[idx]).tolist()} per class), "
          f"T = {T}, {N} input channels, input spike density {100 * density:.2f} %, {threads} thread(s)", file=sys.stderr)

    inf = inference_benchmark(model, spikes, repeats, peers, gemm_n=2048)
    analysis = analyse_inference(inf, T, B, N)
    trn = training_benchmark(model, train_fs, n_train, args.train_batch, passes, peers["bindsnet"], status["bindsnet"])
    targets = dict(analysis["targets"])

    result = {
        "machine": machine,
        "config": {"threads": threads, "load_average_start": load, "cpu_busy_before_start": busy_now, "busy": busy, "quick": args.quick,
                   "repeats": repeats, "batch": B, "steps": T, "input_channels": N, "input_density": density,
                   "input_spikes_per_batch": inf["events"], "fan_out": inf["fan_out"],
                   "class_counts": np.bincount(val_fs.labels[idx]).tolist(), "seed": args.seed, "inputs": source,
                   "model": model_info, "auto_path": inf["auto_path"], "auto_crossover": inf["auto_crossover"],
                   "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                   "notes": ["spikebridge's LIF loop (neurons.lif_population) and its passes over the spikes run on one "
                             "intra-op thread by design; GEMM and gathers use the threads set here, as every peer op does",
                             "Norse LIFBoxCell and snnTorch Leaky have no lateral inhibition: they are compared with our "
                             "g = 0 run on the same currents path (like-for-like); our rows with inhibition are CoLaNET as shipped",
                             "Norse fires at v > theta and we at v >= theta; identical_counts_vs_ours_g0 measures the agreement"]},
        "versions": versions,
        "peer_status": status,
        "inference": inf,
        "analysis": analysis,
        "training": trn,
        "targets": targets,
        "seconds": time.perf_counter() - t_start,
    }
    print_report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwrote {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
