"""CoLaNET: one column of prototype neurons per class, dopamine-modulated potentiation and
anti-Hebbian depression (spikebridge.colanet). Trains, then compares the spiking decision
with the continuous approximation."""

from _digits import digits

import spikebridge as sb

X, X_val, y, y_val = digits()
learner = sb.create_learner("colanet", X.shape[1], 10, seed=0)  # microcolumns and epochs adapt to the data
learner, history = sb.train(learner, X, y, progress=False)
scores, stats = learner.scores(X_val)  # spiking simulation, T = 32 steps
spiking = (scores.argmax(1).numpy() == y_val).mean()
continuous = (learner.predict_continuous(X_val).numpy() == y_val).mean()
print(f"CoLaNET: {history['epochs_planned']} epochs, {learner.model.config.microcolumns} microcolumn(s) per class")
print(f"top-1 spiking {spiking:.3f}, continuous approximation {continuous:.3f}, "
      f"{stats['output_spikes']:.1f} output spikes per example")
assert spiking > 0.85
