"""CoLaNET's plasticity: one mini-batch of the dopamine-modulated rule (winners, error,
recruitment, summed updates, bounds), mixed into [`CoLaNET`][spikebridge.colanet.CoLaNET]; the
equations are in the [`colanet`][spikebridge.colanet] package docstring."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..neurons import single_threaded
from ..readout import NEG

if TYPE_CHECKING:
    from ..distributed import PlasticitySync


class Plasticity:
    """The learning rule of [`CoLaNET`][spikebridge.colanet.CoLaNET] (a mixin: it uses the
    network's weights, recruitment flags, columns and [`drive()`][spikebridge.colanet.CoLaNET.drive])."""

    @torch.no_grad()
    def learn(self, rates: torch.Tensor, labels: torch.Tensor, activity: torch.Tensor | None = None,
              mask: torch.Tensor | None = None, sync: "PlasticitySync | None" = None, rate: float = 1.0,
              column_rate: torch.Tensor | None = None, slots: torch.Tensor | None = None,
              centre: torch.Tensor | None = None) -> int:
        """Apply one mini-batch of plasticity.

        ``rates [K, B, N]`` (or ``[B, N]``, shared by all members) are the presynaptic traces,
        ``labels [K, B]`` (or ``[B]``) the dopamine target columns, ``activity [K, B, J]`` the
        postsynaptic activity (defaults to the continuous approximation), ``mask [K, B]``
        which members learn which examples (online bagging). With ``sync`` (data-parallel
        training, `distributed`) the arguments are this rank's slice of the
        global batch and the updates of all ranks are summed before they are applied.
        Returns the number of (member, example) pairs that triggered plasticity (all ranks).
        ``column_rate [C]`` multiplies the rate of every update by that of the column it
        changes, and ``slots [C]`` caps the microcolumns each column may recruit (both from
        [`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit]'s per-column counts). ``centre [N]`` turns the updates and the
        recruited prototypes into the covariance form of the rule: the presynaptic term is
        ``r - centre`` (the channel's mean rate) instead of ``r``.

        Updates are summed in float64 over the rows they touch, then added to the float32
        weights and clipped, so the result does not depend on how a batch is split or summed.
        """
        cfg = self.config
        K, J, N = self.weights.shape
        r = rates if rates.dim() == 3 else rates.unsqueeze(0).expand(K, -1, -1)
        y = labels if labels.dim() == 2 else labels.unsqueeze(0).expand(K, -1)
        with single_threaded():  # ~1e5 element-wise values: threads cost more than they save
            a = self.drive(r) if activity is None else activity.masked_fill(~self.active.unsqueeze(1), NEG)
            in_target = self.column.view(1, 1, J) == y.unsqueeze(-1)  # [K, B, J]
            v_plus, j_plus = a.masked_fill(~in_target, NEG).max(-1)
            v_minus, j_minus = a.masked_fill(in_target, NEG).max(-1)
            has_target = v_plus > NEG / 2
            has_wrong = v_minus > NEG / 2
            scale = cfg.margin * cfg.w_max * r.sum(-1)
            error = ~has_target | (has_wrong & (v_minus + scale >= v_plus))
            misclassified = ~has_target | (has_wrong & (v_minus > v_plus))
            if mask is not None:
                error, misclassified = error & mask, misclassified & mask
            u = r if centre is None else r - centre  # the presynaptic term of the updates
            recruited = self._recruit(u, y, misclassified, sync, slots)
            potentiate = error & ~recruited & has_target & ~self.frozen[self.column[j_plus]]
            depress = error & has_wrong & ~self.frozen[self.column[j_minus]]
            offsets = (torch.arange(K) * J).view(K, 1)
            rows = torch.cat([(j_plus + offsets)[potentiate], (j_minus + offsets)[depress]])
            if column_rate is None:
                values = torch.cat([rate * cfg.eta_plus * cfg.w_max * u[potentiate],
                                    -rate * cfg.eta_minus * cfg.w_max * u[depress]]).double()
            else:  # each update scaled by the factor of the column it changes (float64, [K, B])
                s_plus = rate * cfg.eta_plus * cfg.w_max * column_rate.double()[self.column[j_plus]]
                s_minus = rate * cfg.eta_minus * cfg.w_max * column_rate.double()[self.column[j_minus]]
                values = torch.cat([s_plus[potentiate].unsqueeze(-1) * u[potentiate].double(),
                                    -s_minus[depress].unsqueeze(-1) * u[depress].double()])
            self._apply_rows(rows, values, sync)
            self._update_gamma()
        n_events = torch.tensor([int(error.sum())])
        return int(sync.all_reduce_sum(n_events)) if sync is not None else int(n_events)

    def _recruit(self, r: torch.Tensor, y: torch.Tensor, misclassified: torch.Tensor, sync,
                 slots: torch.Tensor | None = None) -> torch.Tensor:
        """Fill free microcolumns of the target columns of misclassified examples, in global
        batch order: ``W[j_new] = w_max * r``. Returns which local (member, example) recruited."""
        cfg = self.config
        K, J, N = self.weights.shape
        B = r.shape[1]
        recruited = torch.zeros(K, B, dtype=torch.bool)
        wanted = torch.where(misclassified & ~self.frozen[y], y, -1)  # target column of misclassified examples
        offset = 0
        if sync is not None:
            wanted, offset = sync.gather_batch(wanted)
        plan = []
        for k, b in (wanted >= 0).nonzero().tolist():
            c = int(wanted[k, b])
            allowed = cfg.microcolumns if slots is None else int(slots[c])
            free = (~self.active[k, c * cfg.microcolumns : c * cfg.microcolumns + allowed]).nonzero()
            if len(free):
                j = c * cfg.microcolumns + int(free[0])
                self.active[k, j] = True
                plan.append((k, b, j))
        if not plan:
            return recruited
        ks, bs, js = (torch.tensor(v) for v in zip(*plan))
        mine = (bs >= offset) & (bs < offset + B)
        prototypes = torch.zeros(len(plan), N)
        prototypes[mine] = r[ks[mine], bs[mine] - offset]
        if sync is not None:  # each row comes from exactly one rank; the others add zeros
            sync.all_reduce_sum(prototypes)
        self.weights.view(K * J, N)[ks * J + js] = cfg.w_max * prototypes
        recruited[ks[mine], bs[mine] - offset] = True
        return recruited

    def _apply_rows(self, rows: torch.Tensor, values: torch.Tensor, sync) -> None:
        """``W[rows] += values`` (duplicates summed), then clip, touching only changed rows."""
        K, J, N = self.weights.shape
        if sync is not None:  # agree on the union of touched rows, then sum the updates over ranks
            touched = torch.zeros(K * J, dtype=torch.int64)
            touched[rows] = 1
            rows_all = sync.all_reduce_sum(touched).nonzero().squeeze(1)
            position = torch.empty(K * J, dtype=torch.int64)
            position[rows_all] = torch.arange(len(rows_all))
            delta = torch.zeros(len(rows_all), N, dtype=torch.float64).index_add_(0, position[rows], values)
            sync.all_reduce_sum(delta)
            rows = rows_all
        else:
            rows, inverse = torch.unique(rows, return_inverse=True)
            delta = torch.zeros(len(rows), N, dtype=torch.float64).index_add_(0, inverse, values)
        if len(rows) == 0:
            return
        flat_w = self.weights.view(K * J, N)
        flat_w[rows] = (flat_w[rows].double() + delta).clamp_(self.config.w_min, self.config.w_max).float()

    def _update_gamma(self) -> None:
        counts = self.active.sum(-1).clamp_min(1)
        self.gamma = (self.weights * self.active.unsqueeze(-1)).sum(dim=(1, 2)) / (counts * self.n_channels)
