"""Diehl & Cook (2015): unsupervised STDP with winner-take-all and adaptive thresholds; the
neurons are labelled after each epoch with the class they answer most. Compared with the same
network without plasticity (eta = 0), whose neuron labelling alone is well above chance."""

from _digits import digits

import spikebridge as sb

X, X_val, y, y_val = digits()
accuracy_of = {}
for eta in (0.01, 0.0):
    learner = sb.create_learner("diehl-cook", X.shape[1], 10, eta=eta, neurons_per_class=10, seed=0)
    learner, _ = sb.train(learner, X, y, epochs=2, batch_size=8, progress=False)
    scores, _ = learner.scores(X_val)
    accuracy = (scores.argmax(1).numpy() == y_val).mean()
    print(f"Diehl & Cook, eta = {eta}: top-1 {accuracy:.3f}, mean adaptive threshold {float(learner.adaptive.mean()):.2f}")
    accuracy_of[eta] = accuracy
assert accuracy_of[0.01] > 0.7 and accuracy_of[0.01] > accuracy_of[0.0] + 0.1  # plasticity learns (measured 0.81 vs 0.53)
