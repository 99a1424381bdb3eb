"""Export a trained CoLaNET to NIR and run the graph in snnTorch and Norse (needs the
'peers' extra: pip install 'spikebridge[peers]'); the readout of the peers' output spikes is
compared with our own spiking simulation."""

import tempfile
from pathlib import Path

import torch
from _digits import digits

import spikebridge as sb
from spikebridge.deploy.peer_agreement import peer_predictions

X, X_val, y, y_val = digits()
learner, _ = sb.train(sb.create_learner("colanet", X.shape[1], 10, seed=0), X, y, progress=False)
model = learner.model
with tempfile.TemporaryDirectory() as tmp:
    summary = sb.export(learner, Path(tmp) / "colanet.nir", format="nir")  # a SpikingClassifier works too
    print(f"NIR graph: nodes {summary['nodes']}, {summary['neurons']} LIF neurons, sidecar {Path(summary['sidecar']).name}")
    again = sb.load(summary["path"])  # a CoLaNET again: bit-identical predictions
    assert torch.equal(again.predict_spiking(X_val), model.predict_spiking(X_val))
for peer in ("snntorch", "norse"):
    result = peer_predictions(model, X_val[:100], peer)
    accuracy = (result["predictions"].numpy() == y_val[:100]).mean()
    print(f"{peer}: agreement with spikebridge {result['agreement']:.3f}, top-1 {accuracy:.3f} on 100 val examples")
