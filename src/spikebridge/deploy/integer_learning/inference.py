"""The int8 inference model of the integer learner: calibration (``gamma_q``, the int8 fold,
``theta8``, ``lateral8``; equations in the [`integer_learning`][spikebridge.deploy.integer_learning]
package docstring) and the deployable [`Int8CoLaNET`][spikebridge.deploy.fixed_point.Int8CoLaNET]."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import SpikebridgeError
from ..fixed_point import Int8CoLaNET, decay_dv
from .constants import FS_SHIFT, INT8_LIMIT, LATERAL_SHIFT, NO_NEURON


class Int8Inference:
    """Calibration and inference of [`IntegerCoLaNET`][spikebridge.deploy.integer_learning.IntegerCoLaNET]
    (a mixin: it uses the learner's integer state)."""

    def _gamma(self) -> torch.Tensor:
        n = int(self.active.sum())
        if not n:
            return self.gamma
        total, den = self.weights[self.active].to(torch.int64).sum(), n * self.n_channels
        return torch.div(2 * total + den, 2 * den, rounding_mode="floor")

    def _calibrate_from(self, median: int) -> None:
        """``gamma_q``, the fold, ``theta8`` and ``lateral8`` from a drive median in learned LSBs."""
        self._stale = False
        self.gamma = self._gamma()
        self.folded_weights()
        self._set_threshold(torch.tensor(max(1, median >> self.shift), dtype=torch.int64))

    @torch.no_grad()
    def calibrate(self, counts: torch.Tensor) -> None:
        """``gamma_q``, the int8 fold and ``theta8``/``lateral8`` from ``counts [n, N]`` (package docstring)."""
        T = self.config.steps
        c = counts.reshape(-1, self.n_channels).to(torch.int64)
        self.gamma = self._gamma()
        w8 = self.folded_weights()
        best = (c @ w8.to(torch.int64).T).masked_fill(~self.active, NO_NEURON).max(1).values
        positive = best[best > 0]
        med = torch.sort(positive).values[(len(positive) - 1) // 2] if len(positive) else torch.tensor(T)
        self._set_threshold(med)

    def _set_threshold(self, med: torch.Tensor) -> None:
        """``theta8`` and ``lateral8`` from the median winner drive ``med`` (int8-weight units, over T steps)."""
        k, T = self.constants(), self.config.steps
        half = T << (FS_SHIFT - 1)
        theta = torch.div(k["first_spike_num"] * med + half, T << FS_SHIFT, rounding_mode="floor")
        theta = theta.clamp(1, Int8CoLaNET.V_MAX)
        lateral = (k["lateral_num"] * theta + (1 << (LATERAL_SHIFT - 1))) >> LATERAL_SHIFT
        self.threshold = theta.view(1).to(torch.int32)
        self.lateral = lateral.clamp(0, Int8CoLaNET.V_MAX).view(1).to(torch.int32)

    def folded_weights(self) -> torch.Tensor:
        """``W8 = clamp((W - gamma_q + h) >> e, -127, 127)`` for every neuron ``[J, N]`` (int8);
        counts the clamped synapses of recruited neurons in `saturated`."""
        e = self.shift
        wide = self.weights.to(torch.int64) - self.gamma
        if e:
            wide = (wide + (1 << (e - 1))) >> e
        self.saturated = int(((wide.abs() > INT8_LIMIT) & self.active.view(-1, 1)).sum())
        return wide.clamp(-INT8_LIMIT, INT8_LIMIT).to(torch.int8)

    def to_int8(self, reset: str = "subtract") -> Int8CoLaNET:
        """The deployable [`Int8CoLaNET`][spikebridge.deploy.fixed_point.Int8CoLaNET] (recruited neurons only) of the last
        calibration: weights ``W8``, ``theta8``, ``lateral8``, Int8CoLaNET's 12-bit decay."""
        if not bool(self.active.any()) or self.normaliser is None:
            raise SpikebridgeError("the integer model has no recruited neurons or no rate normaliser (train it first)")
        if self._stale:
            self._calibrate_from(self.drive_median)
        cfg = self.config
        row = self.active.nonzero().view(-1)
        return Int8CoLaNET(self.folded_weights()[row].contiguous(), self.shift, self.threshold.clone(),
                           self.lateral.clone(), decay_dv(cfg.beta), torch.zeros(len(row), dtype=torch.int64), row,
                           self.column[row], self.n_classes, self.normaliser, cfg.steps, cfg.coder, cfg.dt, reset)

    @torch.no_grad()
    def scores(self, features, steps: int | None = None, batch_size: int = 1024):
        """Column scores ``[B, C]`` of the int8 inference model and spike statistics."""
        model = self.to_int8()
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        out, class_spikes, spikes_in, spikes_out = [], [], 0, 0
        for b in range(0, len(features), batch_size):
            x = model.spikes_for(features[b : b + batch_size], steps, seed=b)
            rec = model.simulate(x)
            out.append(model.scores(rec))
            class_spikes.append(torch.zeros(len(x[0]), self.n_classes, dtype=torch.int64).index_add_(
                1, model.column, rec.counts))
            spikes_in += int(x.sum())
            spikes_out += int(rec.counts.sum())
        n = max(1, len(features))
        return torch.cat(out), {"input_spikes": spikes_in / n, "output_spikes": spikes_out / n,
                                "class_spikes": torch.cat(class_spikes)}

    def predict(self, features, steps: int | None = None) -> torch.Tensor:
        return self.to_int8().predict(features, steps)
