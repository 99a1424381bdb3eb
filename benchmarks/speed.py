"""Simulation and training speed: spikebridge vs snnTorch, Norse and BindsNET, and the dense bound.

    python benchmarks/speed.py --quick        # ~1-2 min: fewer repeats and training examples
    python benchmarks/speed.py                # full: more repeats, longer training runs, finer density sweep
    python benchmarks/speed.py --train /tmp/sbcache/0836150d6c3e318db6ad --val /tmp/sbcache/8e1c0e0c2ad83d3f022a

Everything runs in one process with the same number of intra-op threads (``--threads``,
default torch's), on the same inputs: Lite0 features of Imagenette (cached feature folders
with ``--train/--val``, otherwise extracted through spikebridge; ``--quick`` extracts a
per-class subset), rate-coded with spikebridge's coder (regular by default), so the
input spike density is the one real features give (~10 %).

1. **Inference**: one LIF layer, 1,280 inputs -> 640 neurons (CoLaNET with 10 classes x 64
   microcolumns, all recruited), batch 256, T = 32, on the uint8 spike tensor.
   * spikebridge ``CoLaNET.simulate``, ``CoLaNET.simulate`` with dense and event-driven currents;
   * snnTorch ``Leaky`` and Norse ``LIFCell``/``LIF`` after ``nn.Linear`` with the same
     weights, both as tutorials write them (a Linear call per step) and in their fastest
     form (one Linear over all T steps, then the neuron loop).
   * the bound: the dense matmul work a dense simulation cannot avoid, ``T x B`` input
     vectors times the ``N x J`` weights, as one GEMM and as T GEMMs of B rows (the faster
     counts), on pre-converted float spikes.
2. **Event-driven crossover**: currents of Bernoulli spikes at several densities, GEMM vs
   gathering the weight rows of the active inputs (``spikebridge.currents.spike_currents``).
3. **Training**: CoLaNET's local rule (continuous and spiking modes, the latter also with
   event-driven currents) vs BindsNET's ``PostPre`` STDP on a 1,280 -> 640 ``Connection`` into
   ``LIFNodes``, same training batch, same spike trains (BindsNET gets them pre-encoded).

Times are the minimum over interleaved repeats (the machine may be shared), speed-ups are
ratios of times measured in this run. Writes ``benchmarks/results/speed.json``.

Run it on an otherwise idle machine. With OpenMP's default (spinning) waits, every loop of
small tensor ops -- any step-by-step simulator -- runs 10-100x slower while other processes
compete for the cores (measured here: 6.3 s instead of 0.09 s per batch), which measures the
scheduler, not the code; the script warns when the load average says so. On a shared
machine, ``OMP_WAIT_POLICY=PASSIVE python benchmarks/speed.py`` limits the damage (but
charges every small parallel op a thread wake-up on an idle one). ``--threads 1`` gives the
single-thread comparison.
"""

from __future__ import annotations

import argparse
import os
import importlib
import importlib.metadata
import json
import math
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from spikebridge.colanet import CoLaNET, CoLaNETConfig
from spikebridge.currents import EVENT_DENSITY_CROSSOVER, spike_currents, spike_density
from spikebridge.learner import create_learner
from spikebridge.train import train

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "imagenette"
TARGETS = {"inference_vs_peers": 2.0, "training_vs_bindsnet": 20.0, "within_dense_bound": 2.0}


# ------------------------------------------------------------------------------ inputs
def subsample(ds, per_class: int):
    """The first ``per_class`` samples of every class of an ImageDataset (a new cache key)."""
    seen: dict[int, int] = {}
    keep = []
    for key, label in ds.samples:
        if seen.get(label, 0) < per_class:
            keep.append((key, label))
            seen[label] = seen.get(label, 0) + 1
    return replace(ds, samples=keep)


def load_inputs(args):
    from spikebridge.features import load_features

    if args.train and args.val:
        return load_features(args.train), load_features(args.val), "cached feature folders"
    from spikebridge.data import open_dataset
    from spikebridge.encoders import create_encoder
    from spikebridge.features import extract_features

    per_class = args.max_per_class if args.max_per_class else (60 if args.quick else None)
    splits = open_dataset(args.dataset, per_class)
    enc = create_encoder(device="cpu")
    val = splits.val if per_class is None else subsample(splits.val, max(1, -(-args.batch // len(splits.classes))))
    tr = extract_features(splits.train, enc, args.cache_dir)
    va = extract_features(val, enc, args.cache_dir)
    return tr, va, f"extracted from {args.dataset}" + (f" ({per_class} train images per class)" if per_class else "")


def build_model(train_fs, n_neurons: int, steps: int, seed: int = 0) -> CoLaNET:
    """CoLaNET with every microcolumn recruited: one continuous pass of the local rule, then
    the free microcolumns get prototypes of random training examples of their class."""
    classes = int(train_fs.labels.max()) + 1
    m = max(1, n_neurons // classes)
    model = CoLaNET(train_fs.features.shape[1], classes, CoLaNETConfig(microcolumns=m, steps=steps, seed=seed))
    model.fit_normaliser(train_fs.features)
    rates = model.rates(train_fs.features)
    y = torch.as_tensor(train_fs.labels)
    for b in range(0, len(rates), 64):
        model.learn(rates[b : b + 64], y[b : b + 64])
    gen = torch.Generator().manual_seed(seed)
    for j in (~model.active[0]).nonzero().flatten().tolist():
        pool = (y == int(model.column[j])).nonzero().flatten()
        pick = pool[torch.randint(len(pool), (1,), generator=gen)] if len(pool) else torch.randint(len(y), (1,), generator=gen)
        model.weights[0, j] = model.config.w_max * rates[int(pick)]
        model.active[0, j] = True
    model.calibrate(rates[:4096])
    return model


# ------------------------------------------------------------------------------ peers
def import_peer(module: str, pip_name: str, install: bool):
    """``(module, None)`` or ``(None, status)``; status carries the installer's error."""
    try:
        return importlib.import_module(module), None
    except Exception as exc:  # ImportError or a broken dependency
        import_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    cmd = [sys.executable, "-m", "pip", "install", *([] if install else ["--dry-run"]), pip_name]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        ok, err = proc.returncode == 0, (proc.stderr or proc.stdout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, err = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        lines = [line.strip() for line in err.splitlines() if line.strip()]
        first = next((line for line in lines if line.startswith("ERROR")), lines[-1] if lines else "unknown error")
        print(f"\n[{pip_name}] `{' '.join(cmd[2:])}` failed:\n" + "\n".join(lines[-15:]), file=sys.stderr)
        return None, f"not installable: {first}"
    if install:
        try:
            importlib.invalidate_caches()
            return importlib.import_module(module), None
        except Exception as exc:
            return None, f"not installable: installed but import fails: {type(exc).__name__}: {exc}".splitlines()[0]
    return None, f"not installed ({import_error}); `pip install {pip_name}` would work: rerun with --install-peers"


def version_of(mod) -> str:
    if mod is None:
        return "-"
    try:
        return importlib.metadata.version(mod.__name__.split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return getattr(mod, "__version__", "?")


# ------------------------------------------------------------------------------ timing
def run_interleaved(fns: dict, repeats: int, desc: str) -> dict:
    """Call every function once per round (warm-up round first), rounds interleaved; seconds."""
    times = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    with tqdm(total=repeats * len(fns), desc=desc, unit="run", leave=False) as bar:
        for _ in range(repeats):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
                bar.update()
    return {k: {"min_s": min(v), "median_s": float(np.median(v)), "runs": len(v)} for k, v in times.items()}


# ------------------------------------------------------------------------------ 1. inference
def inference_benchmark(model: CoLaNET, spikes: torch.Tensor, repeats: int, peers: dict) -> dict:
    T, B, N = spikes.shape
    K, J, _ = model.weights.shape
    cfg = model.config
    theta = float(model.threshold[0])
    w_eff = model.effective_weights()[0].contiguous()  # [J, N]
    w_t = w_eff.t().contiguous()
    x_float = spikes.to(torch.float32)
    out_one = torch.empty(T * B, J)
    out_steps = torch.empty(T, B, J)

    def bound_one_gemm():
        torch.mm(x_float.view(T * B, N), w_t, out=out_one)

    def bound_t_gemms():
        for t in range(T):
            torch.mm(x_float[t], w_t, out=out_steps[t])

    fns = {
        "bound: 1 GEMM (T*B rows)": bound_one_gemm,
        "bound: T GEMMs (B rows)": bound_t_gemms,
        "spikebridge CoLaNET.simulate": lambda: model.simulate(spikes),
        "spikebridge simulate, dense GEMM": lambda: model.simulate(spikes, method="dense"),
        "spikebridge simulate, event-driven": lambda: model.simulate(spikes, method="event"),
    }
    out_spikes = {}
    fc = torch.nn.Linear(N, J, bias=False)
    with torch.no_grad():
        fc.weight.copy_(w_eff)
    snn = peers.get("snntorch")
    if snn is not None:
        leaky = snn.Leaky(beta=cfg.beta, threshold=theta, reset_mechanism="subtract")

        def snntorch_per_step():
            mem = torch.zeros(B, J)
            x = spikes.to(torch.float32)
            out = []
            for t in range(T):
                spk, mem = leaky(fc(x[t]), mem)
                out.append(spk)
            return torch.stack(out)

        def snntorch_all_t():
            cur = fc(spikes.to(torch.float32))
            mem = torch.zeros(B, J)
            out = []
            for t in range(T):
                spk, mem = leaky(cur[t], mem)
                out.append(spk)
            return torch.stack(out)

        fns["snnTorch Leaky, Linear per step"] = snntorch_per_step
        fns["snnTorch Leaky, Linear over all T"] = snntorch_all_t
    norse = peers.get("norse")
    if norse is not None:
        p = norse.LIFParameters(tau_mem_inv=torch.tensor(1.0 / cfg.tau), v_th=torch.tensor(theta))
        cell = norse.LIFCell(p, dt=cfg.dt)
        seq = norse.LIF(p, dt=cfg.dt)

        def norse_per_step():
            state, out = None, []
            x = spikes.to(torch.float32)
            for t in range(T):
                z, state = cell(fc(x[t]), state)
                out.append(z)
            return torch.stack(out)

        def norse_all_t():
            z, _ = seq(fc(spikes.to(torch.float32)))
            return z

        fns["Norse LIFCell, Linear per step"] = norse_per_step
        fns["Norse LIF, Linear over all T"] = norse_all_t
    with torch.no_grad():
        for k, fn in fns.items():
            if not k.startswith("bound"):
                r = fn()
                counts = r.counts.sum() if hasattr(r, "counts") else r.sum()
                out_spikes[k] = float(counts) / B
        times = run_interleaved(fns, repeats, "inference")
    # the fast paths against the reference simulation
    ref, dense, event = model.simulate(spikes), model.simulate(spikes, method="dense"), model.simulate(spikes, method="event")
    check = {
        "dense_bit_identical": all(torch.equal(getattr(ref, a), getattr(dense, a)) for a in ("counts", "first_spike", "v_final")),
        "event_counts_identical_fraction": float((ref.counts == event.counts).float().mean()),
        "event_decisions_identical_fraction": float((model.column_decision(ref) == model.column_decision(event)).float().mean()),
    }
    return {"times": times, "output_spikes_per_sample": out_spikes, "fast_path_check": check}


# ------------------------------------------------------------------------------ 2. crossover
def crossover_benchmark(model: CoLaNET, T: int, B: int, densities, repeats: int) -> dict:
    weights = model.effective_weights()
    N = weights.shape[-1]
    gen = torch.Generator().manual_seed(1)
    rows = []
    for d in tqdm(densities, desc="event-driven vs dense, by density", leave=False):
        x = (torch.rand(T, B, N, generator=gen) < d).to(torch.uint8)
        t = run_interleaved({"dense": lambda: spike_currents(x, weights, "dense"),
                             "event": lambda: spike_currents(x, weights, "event")}, repeats, f"density {d:.2f}")
        rows.append({"density": float(spike_density(x)), "dense_s": t["dense"]["min_s"], "event_s": t["event"]["min_s"]})
    crossover = None
    for a, b in zip(rows, rows[1:]):
        ra, rb = a["event_s"] / a["dense_s"], b["event_s"] / b["dense_s"]
        if ra < 1 <= rb:  # log-linear interpolation of the time ratio
            f = math.log(ra) / (math.log(ra) - math.log(rb)) if ra != rb else 0.0
            crossover = a["density"] + f * (b["density"] - a["density"])
            break
    if crossover is None:
        crossover = f"> {rows[-1]['density']:.2f}" if rows[-1]["event_s"] < rows[-1]["dense_s"] else f"< {rows[0]['density']:.2f}"
    return {"rows": rows, "crossover_density": crossover}


# ------------------------------------------------------------------------------ 3. training
def bindsnet_trainer(bn, n_inputs: int, n_neurons: int, batch: int, steps: int):
    from bindsnet.learning import PostPre
    from bindsnet.network import Network
    from bindsnet.network.nodes import Input, LIFNodes
    from bindsnet.network.topology import Connection

    net = Network(dt=1.0, batch_size=batch)
    inp, out = Input(n=n_inputs, traces=True), LIFNodes(n=n_neurons, traces=True)
    net.add_layer(inp, name="X")
    net.add_layer(out, name="Y")
    gen = torch.Generator().manual_seed(0)
    conn = Connection(inp, out, w=0.3 * torch.rand(n_inputs, n_neurons, generator=gen) / math.sqrt(n_inputs),
                      update_rule=PostPre, nu=(1e-4, 1e-3), wmin=0.0, wmax=1.0)
    net.add_connection(conn, source="X", target="Y")
    spikes_out = []

    def step(spike_batch: torch.Tensor):  # [T, b, N] bool
        net.run(inputs={"X": spike_batch}, time=steps)
        spikes_out.append(float(out.s.float().mean()))
        net.reset_state_variables()

    return step, spikes_out


def training_benchmark(train_fs, n_neurons: int, steps: int, batch: int, n_ours: int, n_spiking: int, n_bn: int,
                       bn, bn_status) -> dict:
    classes = int(train_fs.labels.max()) + 1
    cfg = dict(microcolumns=max(1, n_neurons // classes))
    x, y = train_fs.features, train_fs.labels
    rows = {}

    def ours(mode: str, n: int, fast: bool = False):
        learner = create_learner("colanet", x.shape[1], classes, steps=steps, config=CoLaNETConfig(**cfg), learn_mode=mode)
        if fast:
            model = learner.model
            model.simulate = lambda s, record_raster=False: CoLaNET.simulate(model, s, record_raster, method="auto")
        epochs = max(1, -(-n // len(x)))  # small training sets: several epochs
        n = min(n, len(x))
        _, hist = train(learner, x[:n], y[:n], epochs=epochs, batch_size=batch, progress=True)
        return {"samples": n * epochs, "seconds": hist["train_seconds"], "samples_per_s": n * epochs / hist["train_seconds"]}

    jobs = [("spikebridge CoLaNET, continuous", lambda: ours("continuous", n_ours)),
            ("spikebridge CoLaNET, spiking (dense currents)", lambda: ours("spiking", n_spiking)),
            ("spikebridge CoLaNET, spiking (event-driven currents)", lambda: ours("spiking", n_spiking, fast=True))]
    for name, job in tqdm(jobs, desc="training (ours)", leave=False):
        rows[name] = job()
    name = f"BindsNET {version_of(bn)} PostPre STDP + LIFNodes"
    if bn is None:
        rows["BindsNET PostPre STDP + LIFNodes"] = {"status": bn_status}
        return rows
    step, out_rate = bindsnet_trainer(bn, x.shape[1], n_neurons, batch, steps)
    norm = CoLaNET(x.shape[1], classes, CoLaNETConfig(**cfg))
    norm.fit_normaliser(x)
    rates = norm.rates(x[:n_bn])
    spike_batches = [norm.spikes_for(x[b : b + batch], steps).bool() for b in range(0, n_bn, batch)]
    step(spike_batches[0])  # warm-up (allocations, batch-size set-up)
    t0 = time.perf_counter()
    for sb in tqdm(spike_batches, desc="training (BindsNET)", unit="batch", leave=False):
        step(sb)
    seconds = time.perf_counter() - t0
    rows[name] = {"samples": len(rates), "seconds": seconds, "samples_per_s": len(rates) / seconds,
                  "output_spike_rate": float(np.mean(out_rate))}
    return rows


# ------------------------------------------------------------------------------ report
def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main(argv=None):
    from spikebridge.features import DEFAULT_CACHE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and training examples: ~1-2 minutes")
    ap.add_argument("--dataset", default=str(DEFAULT_DATA), help="image folder to extract features from (default: Imagenette)")
    ap.add_argument("--train", type=Path, default=None, help="cached train feature folder (skips extraction)")
    ap.add_argument("--val", type=Path, default=None, help="cached val feature folder")
    ap.add_argument("--max-per-class", type=int, default=None, help="training images per class to extract (quick: 60)")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for every method (default: torch's)")
    ap.add_argument("--batch", type=int, default=256, help="inference batch (default: 256)")
    ap.add_argument("--steps", type=int, default=32, help="time steps T (default: 32)")
    ap.add_argument("--neurons", type=int, default=640, help="LIF neurons (default: 640 = 10 classes x 64 microcolumns)")
    ap.add_argument("--coder", default="regular", choices=["regular", "bernoulli"], help="rate coder of the inputs")
    ap.add_argument("--train-batch", type=int, default=16, help="examples per plasticity update, ours and BindsNET's (default: 16)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds per method (default: 3 quick, 10 full)")
    ap.add_argument("--install-peers", action="store_true", help="pip-install missing peers (default: only check installability)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    repeats = args.repeats or (3 if args.quick else 10)
    policy = os.environ.get("OMP_WAIT_POLICY", "default (active)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cores = os.cpu_count() or 1
    if load > 0.5 * cores:
        print(f"warning: load average {load:.1f} on {cores} cores before the run: other processes compete for the "
              f"CPU and timings are unreliable" + ("" if policy.upper() == "PASSIVE" else
              "; with OpenMP's spinning waits small-op loops slow down 10-100x (OMP_WAIT_POLICY=PASSIVE limits it)"),
              file=sys.stderr)
    t_start = time.perf_counter()

    peers, status = {}, {}
    for key, module, pip_name in (("snntorch", "snntorch", "snntorch"), ("norse", "norse.torch", "norse"),
                                  ("bindsnet", "bindsnet", "bindsnet")):
        peers[key], status[key] = import_peer(module, pip_name, args.install_peers)
    versions = {"torch": torch.__version__, "snntorch": version_of(peers["snntorch"]),
                "norse": version_of(peers["norse"]),
                "bindsnet": version_of(peers["bindsnet"])}

    train_fs, val_fs, source = load_inputs(args)
    model = build_model(train_fs, args.neurons, args.steps)
    K, J, N = model.weights.shape
    idx = np.arange(args.batch) % len(val_fs)
    model.config.coder = args.coder
    spikes = model.spikes_for(val_fs.features[idx], args.steps)
    density = spike_density(spikes)
    T, B = args.steps, args.batch
    print(f"\ninputs: {source}; {N} -> {J} neurons, batch {B}, T = {T}, {args.coder} coder, "
          f"input spike density {100 * density:.2f} %, {threads} thread(s), OMP_WAIT_POLICY {policy}, {cpu_name()}")

    # 1. inference
    inf = inference_benchmark(model, spikes, repeats, {k: peers[k] for k in ("snntorch", "norse")})
    tm = {k: v["min_s"] for k, v in inf["times"].items()}
    bound_key = min(("bound: 1 GEMM (T*B rows)", "bound: T GEMMs (B rows)"), key=tm.get)
    bound = tm[bound_key]
    ours_keys = ["spikebridge CoLaNET.simulate", "spikebridge simulate, dense GEMM", "spikebridge simulate, event-driven"]
    auto_key = ours_keys[2] if density < EVENT_DENSITY_CROSSOVER else ours_keys[1]
    best_ours = tm[auto_key]
    peer_keys = [k for k in tm if k.startswith(("snnTorch", "Norse"))]
    rows = []
    for k, s in tm.items():
        rows.append([k, f"{1000 * s:.1f}", f"{B / s:,.0f}", f"{s / bound:.2f}",
                     f"{s / best_ours:.2f}" if k in peer_keys else "-", f"{inf['output_spikes_per_sample'].get(k, float('nan')):.1f}"
                     if k in inf["output_spikes_per_sample"] else "-"])
    for key, name in (("snntorch", "snnTorch"), ("norse", "Norse")):
        if peers[key] is None:
            rows.append([f"{name} ({status[key]})", "-", "-", "-", "-", "-"])
    print(f"\n### Inference: {N} -> {J} LIF, batch {B}, T = {T} (min of {repeats} interleaved runs)\n")
    print(table(rows, ["method", "ms / batch", "samples/s", "x dense bound", f"our speed-up ({auto_key.split(', ')[-1]})", "out spikes/sample"]))
    speedups = {k: tm[k] / best_ours for k in peer_keys}
    print("\n(out spikes differ because the neurons do: ours has winner-take-all lateral inhibition, snnTorch's "
          "Leaky none, Norse's LIF filters the input through a synaptic current with gain dt/tau_mem)")
    print(f"fast paths vs CoLaNET.simulate: dense bit-identical = {inf['fast_path_check']['dense_bit_identical']}; "
          f"event-driven: identical spike counts {100 * inf['fast_path_check']['event_counts_identical_fraction']:.3f} %, "
          f"identical decisions {100 * inf['fast_path_check']['event_decisions_identical_fraction']:.2f} %")

    # 2. crossover
    densities = [0.02, 0.05, 0.1, 0.2, 0.4] if args.quick else [0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6]
    cross = crossover_benchmark(model, T, B, densities, max(2, repeats // 2))
    print(f"\n### Currents: event-driven vs dense GEMM by input density ({N} -> {J}, batch {B}, T = {T})\n")
    print(table([[f"{100 * r['density']:.1f} %", f"{1000 * r['dense_s']:.1f}", f"{1000 * r['event_s']:.1f}",
                  f"{r['dense_s'] / r['event_s']:.2f}", "event" if r["event_s"] < r["dense_s"] else "dense"] for r in cross["rows"]],
                ["input density", "dense ms", "event ms", "event speed-up", "faster"]))
    c = cross["crossover_density"]
    print(f"\nevent-driven wins below ~{100 * c:.0f} % input density" if isinstance(c, float) else f"\ncrossover density {c}")

    # 3. training
    n_ours, n_spiking, n_bn = (2048, 512, 128) if args.quick else (len(train_fs), 4096, 1024)
    n_bn = min(n_bn, len(train_fs))
    order = np.random.default_rng(0).permutation(len(train_fs))
    shuffled = replace(train_fs, features=train_fs.features[order], labels=train_fs.labels[order])
    trn = training_benchmark(shuffled, J, T, args.train_batch, n_ours, n_spiking, n_bn, peers["bindsnet"], status["bindsnet"])
    bn_key = next(k for k in trn if k.startswith("BindsNET"))
    bn_rate = trn[bn_key].get("samples_per_s")
    rows = []
    for k, r in trn.items():
        if "samples_per_s" in r:
            ratio = f"{r['samples_per_s'] / bn_rate:.1f}" if bn_rate and not k.startswith("BindsNET") else "-"
            rows.append([k, str(r["samples"]), f"{r['samples_per_s']:,.0f}", ratio])
        else:
            rows.append([f"{k} ({r['status']})", "-", "-", "-"])
    print(f"\n### Training throughput: {N} -> {J}, batch {args.train_batch}, T = {T}\n")
    print(table(rows, ["method", "samples", "samples/s", "x BindsNET"]))

    ratios = {k: r["samples_per_s"] / bn_rate for k, r in trn.items() if bn_rate and "samples_per_s" in r and not k.startswith("BindsNET")}
    targets = {
        "inference >= 2x every snnTorch/Norse variant": (min(speedups.values()) >= TARGETS["inference_vs_peers"]) if speedups else None,
        "training >= 20x BindsNET (continuous mode)": (ratios.get("spikebridge CoLaNET, continuous", 0) >= TARGETS["training_vs_bindsnet"]) if ratios else None,
        "ours within 2x of the dense bound": best_ours / bound <= TARGETS["within_dense_bound"],
    }
    print("\n### Targets\n")
    for k, v in targets.items():
        print(f"- {k}: {'met' if v else ('n/a' if v is None else 'NOT met')}")
    print(f"- ours ({auto_key}) / dense bound ({bound_key}) = {best_ours / bound:.2f}; "
          f"dense simulate / bound = {tm[ours_keys[1]] / bound:.2f}; CoLaNET.simulate / bound = {tm[ours_keys[0]] / bound:.2f}")

    result = {
        "config": {"n_inputs": N, "neurons": J, "batch": B, "steps": T, "coder": args.coder, "input_density": density,
                   "threads": threads, "omp_wait_policy": policy, "load_average_before": load, "cpu": cpu_name(), "train_batch": args.train_batch, "repeats": repeats,
                   "quick": args.quick, "inputs": source, "versions": versions, "peer_status": status},
        "inference": {**inf, "bound": {"method": bound_key, "seconds": bound}, "ours": auto_key,
                      "speedup_vs_peers": speedups, "ours_over_bound": best_ours / bound},
        "event_crossover": cross,
        "training": {"rows": trn, "ratio_vs_bindsnet": ratios},
        "targets": targets,
        "seconds": time.perf_counter() - t_start,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwrote {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
