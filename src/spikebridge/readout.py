r"""The column readout: from the spikes of a population to class scores (one place).

Each neuron ``j`` belongs to an ensemble member ``member[j]`` (``K`` members, threshold
``theta_k``) and a class column ``column[j]``. For an example and a class ``c``::

    n_c   = sum of the spike counts of the neurons of column c (over all members)
    t1_c  = earliest 1-based first-spike step of a neuron of column c (T + 1 if none fired)
    u_c   = mean over members k of  max_{j in column c of member k} v_j[T] / theta_k
            (NEG / theta_k where member k has no neuron in column c)
    score_c = n_c (T + 2) + (T + 1 - t1_c) + 0.999 (0.5 + atan(u_c) / pi)

so the prediction ``argmax_c score_c`` is lexicographic: most column spikes, then the
earliest first spike, then the highest final membrane potential; ``0.5 + atan(.)/pi`` maps
``u`` into (0, 1) without saturating, so columns that did not fire (the runners-up of
top-5) stay ranked by how close they came, also in an ensemble.

The continuous readout ([`continuous_column_scores()`][spikebridge.readout.continuous_column_scores], no spikes: CoLaNET's continuous mode
and the Akida export) ranks columns by the expected drive instead.
"""

from __future__ import annotations

import math

import torch

NEG = -1e9  # membrane potential and drive of neurons that do not exist (unrecruited, silent)

READOUT_RULE = ("prediction = argmax over classes c of: spike count of column c (all exported neurons whose "
                "'column' is c, summed over ensemble members); ties: earliest first spike of any neuron of "
                "the column (1-based step); then the highest final v/theta (max over the column within a "
                "member, averaged over members, as 0.5 + atan(.)/pi). Computed outside the NIR graph from its output spikes.")


def column_scores(counts: torch.Tensor, first: torch.Tensor, v: torch.Tensor | None, threshold: torch.Tensor,
                  member: torch.Tensor, column: torch.Tensor, n_classes: int, steps: int) -> torch.Tensor:
    """Column scores ``[B, C]`` (float64) of the rule in the module docstring.

    ``counts``, ``first`` (1-based, ``steps + 1`` if none) and ``v`` (final membrane in the
    units of ``threshold``; ``None`` leaves the last tie-break out) are ``[B, J]`` per neuron;
    ``threshold [K]``, ``member [J]`` and ``column [J]`` (int64). ``v / theta`` is computed
    in ``v``'s dtype, the rest in float64.
    """
    B, C, K = counts.shape[0], n_classes, len(threshold)
    T = float(steps)
    cols = column.view(1, -1).expand(B, -1)
    n = torch.zeros(B, C, dtype=torch.float64).index_add_(1, column, counts.double())
    t1 = torch.full((B, C), T + 1, dtype=torch.float64).scatter_reduce(1, cols, first.double(), "amin")
    score = n * (T + 2) + (T + 1 - t1)
    if v is None:
        return score
    theta = threshold.to(v.dtype)
    u = v / theta[member]
    empty = (NEG / theta).view(1, K, 1).expand(B, K, C).reshape(B, K * C)
    groups = (member * C + column).view(1, -1).expand(B, -1)
    best = empty.scatter_reduce(1, groups, u, "amax")  # [B, K*C]: best v/theta per member and column
    u = best.view(B, K, C).permute(1, 0, 2).contiguous().double().mean(0)
    return score + (0.5 + torch.atan(u) / math.pi) * 0.999


def continuous_column_scores(drive: torch.Tensor, threshold: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Continuous column scores ``[B, C]`` from the drive per step ``[K, B, J]`` (``K`` members,
    neuron ``j`` in column ``j // (J / C)``, unrecruited neurons at ``NEG``) and ``threshold [K]``::

        score_c = sum_k [max(0, u_kc) + 1e-6 theta_k u_kc],   u_kc = max_{j in column c of member k} drive_j / theta_k

    i.e. expected spike counts per step summed over members; the ``1e-6`` term ranks columns
    that would stay silent by how close they came. Computed in ``drive``'s dtype."""
    K, B = drive.shape[:2]
    best = drive.reshape(K, B, n_classes, -1).max(-1).values  # [K, B, C]: theta_k u_kc
    return (best.clamp_min(0) / threshold.view(-1, 1, 1) + 1e-6 * best).sum(0)
