"""Reward-modulated STDP (Izhikevich 2007): eligibility traces of STDP, turned into weight
changes by a reward of +1 (right decision) or -1 (wrong), minus its running mean."""

from _digits import digits

import spikebridge as sb

X, X_val, y, y_val = digits()
learner = sb.create_learner("rstdp", X.shape[1], 10, eta=0.01, seed=0)
learner, _ = sb.train(learner, X, y, epochs=2, batch_size=8, progress=False)
scores, _ = learner.scores(X_val)
accuracy = (scores.argmax(1).numpy() == y_val).mean()
print(f"R-STDP top-1 {accuracy:.3f}")
assert accuracy > 0.6
