"""Online learning of the integer learner: the float rule's single-pass
[`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit] and class-incremental columns in integers."""

from __future__ import annotations

import numpy as np
import torch

from ...coding import RateNormaliser
from ...colanet.config import EXAMPLES_PER_MICROCOLUMN
from ...errors import SpikebridgeError, require_finite
from ...neurons import single_threaded
from .constants import RATE_SHIFT


class OnlineLearning:
    """Online and class-incremental learning of
    [`IntegerCoLaNET`][spikebridge.deploy.integer_learning.IntegerCoLaNET] (a mixin: it uses the
    learner's integer step, drive and host-side statistics ``stream``)."""

    @torch.no_grad()
    def partial_fit(self, features, labels, batch_size: int = 1) -> "IntegerCoLaNET":
        """Online learning, each example once: the float rule's [`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit]
        in integers. The host keeps the same running statistics
        ([`StreamStatistics`][spikebridge.streaming.StreamStatistics]: coder, class statistics for replay,
        mean counts) and sends spike counts; the chip's state adds, per column, the count
        ``n_c`` of its dopamine spikes and the rate numerator ``R_c = R0 * H // (H + n_c)``
        (``R0 = round(stream_boost * 2^RATE_SHIFT)``, ``H = round(stream_halflife)``); while some
        columns are frozen the presynaptic term is ``c - round(mean count)``; ``theta8`` follows a
        running median ``m`` of the winner's drive ``max_j sum_i (W - gamma_q) c``,
        ``m += sign(a - m) * max(1, m >> 6)``, through the calibration's equations."""
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        require_finite(features, "train")
        if len(labels) and int(labels.max()) >= self.n_classes:
            raise SpikebridgeError(f"label {int(labels.max())} >= n_classes {self.n_classes}; add_classes first")
        cfg, stream = self.config, self.stream
        if self.normaliser is None or stream.coder_learning:
            if cfg.normalisation == "onoff":
                self.normaliser = stream.update_coder(features, cfg.saturation)
            elif self.normaliser is None:
                self.normaliser = RateNormaliser.fit(features, cfg.normalisation, percentile=cfg.percentile)
        counts = self.rates(features)
        r0, h = round(cfg.stream_boost * (1 << RATE_SHIFT)), max(1, round(cfg.stream_halflife))
        with single_threaded():
            for b in range(0, len(labels), batch_size):
                c, y = counts[b : b + batch_size], labels[b : b + batch_size]
                stream.observe(features[b : b + batch_size], y)
                mean_count = stream.observe_rates(c.float()).round().to(torch.int64)
                centre = mean_count if cfg.stream_centred and bool(self.frozen.any()) else None
                n_replay = stream.replay_count(cfg.replay * len(y), self.frozen,
                                               cfg.replay_cap if cfg.balanced_replay else None)
                replay = stream.replay(n_replay, self.frozen, cfg.replay_noise, self.generator)
                if replay is not None:
                    c = torch.cat([c, self.rates(replay[0][0])])
                    y = torch.cat([y, replay[1][0]])
                rate = r0 * h // (h + stream.seen)
                self._learn(c, y, None, rate, stream.slots(EXAMPLES_PER_MICROCOLUMN, cfg.microcolumns), centre)
                self._track_drive(counts[b : b + batch_size])
        self._stale = True  # theta8 from the drive median when the inference model is next needed
        return self

    def _track_drive(self, counts: torch.Tensor) -> None:
        if not bool(self.active.any()):
            return
        gamma = self._gamma()
        c = counts.to(torch.int64)
        drive = self._drive(c).max(1).values - gamma * c.sum(1)
        for a in drive.tolist():
            if a > 0:
                m = self.drive_median
                self.drive_median = a if m <= 0 else m + (1 if a > m else -1) * max(1, m >> 6)

    @torch.no_grad()
    def add_classes(self, count: int = 1) -> "IntegerCoLaNET":
        """Append ``count`` empty columns and freeze the existing ones (as the float
        [`add_classes()`][spikebridge.colanet.CoLaNET.add_classes]); the coder's statistics stop."""
        M, N = self.config.microcolumns, self.n_channels
        self.weights = torch.cat([self.weights, torch.zeros(count * M, N, dtype=self.weights.dtype)])
        self.active = torch.cat([self.active, torch.zeros(count * M, dtype=torch.bool)])
        self.frozen = torch.cat([torch.ones_like(self.frozen), torch.zeros(count, dtype=torch.bool)])
        self.n_classes += count
        self.column = torch.arange(len(self.active)) // M
        self.stream.add_classes(count)
        return self

    def state_bytes(self) -> int:
        """Bytes of the learning state: recruited weights (their storage type), per-column
        counts, and the host's statistics (float32)."""
        per_weight = self.weights.element_size()
        return (int(self.active.sum()) * self.n_channels * per_weight + 4 * self.stream.state_values()
                + 8 * self.n_channels + 16)
