"""Supervised STDP (teacher forcing): the target neuron is made to fire by a teacher current,
STDP potentiates its synapses from active inputs; wrong neurons that fire are depressed."""

from _digits import digits

import spikebridge as sb

X, X_val, y, y_val = digits()
learner = sb.create_learner("sstdp", X.shape[1], 10, teacher_period=2, seed=0)
learner, _ = sb.train(learner, X, y, epochs=2, batch_size=8, progress=False)
scores, _ = learner.scores(X_val)
accuracy = (scores.argmax(1).numpy() == y_val).mean()
print(f"supervised STDP top-1 {accuracy:.3f}")
assert accuracy > 0.5
