"""CoLaNET learning online: single-pass [`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit]
with replay of frozen classes, the running median of the winner's drive, and class-incremental
columns ([`add_classes()`][spikebridge.colanet.CoLaNET.add_classes]), mixed into
[`CoLaNET`][spikebridge.colanet.CoLaNET]."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import SpikebridgeError, require_finite
from ..neurons import single_threaded
from .config import DRIVE_MEDIAN_STEP, EXAMPLES_PER_MICROCOLUMN


class OnlineLearning:
    """Online and class-incremental learning of [`CoLaNET`][spikebridge.colanet.CoLaNET] (a mixin:
    it uses the network's [`learn()`][spikebridge.colanet.CoLaNET.learn], [`drive()`][spikebridge.colanet.CoLaNET.drive]
    and its running statistics ``stream``)."""

    @torch.no_grad()
    def partial_fit(self, features, labels, batch_size: int = 1, bagging: float = 0.8) -> "CoLaNET":
        r"""Online, single-pass learning: each example of this call is learned once, as it comes.

        Everything the stream needs is running state, none of it an example
        ([`StreamStatistics`][spikebridge.streaming.StreamStatistics], whose docstring holds the equations):
        the ON/OFF coder's running statistics until [`freeze_coder()`][spikebridge.colanet.CoLaNET.freeze_coder] (called by
        [`add_classes()`][spikebridge.colanet.CoLaNET.add_classes]: the end of the base session; a normaliser fitted before the first
        call is kept as it is); a per-column learning-rate factor that decays with the examples
        of that column's class (potentiation of ``j+`` uses its column's factor, depression of
        ``j-`` its own column's), so a single pass anneals per class whatever the stream's length
        or class order; microcolumns that a column may recruit as its class's examples arrive;
        per-class feature statistics, from which replay draws examples of frozen classes; and
        ``theta = first_spike_step * m``, ``m`` a running median of the winner's drive
        (``m <- m * exp(DRIVE_MEDIAN_STEP * sign(a_max - m))``).

        With an ensemble, each member learns each example with probability ``bagging`` (online
        bagging), so the members differ although the stream is shared.
        """
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        require_finite(features, "train")
        if len(labels) and int(labels.max()) >= self.n_classes:
            raise ValueError(f"label {int(labels.max())} >= n_classes {self.n_classes}; add_classes first")
        with single_threaded():  # small tensors: threads cost more than they save
            return self._partial_fit(features, labels, batch_size, bagging)

    def _partial_fit(self, features: torch.Tensor, labels: torch.Tensor, batch_size: int, bagging: float) -> "CoLaNET":
        cfg, K, stream = self.config, self.config.ensemble, self.stream
        if self.normaliser is None or stream.coder_learning:
            if cfg.normalisation == "onoff":
                self.normaliser = stream.update_coder(features, cfg.saturation)
            elif self.normaliser is None:  # the percentile coder has no running form: fitted on the first call
                self.fit_normaliser(features)
        rates = self.rates(features)
        for b in range(0, len(rates), batch_size):
            r, y = rates[b : b + batch_size], labels[b : b + batch_size]
            stream.observe(features[b : b + batch_size], y)
            mask = None if K == 1 else torch.rand(K, len(y), generator=self.generator) < bagging
            rr, yy = r, y
            n_replay = stream.replay_count(cfg.replay * len(y), self.frozen, cfg.replay_cap if cfg.balanced_replay else None)
            replay = stream.replay(n_replay, self.frozen, cfg.replay_noise, self.generator, K)
            if replay is not None:  # interleave replayed examples of frozen classes
                replayed = self.rates(replay[0].reshape(-1, self.n_inputs)).view(K, -1, self.n_channels)
                rr = torch.cat([r.unsqueeze(0).expand(K, -1, -1), replayed], 1)
                yy = torch.cat([y.unsqueeze(0).expand(K, -1), replay[1]], 1)
                if mask is not None:
                    mask = torch.cat([mask, torch.ones_like(replay[1], dtype=torch.bool)], 1)
            mean_rate = stream.observe_rates(r).clone()
            centre = mean_rate if cfg.stream_centred and bool(self.frozen.any()) else None
            self.learn(rr, yy, mask=mask, column_rate=stream.column_rate(cfg.stream_boost, cfg.stream_halflife),
                       slots=stream.slots(EXAMPLES_PER_MICROCOLUMN, cfg.microcolumns), centre=centre)
            self._track_drive(r)
        self.threshold = (cfg.first_spike_step * self.drive_median).clamp_min(1e-6)
        self._update_gamma()
        return self

    def state_bytes(self) -> int:
        """Bytes a device holds to go on learning online (float32/int32 values): the recruited
        neurons' weights, per-class counts, feature means and variances, the coder (a centre and a gain per
        channel, running statistics while they learn), ``gamma``, ``theta`` and the drive median."""
        K, N = self.config.ensemble, self.n_channels
        return 4 * (int(self.active.sum()) * N + self.stream.state_values() + 2 * N + 3 * K)

    def freeze_coder(self) -> "CoLaNET":
        """Stop updating the coder's running statistics (the rates keep their current map)."""
        if self.normaliser is None:
            raise SpikebridgeError("the coder has no statistics yet: learn from some examples first")
        self.stream.freeze_coder()
        return self

    def _track_drive(self, rates: torch.Tensor) -> None:
        """Running median of the winning neuron's drive (multiplicative sign steps), per member."""
        a = self.drive(rates).max(-1).values  # [K, B]
        for b in range(a.shape[1]):
            value, m = a[:, b], self.drive_median
            step = torch.exp(DRIVE_MEDIAN_STEP * torch.sign(value - m))
            self.drive_median = torch.where(value <= 0, m, torch.where(m <= 0, value, m * step))

    @torch.no_grad()
    def add_classes(self, count: int = 1, freeze_existing: bool = True) -> "CoLaNET":
        """Class-incremental learning: append ``count`` empty columns.

        With ``freeze_existing`` (default) the existing columns are frozen: examples of the new
        classes still compete with them (a new column is potentiated until it beats every old
        one by the margin) but never depress them, so what they learned is kept. Without it,
        the new classes' examples depress old prototypes that resemble them, as in joint
        training, which erodes the old classes when their own examples no longer come (see
        ``benchmarks/online.py``). `unfreeze()` reopens all columns (e.g. before a
        joint pass over old and new data)."""
        K, J, N = self.weights.shape
        extra = count * self.config.microcolumns
        self.weights = torch.cat([self.weights, torch.zeros(K, extra, N)], 1)
        self.active = torch.cat([self.active, torch.zeros(K, extra, dtype=torch.bool)], 1)
        self.frozen = torch.cat([self.frozen | freeze_existing, torch.zeros(count, dtype=torch.bool)])
        self.stream.add_classes(count)  # the base session is over: the coder's statistics stay as they are
        self.n_classes += count
        self.column = torch.arange(J + extra) // self.config.microcolumns
        return self

    def reorder_classes(self, order) -> "CoLaNET":
        """Put the columns in a new order: new column ``c`` is old column ``order[c]`` (its
        microcolumns, frozen flag and class statistics move with it)."""
        order = torch.as_tensor(np.asarray(order), dtype=torch.int64)
        if sorted(order.tolist()) != list(range(self.n_classes)):
            raise SpikebridgeError(f"reorder_classes takes a permutation of 0..{self.n_classes - 1}, not {order.tolist()}")
        M = self.config.microcolumns
        rows = (order.view(-1, 1) * M + torch.arange(M)).view(-1)
        self.weights, self.active = self.weights[:, rows].contiguous(), self.active[:, rows].contiguous()
        self.frozen = self.frozen[order]
        st = self.stream
        st.seen, st.class_mean, st.class_m2 = st.seen[order], st.class_mean[order], st.class_m2[order]
        return self

    def unfreeze(self) -> "CoLaNET":
        self.frozen = torch.zeros(self.n_classes, dtype=torch.bool)
        return self
