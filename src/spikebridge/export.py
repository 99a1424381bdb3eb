r"""Neuromorphic deployment: NIR export/import, peer-simulator cross-checks, an int8 fixed-point model.

NIR graph of a trained CoLaNET (``export_nir``)
-----------------------------------------------
Only the inference path is exported; unrecruited microcolumns (``model.active == False``) are
silent and are dropped, so the graph holds ``J' = sum_k (recruited neurons of member k)``
neurons, members stacked one after the other (block-diagonal population)::

    input (N spikes) -> synapses (Affine: W - gamma, bias 0) -> winner_take_all -> output (J' spikes)
    winner_take_all = NIRGraph{ input -> lif (LIF, J') -> output;  lif -> lateral (Linear) -> lif }

``synapses`` holds the effective weights ``W[j, i] - gamma``: the feedforward inhibitory
interneuron relays every input spike with weight ``-gamma``, so it is folded into the weights.
``lateral`` is the winner-take-all gate, ``-g * theta`` between two different neurons of the
same member, 0 on the diagonal and between members; peers deliver it one step late (the
previous step's spikes), as our model does. The recurrent pair sits in a nested subgraph,
the layout snnTorch's own exporter writes for ``RLeaky``; ``layout="flat"`` puts the two
recurrent edges at the top level instead (equivalent; see the peer notes below). Node names
sort in execution order (``nir.read`` returns nodes alphabetically, and nirtorch 2.6's
interpreter fails on a sub-graph met before its input is computed).

Discrete-time parameters -> NIR's continuous-time LIF (``lif_to_nir`` / ``nir_to_lif``)
------------------------------------------------------------------------------------------
Our neuron (``neurons.py``): ``v[t] = beta v[t-1] + I[t]``, spike when ``v >= theta``,
``v -= theta`` (subtractive reset), ``beta = exp(-dt/tau)``. NIR's LIF is
``tau dv/dt = (v_leak - v) + r I`` with the graph's current ``I`` held for one step ``dt``::

    convention "euler" (default)   tau_nir = dt / (1 - beta)      (= 20.50 ms for dt = 1 ms, tau = 20 ms)
    convention "exact"             tau_nir = -dt / ln(beta)       (= our tau, 20 ms)
    both                           r = 1 / (1 - beta),  v_leak = 0,  v_threshold = theta,  v_reset = 0

Forward Euler of the NIR equation gives ``v += dt/tau_nir (r I - v)``, i.e. decay
``1 - dt/tau_nir`` and input gain ``r dt/tau_nir``; exact integration with the current held
over the step gives decay ``exp(-dt/tau_nir)`` and gain ``r (1 - decay)``. Either way the
choice above makes the decay ``beta`` and the gain 1, so the Affine weights are our
currents unchanged. "euler" is the default because both NIR importers checked here
(snnTorch, Norse) integrate that way, and Loihi's decay ``v (4096 - dv) / 4096`` has the same
form; "exact" suits simulators that decay by ``exp(-dt/tau)``. ``dt`` itself is not a NIR
field: it is in the sidecar. Two things NIR cannot say are in the sidecar too: our reset subtracts ``theta``
(NIR's LIF resets to ``v_reset``; ``v_reset = 0`` is written for readers that ignore the
sidecar) and spikes fire at ``v >= theta`` (snnTorch and Norse fire at ``v > theta``;
equality of float sums is rare, see the peer agreement).

Sidecar ``<file>.nir.json`` (plain JSON, ``format: "spikebridge-nir"``)
-------------------------------------------------------------------------
``time_step_s``, ``convention``, ``beta``, ``tau_s`` (our tau), ``reset``, ``threshold_rule``;
``neurons``: per exported neuron its ``member``, ``row`` (index in CoLaNET's ``J = C*M``) and
``column`` (class); ``readout``: the decision, computed outside the graph from the output
spikes (column spike counts summed over members, ties by the earliest first spike, then by
the highest final ``v/theta``; see :func:`readout_scores`); ``coder``: the feature -> rate map
(``source``, ``center``, ``gain`` per input channel), coder name, ``steps``, ``max_rate_hz``; ``plasticity``: the rule that
trained the weights (NIR has no plasticity primitive: the graph holds frozen weights);
``colanet_config`` and ``classes``. :func:`import_nir` reads both files back into a
:class:`~spikebridge.colanet.CoLaNET` whose predictions are bit-identical to the original:
the weights are the Affine rows (``gamma`` stays folded in, so the imported model has
``gamma = 0`` and is meant for inference; ``W`` = weight + sidecar ``gamma`` to float
rounding), ``theta`` the ``v_threshold``, ``g`` from the Linear, ``beta`` from ``tau``.

Peers (``peer_predictions``)
----------------------------
* **snnTorch 1.0** (``snntorch.import_nir.import_from_nir``) assumes ``dt = 1e-4 s``
  (``beta = 1 - 1e-4/tau``, gain ``r 1e-4/tau``), resets to zero, needs one threshold for the
  whole LIF node, and rewrites a *top-level* ``LIF <-> Linear`` cycle into a subgraph whose
  input enters the Linear (``LIF(W_rec (I + s[t-1]))``), which is not our model. Target
  ``"snntorch"`` therefore writes the nested layout with every time constant on the 0.1 ms
  time base (same per-step dynamics) and, for ensembles with different thresholds, divides
  each member's weights by its ``theta`` (threshold 1). The remaining difference is the
  reset to zero; :func:`reference_counts` with ``reset="zero"`` reproduces snnTorch's spikes
  exactly, and predictions agree with our subtractive-reset model (benchmarks/deploy.py).
* **Norse 1.1** (``norse.torch.from_nir``): its ``LIF`` import ignores ``r`` (logs a
  warning; inputs would be scaled by ``1 - beta``) and always resets to ``v_reset``. Target
  ``"norse"`` writes a ``CubaLIF`` with an instantaneous synapse (``tau_syn = dt``,
  ``w_in = 1``: one Euler step copies the input) and the same ``tau``/``r``, run with
  ``from_nir(graph, dt=dt, reset_method=reset_subtract)``: our dynamics, including the
  subtractive reset.

Fixed-point model (``Int8CoLaNET``, Loihi-style)
------------------------------------------------
* weights: ``W - gamma`` as signed 8-bit integers (-127..127) times ``2**e``, one
  power-of-two exponent ``e`` for the layer (round to nearest);
* threshold ``theta_q = round(theta / 2**e)`` and lateral weight ``g_q = round(g theta / 2**e)``:
  unsigned integers below ``2**23`` in the same units (24-bit registers);
* decay: 12-bit ``dv = round(4096 (1 - beta))``, ``v <- trunc(v (4096 - dv) / 4096)``
  (rounding toward zero, as Loihi's compartment update);
* per step ``v <- decay(v) + sum_i w_q[j,i] x_i[t] - g_q (spikes of the other neurons at t-1)``,
  saturated to 24-bit signed ``[-2**23, 2**23 - 1]``; spike when ``v >= theta_q``;
  ``v -= theta_q`` (``reset="zero"``: ``v = 0``, Loihi 1's fixed CUBA reset).
Synaptic sums fit int32 (``|sum| <= 127 N``) and are computed exactly (a float32 matrix product
is exact while ``127 N < 2**24``, float64 beyond); the state is simulated with int64 tensor
ops. Saved as safetensors (int8 weights, int32 parameters, int16 maps; host-side
normaliser float32) plus a JSON sidecar.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .coding import RateNormaliser, encode
from .colanet import NEG, CoLaNET, CoLaNETConfig
from .errors import SpikebridgeError

SIDECAR_FORMAT = "spikebridge-nir"
INT8_FORMAT = "spikebridge-int8"
from .export_cli import CONVENTIONS, TARGETS  # noqa: E402  (shared with the torch-free CLI)
SNNTORCH_DT = 1e-4  # snnTorch's NIR import hard-codes this time step
PEER_LOGGERS = ("nirtorch", "norse", "snntorch")  # quietened while peer_predictions runs a peer
DECAY_BITS = 12
MEMBRANE_BITS = 24
WEIGHT_BITS = 8

READOUT_RULE = ("prediction = argmax over classes c of: spike count of column c (all exported neurons whose "
                "'column' is c, summed over ensemble members); ties: earliest first spike of any neuron of "
                "the column (1-based step); then the highest final v/theta (max over the column within a "
                "member, averaged over members, as 0.5 + atan(.)/pi). Computed outside the NIR graph from its output spikes.")


def _nir():
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - nir is a dev dependency
        raise SpikebridgeError("NIR export needs the 'nir' package: pip install 'spikebridge[nir]'") from exc
    return nir


def sidecar_path(path) -> Path:
    return Path(f"{path}.json")


# --------------------------------------------------------------------------- parameter mapping
@dataclass(frozen=True)
class NIRLIF:
    """NIR ``LIF`` parameters of one neuron (seconds, volts in threshold units)."""

    tau: float
    r: float
    v_leak: float
    v_threshold: float
    v_reset: float = 0.0


def lif_to_nir(beta: float, threshold: float, dt: float, convention: str = "euler") -> NIRLIF:
    """Our discrete LIF (decay ``beta`` per step ``dt``, gain 1) -> NIR continuous-time LIF."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
    if not 0.0 < beta < 1.0 or dt <= 0:
        raise ValueError("need 0 < beta < 1 and dt > 0")
    tau = dt / (1.0 - beta) if convention == "euler" else -dt / math.log(beta)
    return NIRLIF(tau=tau, r=1.0 / (1.0 - beta), v_leak=0.0, v_threshold=float(threshold))


def nir_to_lif(tau: float, r: float, v_threshold: float, dt: float, convention: str = "euler",
               v_leak: float = 0.0) -> tuple[float, float, float]:
    """NIR LIF parameters -> ``(beta, input_gain, threshold)`` of the discrete neuron at step ``dt``."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
    if v_leak != 0.0:
        raise ValueError("v_leak != 0 (a constant drive) has no CoLaNET equivalent")
    if convention == "euler":
        beta, gain = 1.0 - dt / tau, r * dt / tau
    else:
        beta = math.exp(-dt / tau)
        gain = r * (1.0 - beta)
    return beta, gain, float(v_threshold)


# --------------------------------------------------------------------------- the deployable network
@dataclass
class Network:
    """The inference path of a CoLaNET with silent neurons dropped (members stacked)."""

    weights: torch.Tensor  # [J', N] float32, W - gamma
    threshold: torch.Tensor  # [K] float32
    lateral: torch.Tensor  # [K] float32, g * theta exactly as run_population computes it
    member: torch.Tensor  # [J'] int64
    row: torch.Tensor  # [J'] int64, index in the member's J = C * M neurons
    column: torch.Tensor  # [J'] int64
    beta: float
    n_classes: int

    @property
    def size(self) -> int:
        return len(self.member)

    def neuron_threshold(self) -> torch.Tensor:
        return self.threshold[self.member]

    def lateral_matrix(self) -> torch.Tensor:
        """``[J', J']``: ``-g theta_k`` between different neurons of member ``k``, else 0."""
        same = self.member.view(-1, 1) == self.member.view(1, -1)
        w = -self.lateral[self.member].view(-1, 1).expand(-1, self.size)
        return torch.where(same & ~torch.eye(self.size, dtype=torch.bool), w, torch.zeros(())).contiguous()


def network_of(model: CoLaNET) -> Network:
    if not isinstance(model, CoLaNET):
        raise SpikebridgeError(f"export supports CoLaNET models only, not {type(model).__name__}")
    if not bool(model.active.any()) or model.normaliser is None:
        raise SpikebridgeError("the model has no recruited neurons or no rate normaliser (train it first)")
    K, J, N = model.weights.shape
    member, row = model.active.nonzero(as_tuple=True)
    w = model.effective_weights()[member, row].to(torch.float32).contiguous()
    theta = model.threshold.to(torch.float32).contiguous()
    lateral = (model.config.lateral_inhibition * theta.view(K, 1, 1)).view(K)  # same op as run_population
    return Network(w, theta, lateral, member, row, model.column[row], model.config.beta, model.n_classes)


# --------------------------------------------------------------------------- NIR export
def _sidecar(model: CoLaNET, net: Network, dt: float, convention: str, target: str, layout: str,
             classes=None) -> dict:
    cfg = model.config
    norm = model.normaliser
    return {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "target": target,
        "layout": layout,
        "time_step_s": dt,
        "convention": convention,
        "beta": net.beta,
        "tau_s": cfg.tau * dt / cfg.dt,
        "reset": "subtract",
        "threshold_rule": "v >= v_threshold",
        "unit_threshold": False,
        "n_inputs": model.n_inputs,
        "n_classes": model.n_classes,
        "classes": list(classes) if classes else None,
        "members": cfg.ensemble,
        "thresholds": [float(t) for t in net.threshold],
        "lateral_inhibition": cfg.lateral_inhibition,
        "gamma": [float(g) for g in model.gamma],
        "neurons": [{"member": int(k), "row": int(r), "column": int(c)}
                    for k, r, c in zip(net.member, net.row, net.column)],
        "readout": {"rule": READOUT_RULE, "steps": cfg.steps},
        "coder": {"name": cfg.coder, "steps": cfg.steps, "max_rate_hz": 1.0 / cfg.dt, "dt_s": cfg.dt,
                  "normalise": "rate[c] = clip((feature[source[c]] - center[c]) * gain[c], 0, 1)",
                  "kind": norm.kind, "parameter": norm.parameter,
                  "source": [int(i) for i in norm.source], "center": [float(v) for v in norm.center],
                  "gain": [float(v) for v in norm.gain]},
        "plasticity": {
            "rule": "CoLaNET dopamine-modulated potentiation + anti-Hebbian depression (spikebridge.colanet)",
            "equations": "W[j+] += s*eta_plus*w_max*r; W[j-] -= s*eta_minus*w_max*r on error; "
                         "W <- clip(W, w_min, w_max); s = schedule_rate (linear annealing); "
                         "gamma = mean recruited weight; theta calibrated so the median winner fires first at "
                         "step first_spike_step",
            "eta_plus": cfg.eta_plus, "eta_minus": cfg.eta_minus, "margin": cfg.margin, "w_max": cfg.w_max,
            "w_min": cfg.w_min,
            "note": "NIR has no plasticity primitive: the graph holds the trained weights, frozen",
        },
        "colanet_config": asdict(cfg),
    }


def nir_graph(model: CoLaNET, *, target: str = "generic", convention: str = "euler", layout: str = "nested",
              classes=None):
    """``(nir.NIRGraph, sidecar dict)`` of ``model``'s inference path for ``target``."""
    nir = _nir()
    if target not in TARGETS:
        raise SpikebridgeError(f"unknown NIR target {target!r}; choose one of {TARGETS}")
    if layout not in ("nested", "flat"):
        raise SpikebridgeError(f"layout must be 'nested' or 'flat', not {layout!r}")
    if convention not in CONVENTIONS:
        raise SpikebridgeError(f"unknown convention {convention!r}; choose one of {CONVENTIONS}")
    if target != "generic" and convention != "euler":
        # both importers integrate with forward Euler; another mapping would change the dynamics
        raise SpikebridgeError(f"--target {target} needs --convention euler (its NIR import integrates with "
                               f"forward Euler); {convention!r} is only for --target generic")
    net = network_of(model)
    dt = SNNTORCH_DT if target == "snntorch" else model.config.dt
    side = _sidecar(model, net, dt, convention, target, layout, classes)
    w, lat, theta = net.weights, net.lateral_matrix(), net.neuron_threshold()
    if target == "snntorch" and len(torch.unique(net.threshold)) > 1:
        # snnTorch needs one threshold per LIF node: scale member k by 1/theta_k (same spikes)
        w, lat = w / theta.view(-1, 1), lat / theta.view(-1, 1)
        theta = torch.ones_like(theta)
        side["unit_threshold"] = True
    J, N = w.shape
    p = lif_to_nir(net.beta, 1.0, dt, convention)
    full = lambda value: np.full(J, value, dtype=np.float64)  # noqa: E731
    v_th = theta.numpy().astype(np.float32)
    if target == "norse":
        neuron = nir.CubaLIF(tau_syn=full(dt), tau_mem=full(p.tau), r=full(p.r), v_leak=full(0.0),
                             v_threshold=v_th, v_reset=np.zeros(J, np.float32), w_in=np.ones(J))
    else:
        neuron = nir.LIF(tau=full(p.tau), r=full(p.r), v_leak=full(0.0), v_threshold=v_th,
                         v_reset=np.zeros(J, np.float32))
    synapses = nir.Affine(weight=w.numpy().astype(np.float32), bias=np.zeros(J, np.float32))
    size_in, size_out = np.array([N]), np.array([J])
    nodes = {"input": nir.Input(input_type=size_in), "synapses": synapses}
    recurrent = model.config.lateral_inhibition != 0 and J > 1
    if not recurrent:
        nodes.update(lif=neuron, output=nir.Output(output_type=size_out))
        edges = [("input", "synapses"), ("synapses", "lif"), ("lif", "output")]
    elif layout == "flat":
        nodes.update(lif=neuron, lateral=nir.Linear(weight=lat.numpy().astype(np.float32)),
                     output=nir.Output(output_type=size_out))
        edges = [("input", "synapses"), ("synapses", "lif"), ("lif", "lateral"), ("lateral", "lif"), ("lif", "output")]
    else:
        population = nir.NIRGraph(
            nodes={"input": nir.Input(input_type=size_out), "lif": neuron,
                   "lateral": nir.Linear(weight=lat.numpy().astype(np.float32)),
                   "output": nir.Output(output_type=size_out)},
            edges=[("input", "lif"), ("lif", "lateral"), ("lateral", "lif"), ("lif", "output")])
        nodes.update(winner_take_all=population, output=nir.Output(output_type=size_out))
        edges = [("input", "synapses"), ("synapses", "winner_take_all"), ("winner_take_all", "output")]
    if not recurrent:
        side["layout"] = "feedforward"
    return nir.NIRGraph(nodes=nodes, edges=edges), side


def export_nir(model: CoLaNET, path, *, target: str = "generic", convention: str = "euler",
               layout: str = "nested", classes=None) -> dict:
    """Write ``path`` (NIR, HDF5) and ``path.json`` (sidecar); returns a summary."""
    nir = _nir()
    graph, side = nir_graph(model, target=target, convention=convention, layout=layout, classes=classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    sidecar_path(path).write_text(json.dumps(side, indent=1))
    return {"path": str(path), "sidecar": str(sidecar_path(path)), "neurons": len(side["neurons"]),
            "inputs": model.n_inputs, "nodes": sorted(graph.nodes), "bytes": path.stat().st_size,
            "sidecar_bytes": sidecar_path(path).stat().st_size}


# --------------------------------------------------------------------------- NIR import
def _flatten(graph, prefix: str = ""):
    """Nodes and edges of a (possibly nested) NIR graph with sub-graph inputs/outputs bypassed."""
    nir = _nir()
    nodes, edges, entry, exit_ = {}, [], {}, {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _flatten(node, full + ".")
            nodes.update(sub_nodes)
            edges += sub_edges
            entry[full] = full + "." + next(k for k, v in node.nodes.items() if isinstance(v, nir.Input))
            exit_[full] = full + "." + next(k for k, v in node.nodes.items() if isinstance(v, nir.Output))
        else:
            nodes[full] = node
    edges += [(exit_.get(prefix + a, prefix + a), entry.get(prefix + b, prefix + b)) for a, b in graph.edges]
    if prefix:
        return nodes, edges
    # bypass the inputs/outputs of sub-graphs
    inner = {n for n in nodes if "." in n and isinstance(nodes[n], (nir.Input, nir.Output))}
    while inner:
        n = inner.pop()
        srcs = [a for a, b in edges if b == n]
        dsts = [b for a, b in edges if a == n]
        edges = [e for e in edges if n not in e] + [(a, b) for a in srcs for b in dsts]
        del nodes[n]
    return nodes, edges


def _neuron_parameters(node, dt: float, convention: str):
    """(beta, gain [J], threshold [J]) of a LIF or instantaneous-synapse CubaLIF node."""
    nir = _nir()
    if isinstance(node, nir.LIF):
        tau, w_in = np.asarray(node.tau, np.float64), 1.0
    elif isinstance(node, nir.CubaLIF):
        if convention != "euler" or not np.allclose(node.tau_syn, dt, rtol=1e-9, atol=0):
            raise SpikebridgeError("CubaLIF with a synaptic time constant other than dt is not a CoLaNET neuron")
        tau, w_in = np.asarray(node.tau_mem, np.float64), np.asarray(node.w_in, np.float64)
    else:
        raise SpikebridgeError(f"unsupported neuron node {type(node).__name__} (expected LIF or CubaLIF)")
    if not np.all(np.asarray(node.v_leak) == 0):
        raise SpikebridgeError("v_leak != 0 (a constant drive) has no CoLaNET equivalent")
    r = np.asarray(node.r, np.float64) * w_in
    mapped = [nir_to_lif(float(t), float(rr), 1.0, dt, convention) for t, rr in zip(np.ravel(tau), np.ravel(r))]
    betas = np.array([m[0] for m in mapped])
    if np.ptp(betas) > 1e-12:
        raise SpikebridgeError("neurons with different time constants are not a CoLaNET population")
    gain = np.array([m[1] for m in mapped])
    return float(betas[0]), gain, np.asarray(node.v_threshold, np.float32).ravel()


def import_nir(path) -> CoLaNET:
    """Read ``path`` (+ ``path.json``) back into a :class:`CoLaNET` (inference; gamma folded)."""
    nir = _nir()
    path = Path(path)
    if not path.is_file():
        raise SpikebridgeError(f"NIR file not found: {path}")
    side_file = sidecar_path(path)
    if not side_file.is_file():
        raise SpikebridgeError(f"{side_file} (columns, coder and normaliser of the graph) is missing; "
                               "a bare NIR graph has no class readout")
    try:
        graph = nir.read(str(path))
        side = json.loads(side_file.read_text())
    except Exception as exc:
        raise SpikebridgeError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    if side.get("format") != SIDECAR_FORMAT:
        raise SpikebridgeError(f"{side_file} is not a spikebridge NIR sidecar")
    nodes, edges = _flatten(graph)
    kinds = {n: type(v).__name__ for n, v in nodes.items()}
    src = [n for n, k in kinds.items() if k == "Input"]
    neuron = [n for n, k in kinds.items() if k in ("LIF", "CubaLIF")]
    if len(src) != 1 or len(neuron) != 1:
        raise SpikebridgeError(f"unsupported NIR graph: expected one input and one LIF/CubaLIF node, found {kinds}")
    src, neuron = src[0], neuron[0]
    ff = [a for a, b in edges if b == neuron and (src, a) in edges]
    rec = [a for a, b in edges if b == neuron and (neuron, a) in edges]
    if len(ff) != 1 or len(rec) > 1 or kinds[ff[0]] not in ("Affine", "Linear"):
        raise SpikebridgeError("unsupported NIR graph: expected input -> Affine/Linear -> LIF (-> Linear -> LIF)")
    ff_node = nodes[ff[0]]
    if kinds[ff[0]] == "Affine" and np.any(np.asarray(ff_node.bias) != 0):
        raise SpikebridgeError("a non-zero Affine bias (a constant drive) has no CoLaNET equivalent")

    beta, gain, v_th = _neuron_parameters(nodes[neuron], side["time_step_s"], side["convention"])
    w = torch.from_numpy(np.asarray(ff_node.weight, np.float32).copy())
    lat = torch.from_numpy(np.asarray(nodes[rec[0]].weight, np.float32).copy()) if rec else None
    if np.any(np.abs(gain - 1.0) > 1e-9):  # fold NIR's r (input gain) into the weights
        g = torch.from_numpy(gain.astype(np.float32)).view(-1, 1)
        w = w * g
        lat = lat * g if lat is not None else None

    neurons = side["neurons"]
    if len(neurons) != w.shape[0]:
        raise SpikebridgeError(f"{side_file} lists {len(neurons)} neurons, the graph has {w.shape[0]}")
    member = torch.tensor([n["member"] for n in neurons])
    row = torch.tensor([n["row"] for n in neurons])
    cfg_values = dict(side["colanet_config"])
    K = int(member.max()) + 1
    theta = torch.zeros(K)
    for k in range(K):
        t = torch.from_numpy(v_th)[member == k]
        if len(torch.unique(t)) != 1:
            raise SpikebridgeError(f"member {k} has neurons with different thresholds")
        theta[k] = t[0]
    # lateral inhibition: -g theta between different neurons of a member, nothing else
    lateral = float(cfg_values.get("lateral_inhibition", 0.0))
    if lat is None:
        lateral = 0.0
    else:
        same = member.view(-1, 1) == member.view(1, -1)
        off = same & ~torch.eye(len(member), dtype=torch.bool)
        if torch.any(lat[~off] != 0):
            raise SpikebridgeError("recurrent weights other than uniform lateral inhibition are not supported")
        expected = (lateral * theta.view(K, 1, 1)).view(K)[member]
        if not torch.equal(lat, torch.where(off, -expected.view(-1, 1).expand_as(lat), torch.zeros(()))):
            ratios = (-lat[off] / theta[member].view(-1, 1).expand_as(lat)[off]).double()
            if (ratios.max() - ratios.min()) > 1e-6 * ratios.abs().max():
                raise SpikebridgeError("lateral inhibition differs between neurons; not a CoLaNET population")
            lateral = float(ratios.mean())
    cfg_values["lateral_inhibition"] = lateral
    cfg_values["ensemble"] = K
    cfg = CoLaNETConfig(**cfg_values)
    if abs(cfg.beta - beta) > 1e-12:  # the graph's time constant wins over the sidecar's config
        cfg.tau = -cfg.dt / math.log(beta)

    model = CoLaNET(int(side["n_inputs"]), int(side["n_classes"]), cfg)
    model.weights[member, row] = w
    model.active[member, row] = True
    model.gamma = torch.zeros(K)
    model.threshold = theta
    coder = side["coder"]
    if "source" in coder:
        model.normaliser = RateNormaliser(torch.tensor(coder["source"], dtype=torch.int64),
                                          torch.tensor(coder["center"], dtype=torch.float32),
                                          torch.tensor(coder["gain"], dtype=torch.float32), coder["kind"], coder["parameter"])
    else:  # sidecars written before ON/OFF coding
        model.normaliser = RateNormaliser.from_scale(torch.tensor(coder["scale"], dtype=torch.float32), coder["percentile"])
    return model


# --------------------------------------------------------------------------- readout outside the graph
def readout_scores(counts: torch.Tensor, first: torch.Tensor, net: Network, steps: int,
                   v: torch.Tensor | None = None) -> torch.Tensor:
    """Column scores ``[B, C]`` from per-neuron ``counts``, 1-based ``first`` spike steps
    (``steps + 1`` if none) and optionally final ``v`` (same units as ``threshold``) of the
    exported neurons: the rule of :meth:`CoLaNET.column_scores`."""
    B, C, K = counts.shape[0], net.n_classes, len(net.threshold)
    T = float(steps)
    col = net.column.view(1, -1).expand(B, -1)
    n = torch.zeros(B, C, dtype=torch.float64).index_add_(1, net.column, counts.double())
    t1 = torch.full((B, C), T + 1, dtype=torch.float64).scatter_reduce(1, col, first.double(), "amin")
    score = n * (T + 2) + (T + 1 - t1)
    if v is not None:
        theta = net.threshold.double()
        vt = torch.zeros(B, C, dtype=torch.float64)
        for k in range(K):
            sel = net.member == k
            best = torch.full((B, C), NEG / float(theta[k]), dtype=torch.float64)
            best = best.scatter_reduce(1, col[:, sel], v[:, sel].double() / theta[k], "amax")
            vt += best / K
        score = score + (0.5 + torch.atan(vt) / math.pi) * 0.999
    return score


def _first_spike(spikes: torch.Tensor) -> torch.Tensor:
    """``[T, B, J]`` spikes -> 1-based step of the first spike, ``T + 1`` if none."""
    T = spikes.shape[0]
    steps = torch.arange(1, T + 1, dtype=torch.float64).view(-1, 1, 1)
    return torch.where(spikes > 0, steps, torch.full_like(steps, T + 1.0)).amin(0)


@torch.no_grad()
def reference_counts(model: CoLaNET, input_spikes: torch.Tensor, reset: str = "subtract", strict: bool = False):
    """Our float population on the exported network with a chosen reset (``"subtract"`` or
    ``"zero"``) and threshold test (``strict``: ``v > theta``), for comparing with peers:
    returns the output spikes ``[T, B, J']``."""
    net = network_of(model)
    x = input_spikes.to(torch.float32)
    T, B, N = x.shape
    cur = (x.reshape(T * B, N) @ net.weights.T).view(T, B, -1)
    theta = net.neuron_threshold()
    lat = net.lateral_matrix()
    v = torch.zeros(B, net.size)
    prev = torch.zeros(B, net.size)
    out = torch.zeros(T, B, net.size)
    for t in range(T):
        v = net.beta * v + cur[t] + prev @ lat.T
        s = (v > theta) if strict else (v >= theta)
        sf = s.to(v.dtype)
        v = v - theta * sf if reset == "subtract" else v * (1 - sf)
        out[t] = prev = sf
    return out


# --------------------------------------------------------------------------- peer simulators
def _load_peer(graph_path: Path, peer: str, dt: float):
    if peer == "snntorch":
        from snntorch.import_nir import import_from_nir

        nir = _nir()
        with contextlib.redirect_stdout(io.StringIO()):  # it prints progress and warnings
            return import_from_nir(nir.read(str(graph_path)))
    if peer == "norse":
        import norse.torch as norse
        from norse.torch.functional.reset import reset_subtract

        return norse.from_nir(str(graph_path), dt=dt, reset_method=reset_subtract)
    raise SpikebridgeError(f"unknown peer {peer!r}; choose 'snntorch' or 'norse'")


def _peer_membrane(module, state, peer: str):
    """The peer's final membrane potential of the exported LIF neurons (for the last tie-break):
    snnTorch keeps it in its ``Leaky`` neuron (``.mem``), Norse in the LIF part of the state."""
    if peer == "snntorch":
        for m in module.modules():
            if type(m).__name__ in ("Leaky", "Synaptic", "RLeaky") and isinstance(getattr(m, "mem", None), torch.Tensor):
                return m.mem.detach().to(torch.float32)
        return None
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState

    stack = [state]
    while stack:
        o = stack.pop()
        if isinstance(o, LIFBoxFeedForwardState):
            return o.v.detach().to(torch.float32)
        if isinstance(getattr(o, "state", None), dict):
            stack += list(o.state.values())
        elif isinstance(o, (tuple, list)):
            stack += list(o)
    return None


def _reset_peer(module) -> None:
    for m in module.modules():  # snnTorch neurons with init_hidden keep their membrane inside
        if hasattr(m, "reset_mem") and callable(m.reset_mem):
            m.reset_mem()


@torch.no_grad()
def peer_predictions(model: CoLaNET, features, peer: str, *, steps: int | None = None, batch_size: int = 512,
                     workdir=None) -> dict:
    """Export ``model`` for ``peer`` (``"snntorch"`` or ``"norse"``), load the file with the
    peer's NIR import, feed it the same input spikes as ours and decide from its output spikes.

    The decision is :func:`readout_scores` on the peer's output spikes, with the final
    membrane potential read from the peer's state for the last tie-break (two columns with
    equal counts and simultaneous first spikes: about 1 example in 200 on Imagenette).

    Returns ``predictions`` (peer), ``ours`` (our model's predictions), ``agreement``,
    ``spikes`` ([B, J'] peer spike counts) and ``reference_spike_match``: the fraction of
    per-neuron spike counts equal to :func:`reference_counts` run with the peer's own reset
    and threshold test (1.0 means the peer simulates exactly the exported dynamics).
    """
    steps = steps or model.config.steps
    features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    net = network_of(model)
    reset = "zero" if peer == "snntorch" else "subtract"
    # only the peers' own loggers are quietened, and only while they run (the rest of the
    # process keeps its logging); their notes on the imported graph are the ones documented above
    quiet = {name: logging.getLogger(name).level for name in PEER_LOGGERS}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in quiet:
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            path = Path(tmp) / f"model-{peer}.nir"
            export_nir(model, path, target=peer)
            dt = json.loads(sidecar_path(path).read_text())["time_step_s"]
            module = _load_peer(path, peer, dt)
            preds, ours, counts, match = [], [], [], 0.0
            for b in range(0, len(features), batch_size):
                spikes = model.spikes_for(features[b : b + batch_size], steps)
                x = spikes.to(torch.float32)
                _reset_peer(module)
                state, out = None, []
                for t in range(steps):
                    s, state = module(x[t], state)
                    out.append(s.detach().to(torch.float32))
                out = torch.stack(out)
                c = out.sum(0)
                v = _peer_membrane(module, state, peer)
                preds.append(readout_scores(c, _first_spike(out), net, steps, v).argmax(1))
                ours.append(model.column_decision(model.simulate(spikes)))
                ref = reference_counts(model, spikes, reset=reset, strict=True).sum(0)
                match += float((ref == c).sum())
                counts.append(c)
        finally:
            for name, level in quiet.items():
                logging.getLogger(name).setLevel(level)
    preds, ours, counts = torch.cat(preds), torch.cat(ours), torch.cat(counts)
    return {"peer": peer, "predictions": preds, "ours": ours, "agreement": float((preds == ours).double().mean()),
            "spikes": counts, "reference_spike_match": match / max(1, counts.numel()), "peer_reset": reset}


# --------------------------------------------------------------------------- int8 fixed point
@dataclass
class IntRecord:
    counts: torch.Tensor  # [B, J'] int64
    first_spike: torch.Tensor  # [B, J'] int64, 1-based, T + 1 if none
    v_final: torch.Tensor  # [B, J'] int64
    steps: int


@dataclass
class Int8CoLaNET:
    """Integer CoLaNET (see the module docstring for the arithmetic and bit widths)."""

    weights: torch.Tensor  # [J', N] int8
    exponent: int  # weight LSB = 2**exponent
    threshold: torch.Tensor  # [K] int32
    lateral: torch.Tensor  # [K] int32
    decay_dv: int  # 12-bit: v <- trunc(v * (4096 - dv) / 4096)
    member: torch.Tensor  # [J'] int64
    row: torch.Tensor  # [J'] int64
    column: torch.Tensor  # [J'] int64
    n_classes: int
    normaliser: RateNormaliser  # host-side feature -> rate map
    steps: int = 32
    coder: str = "regular"
    dt: float = 1e-3
    reset: str = "subtract"

    V_MIN, V_MAX = -(1 << (MEMBRANE_BITS - 1)), (1 << (MEMBRANE_BITS - 1)) - 1

    @classmethod
    def quantise(cls, model: CoLaNET, reset: str = "subtract") -> "Int8CoLaNET":
        net = network_of(model)
        wmax = float(net.weights.abs().max())
        e = math.ceil(math.log2(wmax / 127.0)) if wmax > 0 else 0
        while True:  # thresholds and lateral weights must fit the 24-bit registers
            theta = torch.round(net.threshold.double() / 2.0**e)
            lateral = torch.round(net.lateral.double() / 2.0**e)
            if max(float(theta.max()), float(lateral.max())) <= cls.V_MAX:
                break
            e += 1
        wq = torch.round(net.weights.double() / 2.0**e).clamp(-127, 127).to(torch.int8)
        dv = int(min(1 << DECAY_BITS, max(0, round((1 << DECAY_BITS) * (1.0 - net.beta)))))
        cfg = model.config
        return cls(wq, e, theta.clamp_min(1).to(torch.int32), lateral.to(torch.int32), dv, net.member, net.row,
                   net.column, model.n_classes, model.normaliser, cfg.steps, cfg.coder, cfg.dt, reset)

    # -- network view for the readout
    def network(self) -> Network:
        w = self.weights.to(torch.float32) * 2.0**self.exponent
        return Network(w, self.threshold.to(torch.float32), self.lateral.to(torch.float32), self.member, self.row,
                       self.column, (4096 - self.decay_dv) / 4096, self.n_classes)

    def feedforward(self, input_spikes: torch.Tensor) -> torch.Tensor:
        """Exact integer synaptic sums ``[T, B, J']`` (int64) of binary input spikes."""
        T, B, N = input_spikes.shape
        # every partial sum is an integer below N * 127; float32 holds those exactly below 2**24
        dtype = torch.float32 if N * 127 < (1 << 24) else torch.float64
        x = input_spikes.reshape(T * B, N).to(dtype)
        return (x @ self.weights.to(dtype).T).round().to(torch.int64).view(T, B, -1)

    @torch.no_grad()
    def simulate(self, input_spikes: torch.Tensor) -> IntRecord:
        T, B, _ = input_spikes.shape
        J = self.weights.shape[0]
        cur = self.feedforward(input_spikes)
        theta = self.threshold.to(torch.int64)[self.member]
        lateral = self.lateral.to(torch.int64)[self.member]
        K = len(self.threshold)
        onehot = torch.nn.functional.one_hot(self.member, K).to(torch.int64)  # [J', K]
        keep = (1 << DECAY_BITS) - self.decay_dv
        v = torch.zeros(B, J, dtype=torch.int64)
        prev = torch.zeros(B, J, dtype=torch.int64)
        counts = torch.zeros(B, J, dtype=torch.int64)
        first = torch.full((B, J), T + 1, dtype=torch.int64)
        for t in range(T):
            others = (prev @ onehot) @ onehot.T - prev  # spikes of the other neurons of the same member
            v = torch.div(v * keep, 1 << DECAY_BITS, rounding_mode="trunc") + cur[t] - lateral * others
            v = v.clamp(self.V_MIN, self.V_MAX)
            s = v >= theta
            v = v - theta * s if self.reset == "subtract" else v.masked_fill(s, 0)
            counts += s
            first = torch.where(s & (first > T), torch.full_like(first, t + 1), first)
            prev = s.to(torch.int64)
        return IntRecord(counts, first, v, T)

    def rates(self, features) -> torch.Tensor:
        return self.normaliser(features)

    def spikes_for(self, features, steps: int | None = None, seed: int = 0) -> torch.Tensor:
        return encode(self.rates(features), steps or self.steps, self.coder, seed=seed, dt=self.dt,
                      max_rate=1.0 / self.dt)

    def scores(self, record: IntRecord) -> torch.Tensor:
        return readout_scores(record.counts, record.first_spike, self.network(), record.steps,
                              record.v_final.to(torch.float64))

    @torch.no_grad()
    def predict(self, features, steps: int | None = None, batch_size: int = 1024, seed: int = 0) -> torch.Tensor:
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        out = []
        for b in range(0, len(features), batch_size):
            rec = self.simulate(self.spikes_for(features[b : b + batch_size], steps, seed=seed + b))
            out.append(self.scores(rec).argmax(1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)

    # -- persistence
    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights.contiguous(), "threshold": self.threshold, "lateral": self.lateral,
                "member": self.member.to(torch.int16), "row": self.row.to(torch.int16),
                "column": self.column.to(torch.int16), **self.normaliser.tensors()}

    def network_bytes(self) -> int:
        """On-chip payload: int8 weights, 24-bit thresholds and lateral weights (stored in 4 bytes),
        the 12-bit decay and the exponent (2 bytes each), one int16 class column per neuron."""
        return (self.weights.numel() + 4 * (self.threshold.numel() + self.lateral.numel()) + 2 + 2
                + 2 * self.column.numel())

    def metadata(self) -> dict:
        return {"format": INT8_FORMAT, "version": 1, "exponent": self.exponent, "decay_dv": self.decay_dv,
                "n_classes": self.n_classes, "n_inputs": int(self.weights.shape[1]), "normaliser": self.normaliser.metadata(),
                "steps": self.steps, "coder": self.coder, "dt_s": self.dt, "reset": self.reset,
                "bit_widths": {"weight": WEIGHT_BITS, "membrane": MEMBRANE_BITS, "threshold": MEMBRANE_BITS,
                               "lateral": MEMBRANE_BITS, "decay": DECAY_BITS, "synaptic_sum": 32},
                "dynamics": "v <- trunc(v*(4096-dv)/4096) + sum_i w_q[j,i] x_i[t] - lateral_q * (other spikes at t-1); "
                            "v <- clamp(v, -2**23, 2**23-1); s = v >= threshold_q; "
                            + ("v -= threshold_q * s" if self.reset == "subtract" else "v = 0 where s"),
                "weight_value": "w_q * 2**exponent (float units of the CoLaNET current)",
                "readout": READOUT_RULE}

    def save(self, path) -> dict:
        from .checkpoints import save_tensors

        path = Path(path)
        meta = self.metadata()
        save_tensors(path, self.tensors(), meta)
        summary = {**meta, "file_bytes": path.stat().st_size, "network_bytes": self.network_bytes(),
                   "float32_weight_bytes": 4 * self.weights.numel()}
        sidecar_path(path).write_text(json.dumps(summary, indent=1))
        return summary

    @classmethod
    def load(cls, path) -> "Int8CoLaNET":
        from .checkpoints import load_tensors

        t, meta = load_tensors(path)
        if meta.get("format") != INT8_FORMAT:
            raise SpikebridgeError(f"{path} is not a spikebridge int8 model")
        return cls(t["weights"], int(meta["exponent"]), t["threshold"], t["lateral"], int(meta["decay_dv"]),
                   t["member"].long(), t["row"].long(), t["column"].long(), int(meta["n_classes"]),
                   RateNormaliser.from_tensors(t, meta.get("normaliser") or meta), int(meta["steps"]), meta["coder"],
                   float(meta["dt_s"]), meta["reset"])


def quantise(model: CoLaNET, reset: str = "subtract") -> Int8CoLaNET:
    return Int8CoLaNET.quantise(model, reset)
