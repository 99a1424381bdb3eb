"""Online, class-incremental learning: digits 0-7 arrive first in a stream of small chunks,
then 8 and 9 appear. CoLaNET appends columns for the new classes and freezes the old ones
(replayed prototypes keep the new columns from claiming old inputs)."""

import numpy as np
from _digits import digits

from spikebridge import SpikingClassifier

X, X_val, y, y_val = digits()
clf = SpikingClassifier(rule="colanet", seed=0)
old = y < 8
for b in range(0, int(old.sum()), 50):  # each example is seen once, as it comes
    clf.partial_fit(X[old][b : b + 50], y[old][b : b + 50])
print(f"after 0-7: accuracy on 0-7 {clf.score(X_val[y_val < 8], y_val[y_val < 8]):.3f}, classes {clf.classes_.tolist()}")
for b in range(0, int((~old).sum()), 50):
    clf.partial_fit(X[~old][b : b + 50], y[~old][b : b + 50])  # new labels: new columns
pred = clf.predict(X_val)
print(f"after 8-9: accuracy on 0-7 {np.mean(pred[y_val < 8] == y_val[y_val < 8]):.3f}, "
      f"on 8-9 {np.mean(pred[y_val >= 8] == y_val[y_val >= 8]):.3f}, classes {clf.classes_.tolist()}")
assert np.mean(pred[y_val < 8] == y_val[y_val < 8]) > 0.9 and np.mean(pred[y_val >= 8] == y_val[y_val >= 8]) > 0.5
