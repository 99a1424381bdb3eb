"""spikebridge: pretrained image encoders -> rate-coded spikes -> CoLaNET trained with local plasticity."""

__version__ = "0.1.0"

from .coding import RateNormaliser, bernoulli_spikes, encode, regular_spikes
from .colanet import CoLaNET, CoLaNETConfig
from .data import DataSplits, ImageDataset, digits, image_folder, imagenet64, open_dataset
from .encoders import Encoder, create_encoder, load_pretrained
from .errors import SpikebridgeError
from .features import FeatureSet, extract_features, load_features
from .neurons import LIF, LIFParameters, lif_run, lif_step, run_population
from .rules import RSTDP, DiehlCook, RuleConfig, SupervisedSTDP
from .train import load_learner, make_learner, train

__all__ = [
    "CoLaNET", "CoLaNETConfig", "DataSplits", "DiehlCook", "Encoder", "FeatureSet", "ImageDataset", "LIF",
    "LIFParameters", "RSTDP", "RateNormaliser", "RuleConfig", "SpikebridgeError", "SupervisedSTDP",
    "bernoulli_spikes", "create_encoder", "digits", "encode", "extract_features", "image_folder", "imagenet64",
    "lif_run", "lif_step", "load_features", "load_learner", "load_pretrained", "make_learner", "open_dataset",
    "regular_spikes", "run_population", "train",
]
