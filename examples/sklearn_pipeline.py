"""SpikingClassifier in a scikit-learn Pipeline, with a grid search over one CoLaNET setting."""

from _digits import digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from spikebridge import SpikingClassifier

X, X_val, y, y_val = digits()
pipe = make_pipeline(StandardScaler(), SpikingClassifier(rule="colanet", seed=0))
search = GridSearchCV(pipe, {"spikingclassifier__margin": [0.0, 0.09, 0.2]}, cv=3).fit(X, y)
print("best margin:", search.best_params_["spikingclassifier__margin"], f"(CV accuracy {search.best_score_:.3f})")
accuracy = search.score(X_val, y_val)
print(f"val accuracy {accuracy:.3f}")
print("class probabilities of the first val example:", search.predict_proba(X_val[:1]).round(2))
assert accuracy > 0.9 and search.best_params_["spikingclassifier__margin"] in (0.0, 0.09, 0.2)
