r"""What an online learner keeps instead of examples: running statistics of a stream.

[`StreamStatistics`][spikebridge.streaming.StreamStatistics] is shared by the float CoLaNET ([`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit])
and the integer one ([`partial_fit()`][spikebridge.deploy.integer_learning.IntegerCoLaNET.partial_fit]).
The host (which turns features into spikes) keeps the coder's statistics and each class's
feature statistics; each column counts the dopamine (label) spikes it received.

* **coder**: running (Welford) mean and variance of every feature, from which the ON/OFF coder
  is rebuilt after each call ([`RateNormaliser()`][spikebridge.coding.RateNormaliser]), until
  `freeze_coder()` (the end of the base session: `add_classes()` calls it)::

      n <- n + B;  mean <- mean + (xbar - mean) B / n;  M2 <- M2 + sum (x - xbar)^2 + (xbar - mean)^2 n_old B / n

* **classes**: per class ``c`` the count ``n_c`` and the feature mean ``mu_c`` and squared
  deviations ``M2_c`` (Welford, one example at a time), ``sd_c = sqrt(M2_c / (n_c - 1))``.
* **per-column learning rate** (a single pass anneals per class, whatever the stream's length)::

      s_c = boost * h / (h + n_c)

* **microcolumns a column may recruit**: ``clip(round(n_c / per_microcolumn), 1, M)``.
* **shared within-class covariance, low rank** (``rank > 0``): the scatter ``S = U diag(s) U^T``
  of the residuals of every example from its class mean, kept to its ``rank`` largest
  directions by an incremental eigen-update (Brand 2002) of each batch of Welford residuals
  ``e = sqrt((n_c - 1) / n_c) (x - mu_c_old)`` (their outer products sum to ``sum_c M2_c``)::

      P = E U;  Q R = qr(E^T - U P^T);  M = diag(s, 0) + [P^T; R] [P^T; R]^T;  M = V diag(s') V^T
      U <- [U, Q] V[:, :rank];  s <- s'[:rank]

* **how many replays** interleave with ``B`` new examples (``replay`` per example): class-balanced,
  ``min(cap * replay * B, round(replay * B * old / new))`` with ``old`` the frozen classes that can
  be replayed and ``new`` the other classes seen so far, so each old class is rehearsed about as
  often as each new one is learned; unbalanced, ``replay * B``.
* **replay** of a frozen class ``c``: ``mu_c + noise * (sd_c / sd) * e`` with ``sd`` the pooled
  within-class standard deviation of each feature and ``e ~ N(0, L + diag(sd^2 - diag L))``,
  ``L = U diag(s) U^T / sum_c (n_c - 1)``: the class's own variances on the diagonal and the
  correlations the classes share (``rank = 0``: ``e = sd * z``, independent features).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .coding import RateNormaliser
from .errors import SpikebridgeError


class StreamStatistics:
    """Running statistics of a stream of ``n_inputs``-feature examples of ``n_classes`` classes
    (equations in the module docstring).

    Parameters
    ----------
    n_inputs : int
        Features per example.
    n_classes : int
        Classes (`add_classes` appends more).
    rank : int
        Directions of the shared within-class scatter kept for replay (0: independent features).
    """

    def __init__(self, n_inputs: int, n_classes: int, rank: int = 0):
        self.n_inputs, self.rank = n_inputs, rank
        self.basis = torch.zeros(n_inputs, 0)  # U [D, <= rank]: directions of the within-class scatter
        self.spread = torch.zeros(0)  # s [<= rank]: the scatter along each of them
        self.seen = torch.zeros(n_classes, dtype=torch.int64)
        self.class_mean = torch.zeros(n_classes, n_inputs)
        self.class_m2 = torch.zeros(n_classes, n_inputs)
        self.coder: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (n, mean, M2) while the coder learns
        self.mean_rate: torch.Tensor | None = None  # running mean rate per input channel
        self.rates_seen = 0

    @property
    def n_classes(self) -> int:
        return len(self.seen)

    # -------------------------------------------------------------- coder
    def update_coder(self, features: torch.Tensor, saturation: float) -> RateNormaliser:
        """Add ``features [B, D]`` to the running statistics; the ON/OFF coder they give."""
        x = features.double()
        n0, mean0, m2 = self.coder if self.coder is not None else (
            0, torch.zeros(x.shape[1], dtype=torch.float64), torch.zeros(x.shape[1], dtype=torch.float64))
        n1, xbar = n0 + len(x), x.mean(0)
        delta = xbar - mean0
        mean1 = mean0 + delta * len(x) / n1
        m2 = m2 + ((x - xbar) ** 2).sum(0) + delta**2 * n0 * len(x) / n1
        self.coder = (n1, mean1, m2)
        std = (m2 / (n1 - 1)).sqrt() if n1 > 1 else torch.zeros_like(mean1)
        gain = 1.0 / (saturation * std.float().clamp_min(1e-6))
        return RateNormaliser(torch.arange(x.shape[1]).repeat(2), mean1.float().repeat(2), torch.cat([gain, -gain]),
                              "onoff", saturation)

    @property
    def coder_learning(self) -> bool:
        return self.coder is not None

    def freeze_coder(self) -> None:
        self.coder = None

    # -------------------------------------------------------------- classes
    def observe(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Per-class Welford updates, one example at a time, in order (and the low-rank scatter)."""
        residuals = []
        for c, x in zip(labels.tolist(), features):
            self.seen[c] += 1
            delta = x - self.class_mean[c]
            self.class_mean[c] += delta / float(self.seen[c])
            self.class_m2[c] += delta * (x - self.class_mean[c])
            residuals.append(delta * math.sqrt((int(self.seen[c]) - 1) / int(self.seen[c])))
        if self.rank and residuals:
            self.update_scatter(torch.stack(residuals))

    def update_scatter(self, residuals: torch.Tensor) -> None:
        """Add ``E^T E`` (``residuals E [B, D]``) to the low-rank scatter (module docstring)."""
        e = residuals.double()
        u, s = self.basis.double(), self.spread.double()
        p = e @ u  # [B, r]
        q, r = torch.linalg.qr((e - p @ u.T).T)  # [D, B], [B, B]
        g = torch.cat([p.T, r])  # [r + B, B]
        m = torch.block_diag(torch.diag(s), torch.zeros(len(r), len(r), dtype=torch.float64)) + g @ g.T
        values, vectors = torch.linalg.eigh(m)  # ascending
        keep = min(self.rank, int((values > 1e-9 * values[-1].clamp_min(1e-30)).sum()))
        top = vectors[:, -keep:].flip(1) if keep else vectors[:, :0]
        self.basis = (torch.cat([u, q], 1) @ top).float()
        self.spread = values[-keep:].flip(0).float() if keep else torch.zeros(0)

    def set_from_training(self, features, labels) -> None:
        """Counts, means and squared deviations of a whole training set (offline training)."""
        x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
        y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.seen = torch.bincount(y, minlength=self.n_classes)
        mean = torch.zeros(self.n_classes, x.shape[1], dtype=torch.float64).index_add_(0, y, x)
        mean /= self.seen.clamp_min(1).unsqueeze(1).double()
        self.class_mean = mean.float()
        self.class_m2 = torch.zeros_like(mean).index_add_(0, y, (x - mean[y]) ** 2).float()
        if self.rank:
            values, vectors = torch.linalg.eigh((x - mean[y]).T @ (x - mean[y]))  # the scatter, exactly
            keep = min(self.rank, len(values))
            self.basis, self.spread = vectors[:, -keep:].flip(1).float(), values[-keep:].flip(0).clamp_min(0).float()

    def add_classes(self, count: int) -> None:
        """Room for ``count`` new classes; the coder's statistics stop here (end of the base session)."""
        self.seen = torch.cat([self.seen, torch.zeros(count, dtype=torch.int64)])
        self.class_mean = torch.cat([self.class_mean, torch.zeros(count, self.n_inputs)])
        self.class_m2 = torch.cat([self.class_m2, torch.zeros(count, self.n_inputs)])
        self.freeze_coder()

    def observe_rates(self, rates: torch.Tensor) -> torch.Tensor:
        """Add ``rates [B, N]`` to the running mean rate of every input channel (the presynaptic
        average of the covariance form of the rule) and return it, ``[N]``."""
        if self.mean_rate is None:
            self.mean_rate, self.rates_seen = torch.zeros(rates.shape[1]), 0
        for r in rates:
            self.rates_seen += 1
            self.mean_rate += (r - self.mean_rate) / self.rates_seen
        return self.mean_rate

    def column_rate(self, boost: float, halflife: float) -> torch.Tensor:
        """``s_c = boost * h / (h + n_c)`` of every column, ``[C]`` (float64)."""
        return boost * halflife / (halflife + self.seen.double())

    def slots(self, per_microcolumn: int, microcolumns: int) -> torch.Tensor:
        """Microcolumns each column may recruit: ``clip(round(n_c / per_microcolumn), 1, M)``, ``[C]``."""
        return (self.seen.double() / per_microcolumn).round().clamp(1, microcolumns).long()

    def replay_count(self, n: int, pool: torch.Tensor, cap: int | None) -> int:
        """Replayed examples to interleave with new ones for which the unbalanced rule gives ``n``:
        ``min(cap * n, round(n * old / new))`` (module docstring; ``old``: classes in ``pool`` with at
        least 2 examples, ``new``: the other classes seen, at least 1), or ``n`` when ``cap`` is None."""
        if cap is None:
            return n
        old = int((pool & (self.seen > 1)).sum())
        new = max(1, int((~pool & (self.seen > 0)).sum()))
        return int(min(cap * n, round(n * old / new)))

    def replay(self, n: int, pool: torch.Tensor, noise: float, generator: torch.Generator,
               members: int = 1) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``n`` replayed feature vectors per member of the classes in ``pool [C]`` (bool) that
        have at least 2 examples: ``(features [K, n, D], labels [K, n])``, or ``None``."""
        pool = (pool & (self.seen > 1)).double()
        if n <= 0 or not bool(pool.any()):
            return None
        pick = torch.multinomial(pool.expand(members, -1), n, replacement=True, generator=generator)  # [K, n]
        sd = (self.class_m2 / (self.seen - 1).clamp_min(1).unsqueeze(1)).sqrt()
        z = torch.randn(members, n, self.n_inputs, generator=generator)
        if not len(self.spread):  # independent features
            return self.class_mean[pick] + noise * sd[pick] * z, pick
        dof = float((self.seen - 1).clamp_min(0).sum().clamp_min(1))
        pooled_var = self.class_m2.sum(0) / dof
        low = self.basis * (self.spread / dof).sqrt()  # L = low low^T
        rest = (pooled_var - (low**2).sum(1)).clamp_min(0).sqrt()
        e = torch.randn(members, n, len(self.spread), generator=generator) @ low.T + rest * z
        scale = sd / pooled_var.sqrt().clamp_min(1e-12)
        return self.class_mean[pick] + noise * scale[pick] * e, pick

    # -------------------------------------------------------------- persistence
    def state_values(self) -> int:
        """Numbers held: per class a count, a mean and a variance; the coder's while it learns."""
        return (self.n_classes * (2 * self.n_inputs + 1) + (2 * self.n_inputs + 1 if self.coder_learning else 0)
                + (len(self.mean_rate) + 1 if self.mean_rate is not None else 0) + self.basis.numel() + len(self.spread))

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"seen": self.seen, "class_mean": self.class_mean.contiguous(), "class_m2": self.class_m2.contiguous()}
        if len(self.spread):
            out.update(scatter_basis=self.basis.contiguous(), scatter_spread=self.spread)
        if self.coder is not None:
            out.update(coder_count=torch.tensor([self.coder[0]]), coder_mean=self.coder[1], coder_m2=self.coder[2])
        if self.mean_rate is not None:
            out.update(mean_rate=self.mean_rate, rates_seen=torch.tensor([self.rates_seen]))
        return out

    def load_tensors(self, tensors: dict) -> None:
        """The state `tensors()` wrote."""
        if len(tensors["seen"]) != self.n_classes:
            raise SpikebridgeError(f"stream statistics for {len(tensors['seen'])} classes, model has {self.n_classes}")
        self.seen, self.class_mean, self.class_m2 = (tensors[k].clone() for k in ("seen", "class_mean", "class_m2"))
        if "scatter_basis" in tensors:
            self.basis, self.spread = tensors["scatter_basis"].clone(), tensors["scatter_spread"].clone()
        if "coder_count" in tensors:
            self.coder = (int(tensors["coder_count"][0]), tensors["coder_mean"].clone(), tensors["coder_m2"].clone())
        if "mean_rate" in tensors:
            self.mean_rate, self.rates_seen = tensors["mean_rate"].clone(), int(tensors["rates_seen"][0])
