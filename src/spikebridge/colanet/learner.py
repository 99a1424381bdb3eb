"""CoLaNET as a registered rule of the learner registry ([`CoLaNETLearner`][spikebridge.colanet.CoLaNETLearner])."""

from __future__ import annotations

import torch

from ..errors import SpikebridgeError
from ..learner import Learner, register_rule
from .config import CALIBRATION_WINDOW, CoLaNETConfig, adaptive_config, adaptive_epochs, schedule_rate
from .network import CoLaNET


@register_rule("colanet")
class CoLaNETLearner(Learner):
    """CoLaNET as a registered [`Learner`][spikebridge.learner.Learner] (``create_learner("colanet", ...)``).

    ``learn_mode`` (an option, not a config field): plasticity from the continuous
    approximation (``"continuous"``, fast) or from activity measured in the spiking
    simulation (``"spiking"``). ``config.microcolumns=None`` is resolved from the training
    data in `prepare()` ([`adaptive_config()`][spikebridge.colanet.adaptive_config]); ``train(epochs=None)`` takes
    [`adaptive_epochs()`][spikebridge.colanet.adaptive_epochs]; the learning rates are annealed by [`schedule_rate()`][spikebridge.colanet.schedule_rate].
    """

    name = "colanet"
    config_class = CoLaNETConfig
    options = ("learn_mode",)
    annealed = True  # learn() takes the schedule's rate factor
    supports_sync = True  # data-parallel training (spikebridge.distributed)

    def __init__(self, n_inputs: int, n_classes: int, config: CoLaNETConfig | None = None,
                 learn_mode: str = "continuous"):
        if learn_mode not in ("continuous", "spiking"):
            raise SpikebridgeError(f"learn mode must be 'continuous' or 'spiking', not {learn_mode!r}")
        self.requested = config or CoLaNETConfig()  # microcolumns=None: chosen from the training data in prepare()
        self.model = CoLaNET(n_inputs, n_classes, self.requested)
        self.learn_mode = learn_mode

    @property
    def config(self) -> CoLaNETConfig:
        return self.model.config

    def default_epochs(self, n_examples: int) -> int:
        return adaptive_epochs(n_examples)

    def rate_at(self, seen: int, total: int, epochs: int) -> float:
        return schedule_rate(seen, total, epochs, self.model.config.anneal)

    @property
    def members(self) -> int:
        return self.model.config.ensemble

    @property
    def generator(self) -> torch.Generator:
        return self.model.generator

    def prepare(self, features, labels=None) -> None:
        if self.requested.microcolumns is None and labels is not None:
            config = adaptive_config(self.requested, len(features), self.model.n_classes)
            self.model = CoLaNET(self.model.n_inputs, self.model.n_classes, config)
        self.model.fit_normaliser(features)
        if labels is not None:  # what partial_fit keeps per class, so a trained model can go on learning online
            self.model.stream.set_from_training(features, labels)
        self.prepared = True

    def partial_fit(self, features, labels, batch_size: int = 1) -> "CoLaNETLearner":
        """CoLaNET's own online rule ([`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit]: running statistics, no example kept)."""
        self.model.partial_fit(features, labels, batch_size=batch_size)
        self.prepared = True
        return self

    def add_classes(self, count: int = 1) -> "CoLaNETLearner":
        """Append ``count`` empty columns and freeze the existing ones ([`add_classes()`][spikebridge.colanet.CoLaNET.add_classes])."""
        self.model.add_classes(count)
        return self

    def state_bytes(self) -> int:
        return self.model.state_bytes()

    def rates(self, features) -> torch.Tensor:
        return self.model.rates(features)

    def learn(self, rates: torch.Tensor, labels: torch.Tensor, sync=None, rate: float = 1.0) -> int:
        if self.learn_mode == "spiking" and self.model.active.any():
            seed = int(torch.randint(1 << 30, (1,), generator=self.model.generator))
            pre, post = self.model.spiking_activity(rates, seed=seed)
            return self.model.learn(pre, labels, post, sync=sync, rate=rate)
        return self.model.learn(rates, labels, sync=sync, rate=rate)

    def end_epoch(self, rates: torch.Tensor, labels: torch.Tensor) -> None:
        self.model.calibrate(rates[:CALIBRATION_WINDOW])

    def scores(self, features, steps: int | None = None):
        return self.model.scores_spiking(features, steps)

    def synaptic_fan_out(self) -> tuple[float, float]:
        return self.model.synaptic_fan_out()

    def n_neurons(self) -> int:
        """Recruited plastic neurons over all members (the ones that are simulated)."""
        return int(self.model.active.sum())

    def predict_continuous(self, features):
        return self.model.predict_continuous(features)

    def tensors(self) -> dict:
        return self.model.tensors()

    def metadata(self) -> dict:
        return {"rule": "colanet", "learn_mode": self.learn_mode, **self.model.metadata()}

    @classmethod
    def from_tensors(cls, meta: dict, tensors: dict) -> "CoLaNETLearner":
        obj = cls.__new__(cls)
        obj.model = CoLaNET.from_tensors(meta, tensors)
        obj.requested = obj.model.config
        obj.learn_mode = meta["learn_mode"]
        obj.prepared = True
        return obj
