"""spikebridge: pretrained image encoders -> rate-coded spikes -> CoLaNET trained with local plasticity.

Five lines from images to predictions::

    import spikebridge as sb

    X, y = sb.dataset_features("digits", encoder="efficientnet_lite0", split="train")
    X_val, y_val = sb.dataset_features("digits", split="val")
    clf = sb.SpikingClassifier(rule="colanet").fit(X, y)
    print(clf.score(X_val, y_val))

``sb.export(clf, "model.nir", format="nir")`` writes it for neuromorphic hardware (also ``"int8"``,
``"akida"``, ...; [`api`][spikebridge.deploy.api]) and ``sb.load("model.nir")`` reads it back.

The package offers the few names of `__all__`; everything else is imported from its module
(``spikebridge.learner``, ``spikebridge.encoders``, ``spikebridge.features``, ...). Those names are
imported on first use (PEP 562), so ``spikebridge --help`` and argument errors do not pay for
importing torch and timm.
"""

from importlib import import_module

from .errors import SpikebridgeError

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first use)
_MODULE_OF = {
    "CoLaNET": "colanet",
    "CoLaNETConfig": "colanet",
    "SpikingClassifier": "estimator",
    "create_encoder": "encoders",
    "create_learner": "learner",
    "dataset_features": "features",
    "export": "deploy.api",
    "extract_features": "features",
    "load": "deploy.api",
    "open_dataset": "data",
    "train": "training",
}

__all__ = sorted([*_MODULE_OF, "SpikebridgeError"])


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'spikebridge' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})
