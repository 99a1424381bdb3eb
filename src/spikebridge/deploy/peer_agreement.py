"""snnTorch / Norse agreement: run an exported CoLaNET in a peer simulator.

`peer_predictions()` exports a model for ``"snntorch"`` or ``"norse"`` (see
[`nir`][spikebridge.deploy.nir] for what each target writes), loads the file with the peer's own
NIR import, feeds it the same input spikes as ours and decides from its output spikes with the
library's readout. `reference_counts()` runs our population loop with the peer's reset and
threshold test, so a spike-count match of 1.0 means the peer simulates exactly the exported
dynamics. Used by ``benchmarks/deploy.py`` and ``examples/nir_export.py``; needs the 'peers'
extra (``pip install 'spikebridge[peers]'``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..currents import spike_currents
from ..neurons import PopulationParameters, lif_population
from .formats import sidecar_path
from .network import first_spike_steps, network_of, readout_scores
from .nir import export_nir

PEER_LOGGERS = ("nirtorch", "norse", "snntorch")  # quietened while peer_predictions runs a peer


@torch.no_grad()
def reference_counts(model, input_spikes: torch.Tensor, reset: str = "subtract", strict: bool = False):
    """Our float population ([`lif_population()`][spikebridge.neurons.lif_population]) on the exported network
    with a chosen reset (``"subtract"`` or ``"zero"``) and threshold test (``strict``:
    ``v > theta``), for comparing with peers: returns the output spikes ``[T, B, J']``."""
    net = network_of(model)
    T, B, _ = input_spikes.shape
    currents = spike_currents(input_spikes, net.weights.unsqueeze(0), "dense")[0]  # [T, B, J']
    out = torch.zeros(T, B, net.size)
    for k in range(len(net.threshold)):  # members are independent populations of different sizes
        sel = net.member == k
        params = PopulationParameters(net.beta, net.threshold[k : k + 1], model.config.lateral_inhibition,
                                      reset=reset, strict=strict)
        out[:, :, sel] = lif_population(currents[:, :, sel].unsqueeze(0), params, keep_spikes=True).spikes[:, 0]
    return out


# --------------------------------------------------------------------------- peer simulators
def _load_peer(graph_path: Path, peer: str, dt: float):
    if peer == "snntorch":
        from snntorch.import_nir import import_from_nir

        import nir

        with contextlib.redirect_stdout(io.StringIO()):  # it prints progress and warnings
            return import_from_nir(nir.read(str(graph_path)))
    if peer == "norse":
        import norse.torch as norse
        from norse.torch.functional.reset import reset_subtract

        return norse.from_nir(str(graph_path), dt=dt, reset_method=reset_subtract)
    raise ValueError(f"unknown peer {peer!r}; choose 'snntorch' or 'norse'")


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
def peer_predictions(model, features, peer: str, *, steps: int | None = None, batch_size: int = 512,
                     workdir=None) -> dict:
    """Export ``model`` for ``peer`` (``"snntorch"`` or ``"norse"``), load the file with the
    peer's NIR import, feed it the same input spikes as ours and decide from its output spikes.

    The decision is `readout_scores()` on the peer's output spikes, with the final
    membrane potential read from the peer's state for the last tie-break (two columns with
    equal counts and simultaneous first spikes: about 1 example in 200 on Imagenette).

    Returns ``predictions`` (peer), ``ours`` (our model's predictions), ``agreement``,
    ``spikes`` ([B, J'] peer spike counts) and ``reference_spike_match``: the fraction of
    per-neuron spike counts equal to `reference_counts()` run with the peer's own reset
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
                preds.append(readout_scores(c, first_spike_steps(out), net, steps, v).argmax(1))
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

