r"""NIR export of a trained CoLaNET, with a typed, versioned JSON sidecar (read back by
`nir_import`; the LIF parameter mapping is [`nir_lif`][spikebridge.deploy.nir_lif]).

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
the highest final ``v/theta``; see [`column_scores()`][spikebridge.readout.column_scores]); ``coder``: the feature -> rate map
(``source``, ``center``, ``gain`` per input channel), coder name, ``steps``, ``max_rate_hz``; ``plasticity``: the rule that
trained the weights (NIR has no plasticity primitive: the graph holds frozen weights);
``colanet_config`` and ``classes``. [`import_nir()`][spikebridge.deploy.nir_import.import_nir] reads both files back into a
[`CoLaNET`][spikebridge.colanet.CoLaNET] whose predictions are bit-identical to the original:
the weights are the Affine rows (``gamma`` stays folded in, so the imported model has
``gamma = 0`` and is meant for inference; ``W`` = weight + sidecar ``gamma`` to float
rounding), ``theta`` the ``v_threshold``, ``g`` from the Linear, ``beta`` from ``tau``.

`peer_agreement` runs the graphs below in snnTorch and Norse.

Peer targets
------------
* **snnTorch 1.0** (``snntorch.import_nir.import_from_nir``) assumes ``dt = 1e-4 s``
  (``beta = 1 - 1e-4/tau``, gain ``r 1e-4/tau``), resets to zero, needs one threshold for the
  whole LIF node, and rewrites a *top-level* ``LIF <-> Linear`` cycle into a subgraph whose
  input enters the Linear (``LIF(W_rec (I + s[t-1]))``), which is not our model. Target
  ``"snntorch"`` therefore writes the nested layout with every time constant on the 0.1 ms
  time base (same per-step dynamics) and, for ensembles with different thresholds, divides
  each member's weights by its ``theta`` (threshold 1). The remaining difference is the
  reset to zero; `reference_counts()` with ``reset="zero"``
  reproduces snnTorch's spikes exactly, and predictions agree with our subtractive-reset model (benchmarks/deploy.py).
* **Norse 1.1** (``norse.torch.from_nir``): its ``LIF`` import ignores ``r`` (logs a
  warning; inputs would be scaled by ``1 - beta``) and always resets to ``v_reset``. Target
  ``"norse"`` writes a ``CubaLIF`` with an instantaneous synapse (``tau_syn = dt``,
  ``w_in = 1``: one Euler step copies the input) and the same ``tau``/``r``, run with
  ``from_nir(graph, dt=dt, reset_method=reset_subtract)``: our dynamics, including the
  subtractive reset.
"""


from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..colanet import CoLaNET
from ..errors import SpikebridgeError
from ..readout import READOUT_RULE
from .formats import CONVENTIONS, SIDECAR_FORMAT, SIDECAR_VERSION, SNNTORCH_DT, TARGETS, sidecar_path
from .network import Network, network_of
from .nir_lif import lif_to_nir
from .sidecar import VersionedSidecar


def require_nir():
    """The ``nir`` package, or a one-line error saying how to install it."""
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - nir is a dev dependency
        raise SpikebridgeError("NIR export needs the 'nir' package: pip install 'spikebridge[nir]'") from exc
    return nir


# --------------------------------------------------------------------------- the sidecar
@dataclass
class NIRSidecar(VersionedSidecar):
    """What NIR has no field for, written beside the graph as ``<file>.json`` (see the module
    docstring); read and checked as every [`VersionedSidecar`][spikebridge.deploy.sidecar.VersionedSidecar]."""

    KIND = "NIR sidecar"

    time_step_s: float
    convention: str
    beta: float
    tau_s: float
    n_inputs: int
    n_classes: int
    members: int
    thresholds: list
    lateral_inhibition: float
    gamma: list
    neurons: list  # per exported neuron: {"member", "row", "column"}
    coder: dict
    colanet_config: dict
    target: str = "generic"
    layout: str = "nested"
    reset: str = "subtract"
    threshold_rule: str = "v >= v_threshold"
    unit_threshold: bool = False
    classes: list | None = None
    readout: dict = field(default_factory=dict)
    plasticity: dict = field(default_factory=dict)
    format: str = SIDECAR_FORMAT
    version: int = SIDECAR_VERSION


# --------------------------------------------------------------------------- NIR export
def _sidecar(model: CoLaNET, net: Network, dt: float, convention: str, target: str, layout: str,
             classes=None) -> NIRSidecar:
    cfg = model.config
    norm = model.normaliser
    return NIRSidecar(**{
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
    })


def nir_graph(model: CoLaNET, *, target: str = "generic", convention: str = "euler", layout: str = "nested",
              classes=None):
    """``(nir.NIRGraph, NIRSidecar)`` of ``model``'s inference path for ``target``."""
    nir = require_nir()
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
        side.unit_threshold = True
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
        side.layout = "feedforward"
    return nir.NIRGraph(nodes=nodes, edges=edges), side


def export_nir(model: CoLaNET, path, *, target: str = "generic", convention: str = "euler",
               layout: str = "nested", classes=None) -> dict:
    """Write ``path`` (NIR, HDF5) and ``path.json`` (sidecar); returns a summary."""
    nir = require_nir()
    graph, side = nir_graph(model, target=target, convention=convention, layout=layout, classes=classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    side.write(sidecar_path(path))
    return {"path": str(path), "sidecar": str(sidecar_path(path)), "neurons": len(side.neurons),
            "inputs": model.n_inputs, "nodes": sorted(graph.nodes), "bytes": path.stat().st_size,
            "sidecar_bytes": sidecar_path(path).stat().st_size}
