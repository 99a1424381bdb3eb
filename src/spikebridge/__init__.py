"""spikebridge: pretrained image encoders -> rate-coded spikes -> CoLaNET trained with local plasticity.

Five lines from images to predictions::

    import spikebridge as sb

    X, y = sb.features("digits", encoder="efficientnet_lite0", split="train")
    X_val, y_val = sb.features("digits", split="val")
    clf = sb.SpikingClassifier(rule="colanet").fit(X, y)
    print(clf.score(X_val, y_val))

``sb.export(clf, "model.nir", format="nir")`` writes it for neuromorphic hardware (also ``"int8"``,
``"akida"``, ...; :mod:`spikebridge.deploy.api`) and ``sb.load("model.nir")`` reads it back.

Names are imported on first use (PEP 562), so ``spikebridge --help`` and argument errors do
not pay for importing torch and timm. ``spikebridge.features`` is both the feature module and,
called, :func:`spikebridge.features.dataset_features`.
"""

import sys
import types
from importlib import import_module

__version__ = "0.1.0"

_WHERE = {
    "coding": ["RateNormaliser", "bernoulli_spikes", "encode", "regular_spikes"],
    "colanet": ["CoLaNET", "CoLaNETConfig", "CoLaNETLearner"],
    "data": ["DataSplits", "ImageDataset", "digits", "image_folder", "imagenet64", "open_dataset"],
    "deploy.api": ["export", "load"],
    "encoders": ["Encoder", "create_encoder", "load_pretrained"],
    "errors": ["SpikebridgeError"],
    "estimator": ["SpikingClassifier"],
    "features": ["FeatureSet", "dataset_features", "extract_features", "load_features"],
    "learner": ["Learner", "create_learner", "list_rules", "load_learner", "register_rule"],
    "neurons": ["LIF", "LIFParameters", "PopulationParameters", "lif_population", "lif_run", "lif_step", "run_population"],
    "rules": ["RSTDP", "DiehlCook", "SupervisedSTDP"],
    "train": ["make_learner", "train"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = sorted([*_MODULE_OF, "features"])


def __getattr__(name: str):
    if name == "features":  # the module, callable: spikebridge.features("digits", split="train") -> (X, y)
        return import_module(".features", __name__)
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'spikebridge' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])


class _Package(types.ModuleType):
    """Keeps ``spikebridge.train`` the function when the submodule of that name is loaded
    (the import system binds a loaded submodule on its package), as the eager imports did."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and name in _MODULE_OF:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
