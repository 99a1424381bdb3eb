"""The CoLaNET network: its state, drive, spiking simulation, decisions, calibration and
persistence (the equations are in the [`colanet`][spikebridge.colanet] package docstring); its
plasticity ([`plasticity`][spikebridge.colanet.plasticity]) and online learning
([`online`][spikebridge.colanet.online]) are mixed in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from .. import checks
from ..coding import RateNormaliser, channel_count, encode
from ..currents import default_bf16, synaptic_currents
from ..errors import require_finite
from ..learner import check_recorded_shape, config_from_metadata
from ..neurons import PopulationParameters, lif_population
from ..readout import NEG, column_scores, continuous_column_scores
from ..streaming import StreamStatistics
from .config import MAX_MICROCOLUMNS, CoLaNETConfig
from .online import OnlineLearning
from .plasticity import Plasticity

__all__ = ["NEG", "CoLaNET", "SpikeRecord"]


@dataclass
class SpikeRecord:
    """What one spiking simulation produced (for decisions, counts and rasters)."""

    counts: torch.Tensor  # [K, B, J] spikes per neuron
    first_spike: torch.Tensor  # [K, B, J] step of first spike (1-based), T + 1 if none
    v_final: torch.Tensor  # [K, B, J]
    input_spikes: torch.Tensor  # [B] input spikes per example
    steps: int
    raster: torch.Tensor | None = None  # [T, J] of example 0 when asked for


@dataclass
class CoLaNET(Plasticity, OnlineLearning):
    """The CoLaNET network: its state, spiking simulation, decisions and plasticity (equations in
    the package docstring of `spikebridge.colanet`).

    Parameters
    ----------
    n_inputs : int
        Features per example (the ON/OFF coder gives ``2 * n_inputs`` input channels).
    n_classes : int
        Columns, one per class.
    config : CoLaNETConfig
        The settings; ``microcolumns=None`` takes the most the adaptive rule gives (7) when the
        network is built without training data.

    Attributes
    ----------
    weights : Tensor of shape (K, J, N)
        Plastic weights of the ``J = C * M`` neurons of each of the ``K`` ensemble members.
    active : Tensor of shape (K, J), bool
        Recruited neurons (the others are silent).
    gamma, threshold : Tensor of shape (K,)
        Feedforward inhibition (mean recruited weight) and firing threshold per member.
    frozen : Tensor of shape (C,), bool
        Columns closed to plasticity (`add_classes`).
    stream : StreamStatistics
        What `partial_fit` keeps instead of examples.
    """

    n_inputs: int
    n_classes: int
    config: CoLaNETConfig = field(default_factory=CoLaNETConfig)

    def __post_init__(self):
        if self.config.microcolumns is None:  # built without training data: the most adaptive_config gives
            self.config = replace(self.config, microcolumns=MAX_MICROCOLUMNS)
        K, J = self.config.ensemble, self.n_classes * self.config.microcolumns
        self.n_channels = channel_count(self.n_inputs, self.config.normalisation)  # input spike channels
        self.weights = torch.zeros(K, J, self.n_channels)
        self.active = torch.zeros(K, J, dtype=torch.bool)
        self.gamma = torch.zeros(K)
        self.threshold = torch.ones(K)
        self.normaliser: RateNormaliser | None = None
        self.column = torch.arange(J) // self.config.microcolumns
        self.frozen = torch.zeros(self.n_classes, dtype=torch.bool)  # columns closed to plasticity (add_classes)
        self.stream = StreamStatistics(self.n_inputs, self.n_classes, self.config.replay_rank)  # partial_fit's running statistics
        self.drive_median = torch.zeros(K)  # running median of the winner's drive (partial_fit's theta)
        self.generator = torch.Generator().manual_seed(self.config.seed)

    # ------------------------------------------------------------------ rates and drive
    def rates(self, features) -> torch.Tensor:
        if self.normaliser is None:
            raise RuntimeError("fit the rate normaliser first (CoLaNET.fit_normaliser)")
        return self.normaliser(features)

    def fit_normaliser(self, features) -> None:
        cfg = self.config
        self.normaliser = RateNormaliser.fit(features, cfg.normalisation, percentile=cfg.percentile, saturation=cfg.saturation)

    def effective_weights(self) -> torch.Tensor:
        """``W - gamma`` with unrecruited neurons silenced: ``[K, J, N]``."""
        return (self.weights - self.gamma.view(-1, 1, 1)).mul_(self.active.unsqueeze(-1))

    def drive(self, rates: torch.Tensor) -> torch.Tensor:
        """Expected net input per step ``[K, B, J]``; unrecruited neurons get ``NEG``."""
        r = rates if rates.dim() == 3 else rates.unsqueeze(0).expand(self.config.ensemble, -1, -1)
        a = torch.bmm(r, self.effective_weights().transpose(1, 2))
        return a.masked_fill(~self.active.unsqueeze(1), NEG)

    # ------------------------------------------------------------------ decisions
    def column_scores_continuous(self, rates: torch.Tensor) -> torch.Tensor:
        """Expected spike counts per column and member, summed over members: ``[B, C]``
        ([`continuous_column_scores()`][spikebridge.readout.continuous_column_scores])."""
        return continuous_column_scores(self.drive(rates), self.threshold, self.n_classes)

    @torch.no_grad()
    def predict_continuous(self, features) -> torch.Tensor:
        require_finite(features, "input")
        return self.column_scores_continuous(self.rates(features)).argmax(1)

    @torch.no_grad()
    def simulate(self, input_spikes: torch.Tensor, record_raster: bool = False, method: str | None = None,
                 bf16: bool | None = None) -> SpikeRecord:
        """Run the spiking network on ``input_spikes [T, B, N]`` (the same input to every
        member) or ``[T, K, B, N]`` (one input per member).

        Currents ``(W - gamma) x[t]`` ([`synaptic_currents()`][spikebridge.currents.synaptic_currents]:
        ``method`` ``"dense"`` GEMM, ``"event"``-driven, which rounds differently, or ``"auto"``
        (the faster of the two on this machine at the input's spike density); ``bf16`` rounds the
        weights to bfloat16; ``None``: the library defaults, dense and fp32, the same decisions on
        every machine, unless the environment opts in: [`default_method()`][spikebridge.currents.default_method],
        [`default_bf16()`][spikebridge.currents.default_bf16]), then the LIF populations ([`lif_population()`][spikebridge.neurons.lif_population])
        with lateral inhibition; unrecruited neurons are silent."""
        cfg = self.config
        K, J, N = self.weights.shape
        T = input_spikes.shape[0]
        currents, in_spikes = synaptic_currents(input_spikes, self.effective_weights(), method,
                                                bf16=default_bf16(bf16))
        params = PopulationParameters(cfg.beta, self.threshold, cfg.lateral_inhibition, silent=~self.active)
        rec = lif_population(currents, params, record_raster)
        raster = rec.spikes[:, 0, 0] if record_raster else None
        v = rec.v_final.masked_fill(~self.active.view(K, 1, J), NEG)
        return SpikeRecord(rec.counts, rec.first_spike, v, in_spikes, T, raster)

    def column_scores(self, rec: SpikeRecord) -> torch.Tensor:
        """Lexicographic column scores ``[B, C]`` (float64) of [`column_scores()`][spikebridge.readout.column_scores]:
        most column spikes (summed over members), then earliest first spike, then highest final
        ``v/theta`` of the column's best neuron (averaged over members, through ``atan``)."""
        K, B, J = rec.counts.shape
        flat = lambda x: x.permute(1, 0, 2).reshape(B, K * J)  # noqa: E731  [K, B, J] -> [B, K*J]
        member = torch.arange(K).repeat_interleave(J)
        return column_scores(flat(rec.counts), flat(rec.first_spike), flat(rec.v_final), self.threshold, member,
                             self.column.repeat(K), self.n_classes, rec.steps)

    def column_decision(self, rec: SpikeRecord) -> torch.Tensor:
        return self.column_scores(rec).argmax(1)

    def spikes_for(self, features, steps: int | None = None, seed: int = 0) -> torch.Tensor:
        cfg = self.config
        return encode(self.rates(features), steps or cfg.steps, cfg.coder, seed=seed, dt=cfg.dt, max_rate=1.0 / cfg.dt)

    @torch.no_grad()
    def scores_spiking(self, features, steps: int | None = None, batch_size: int = 1024, seed: int = 0,
                       method: str | None = None, bf16: bool | None = None):
        """Spiking-simulation column scores ``[B, C]`` and ``stats``: mean input / output spikes
        per example and ``class_spikes [B, C]``, each column's spikes summed over members
        (``method``, ``bf16``: those of [`simulate()`][spikebridge.colanet.CoLaNET.simulate])."""
        scores, counts, in_spikes, out_spikes = [], [], 0.0, 0.0
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        require_finite(features, "input")
        K, J, N = self.weights.shape
        batch_size = checks.simulation_batch(batch_size, steps or self.config.steps, N, K * J)
        for b in range(0, len(features), batch_size):
            rec = self.simulate(self.spikes_for(features[b : b + batch_size], steps, seed=seed + b), method=method,
                                bf16=bf16)
            scores.append(self.column_scores(rec))
            K, B, _ = rec.counts.shape
            counts.append(rec.counts.view(K, B, self.n_classes, -1).sum(-1).sum(0))
            in_spikes += rec.input_spikes.sum().item()
            out_spikes += rec.counts.sum().item()
        n = max(1, len(features))
        empty = torch.zeros(0, self.n_classes)
        return (torch.cat(scores) if scores else empty,
                {"input_spikes": in_spikes / n, "output_spikes": out_spikes / n,
                 "class_spikes": torch.cat(counts) if counts else empty})

    def predict_spiking(self, features, steps: int | None = None, **kw) -> torch.Tensor:
        return self.scores_spiking(features, steps, **kw)[0].argmax(1)

    def synaptic_fan_out(self) -> tuple[float, float]:
        """(targets per input spike, targets per output spike) over all members."""
        active = self.active.sum(-1).float()
        return float(active.sum()), float((active - 1).clamp_min(0).mean())

    @torch.no_grad()
    def spiking_activity(self, rates: torch.Tensor, seed: int = 0, method: str | None = None,
                         bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Presynaptic traces and postsynaptic activity measured in a spiking simulation
        (``method``, ``bf16``: those of [`simulate()`][spikebridge.colanet.CoLaNET.simulate])."""
        cfg = self.config
        spikes = encode(rates, cfg.steps, cfg.coder, seed=seed, dt=cfg.dt, max_rate=1.0 / cfg.dt)
        rec = self.simulate(spikes, method=method, bf16=bf16)  # rates [K, B, N] -> spikes [T, K, B, N]: one input per member
        theta = self.threshold.view(-1, 1, 1)
        activity = (theta * rec.counts + rec.v_final) / cfg.steps
        return spikes.float().mean(0), activity

    @torch.no_grad()
    def calibrate(self, rates: torch.Tensor) -> None:
        """Set ``theta`` so the median winning neuron first fires at ``first_spike_step``."""
        self._update_gamma()
        a = self.drive(rates).max(-1).values  # [K, B]
        a = torch.where(a > 0, a, torch.full_like(a, float("nan")))
        med = torch.nanmedian(a, dim=1).values
        med = torch.where(torch.isnan(med), torch.ones_like(med), med)
        self.threshold = (self.config.first_spike_step * med).clamp_min(1e-6)
        self.drive_median = med.clone()

    # ------------------------------------------------------------------ persistence
    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "weights": self.weights.contiguous(),
            "active": self.active.to(torch.uint8),
            "gamma": self.gamma,
            "threshold": self.threshold,
            **(self.normaliser.tensors() if self.normaliser else {}),
            "frozen": self.frozen.to(torch.uint8),
            **self.stream.tensors(),
            "drive_median": self.drive_median,
            "rng_state": self.generator.get_state(),
        }

    def metadata(self) -> dict:
        return {"n_inputs": self.n_inputs, "n_classes": self.n_classes, "config": asdict(self.config),
                "normaliser": self.normaliser.metadata() if self.normaliser else None}

    @classmethod
    def from_tensors(cls, meta: dict, tensors: dict[str, torch.Tensor]) -> "CoLaNET":
        model = cls(meta["n_inputs"], meta["n_classes"], config_from_metadata(CoLaNETConfig, meta))
        check_recorded_shape("weights", tensors, model.weights.shape, meta)
        model.weights = tensors["weights"].clone()
        model.active = tensors["active"].bool().clone()
        model.gamma = tensors["gamma"].clone()
        model.threshold = tensors["threshold"].clone()
        if "rate_source" in tensors:  # a model that has not seen data yet has no normaliser
            model.normaliser = RateNormaliser.from_tensors(tensors, meta["normaliser"])
        model.frozen = tensors["frozen"].bool().clone()
        model.stream.load_tensors(tensors)
        model.drive_median = tensors["drive_median"].clone()
        model.generator.set_state(tensors["rng_state"])
        return model

    def save(self, path) -> None:
        from ..io import save_tensors

        save_tensors(path, self.tensors(), {"kind": "colanet", **self.metadata()})

    @classmethod
    def load(cls, path) -> "CoLaNET":
        from ..io import load_tensors

        tensors, meta = load_tensors(path)
        return cls.from_tensors(meta, tensors)
