"""NIR import: a graph written by [`export_nir()`][spikebridge.deploy.nir.export_nir] (or laid out as one) and
its sidecar read back into a [`CoLaNET`][spikebridge.colanet.CoLaNET] ([`import_nir()`][spikebridge.deploy.nir_import.import_nir])."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..coding import RateNormaliser
from ..colanet import CoLaNET, CoLaNETConfig
from ..errors import SpikebridgeError
from .nir import NIRSidecar, require_nir
from .nir_lif import nir_to_lif
from .sidecar import model_and_sidecar


def _flatten(graph, prefix: str = ""):
    """Nodes and edges of a (possibly nested) NIR graph with sub-graph inputs/outputs bypassed."""
    nir = require_nir()
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
    nir = require_nir()
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
    """Read ``path`` (+ ``path.json``) back into a `CoLaNET` (inference; gamma folded)."""
    nir = require_nir()
    path, side_file = model_and_sidecar(path, "NIR file", "columns, coder and normaliser of the graph",
                                        "a bare NIR graph has no class readout")
    try:
        graph = nir.read(str(path))
    except Exception as exc:
        raise SpikebridgeError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    side = NIRSidecar.read(side_file)
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

    beta, gain, v_th = _neuron_parameters(nodes[neuron], side.time_step_s, side.convention)
    w = torch.from_numpy(np.asarray(ff_node.weight, np.float32).copy())
    lat = torch.from_numpy(np.asarray(nodes[rec[0]].weight, np.float32).copy()) if rec else None
    if np.any(np.abs(gain - 1.0) > 1e-9):  # fold NIR's r (input gain) into the weights
        g = torch.from_numpy(gain.astype(np.float32)).view(-1, 1)
        w = w * g
        lat = lat * g if lat is not None else None

    neurons = side.neurons
    if len(neurons) != w.shape[0]:
        raise SpikebridgeError(f"{side_file} lists {len(neurons)} neurons, the graph has {w.shape[0]}")
    member = torch.tensor([n["member"] for n in neurons])
    row = torch.tensor([n["row"] for n in neurons])
    cfg_values = dict(side.colanet_config)
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

    model = CoLaNET(int(side.n_inputs), int(side.n_classes), cfg)
    model.weights[member, row] = w
    model.active[member, row] = True
    model.gamma = torch.zeros(K)
    model.threshold = theta
    coder = side.coder
    model.normaliser = RateNormaliser(torch.tensor(coder["source"], dtype=torch.int64),
                                      torch.tensor(coder["center"], dtype=torch.float32),
                                      torch.tensor(coder["gain"], dtype=torch.float32), coder["kind"], coder["parameter"])
    return model
