r"""CoLaNET: a columnar spiking classifier trained with local, dopamine-modulated plasticity.

Structure (per ensemble member ``k``; ``K`` members are simulated as one batched tensor)
-------------------------------------------------------------------------------------
* One **column** per class ``c``; each holds up to ``M`` **microcolumns**, one plastic LIF
  neuron each (``J = C * M`` neurons), a prototype of one kind of instance of the class.
  Microcolumns are *recruited* on demand (see below); unrecruited ones are silent.
* Input channels ``i`` carry rate-coded features (`coding`; by default each
  standardised feature has an ON and an OFF channel).
* Plastic synapses ``W[j, i]`` in ``[w_min, w_max]`` (signed: ``w_min = -w_max`` by default)
  from input channel ``i`` to neuron ``j``.
* A global **feedforward inhibitory** interneuron relays every input spike to every plastic
  neuron with the fixed weight ``-gamma`` (``gamma`` = mean recruited weight), so the net
  drive measures how much *more* a prototype matches than an average synapse would.
* **Lateral gating**: each spike of a plastic neuron inhibits every other plastic neuron of
  its member by ``g * theta`` on the next step (winner-take-all).
* A **target node** per class delivers the label as a spike to its own column only, as a
  dopamine (reward) signal; the **output** population counts each column's spikes.

Dynamics (discrete time, ``dt``; ``beta = exp(-dt/tau)``; input spikes ``x[t] in {0,1}^N``)::

    I_j[t] = sum_i (W[j,i] - gamma) x_i[t]  -  g * theta * (sum_{l != j} s_l[t-1])
    v_j[t] = beta * v_j[t-1] + I_j[t];  s_j[t] = [v_j[t] >= theta];  v_j[t] -= theta * s_j[t]

Decision: the column whose neurons fire most (spike counts summed over the column and over
ensemble members); ties broken by the earliest first spike, then by the highest final
membrane potential. ``theta`` is calibrated after training so that the median winning
neuron on the training set first fires at step ``first_spike_step``.

Plasticity (local; applied under ``torch.no_grad()``; ``r`` = presynaptic trace = input
spike count / ``T``, i.e. the rate; ``a_j`` = postsynaptic activity of neuron ``j``: its net
integrated input per step, ``(theta * n_j + v_j[T]) / T`` in the spiking mode and its
expected value ``(W_j - gamma) . r`` in the continuous mode; ``y`` the label)::

    j+ = argmax_{j in column y} a_j          (winning microcolumn of the target column)
    j- = argmax_{j not in column y} a_j      (strongest neuron of a wrong column)
    error = [ a_{j-} + margin * w_max * sum_i r_i  >=  a_{j+} ]
    dopamine-modulated potentiation:  W[j+, i] += s * eta_plus  * w_max * r_i * error
    anti-Hebbian depression:          W[j-, i] -= s * eta_minus * w_max * r_i * error
    bounded resources:                W <- clip(W, w_min, w_max)
    annealing:                        s = 1 - t / t_total  (t counts the presented examples)
    recruitment: if column y has no recruited microcolumn, or a wrong column won
                 (a_{j-} > a_{j+}) and column y has a free one, that free microcolumn is
                 recruited with W[j_new, :] = w_max * r instead of potentiating j+.

The continuous approximation (arXiv 2503.17111) replaces spike counts by their
expectations: ``a = (W - gamma) r`` and the decision is the column of ``argmax_j a_j``.
Both modes share one set of weights; training uses either, evaluation defaults to spiking.

Mini-batch plasticity: the updates of a batch are computed with the same weights, summed
(in float64, over the touched rows only), then applied (recruitment fills free slots in
batch order). ``batch_size=1`` is the exact online rule; larger batches are faster and were
measured to change accuracy by well under a point (see the tests). Data-parallel training
splits a batch over ranks and sums their updates before applying them (``sync``), which gives
the single-process result.

Class-incremental learning: [`add_classes()`][spikebridge.colanet.CoLaNET.add_classes] appends empty columns and freezes the
existing ones (no potentiation, depression or recruitment in a frozen column);
[`partial_fit()`][spikebridge.colanet.CoLaNET.partial_fit] then interleaves replayed prototypes of the frozen columns
(drawn from running class statistics, [`StreamStatistics`][spikebridge.streaming.StreamStatistics]) with the new examples, so that new columns are
depressed where they would answer to an old class. By default the replay is class-balanced: ``replay``
replayed examples per new example times the ratio of old to new classes, at most ``replay_cap`` times
``replay`` ([`replay_count()`][spikebridge.streaming.StreamStatistics.replay_count]), so an old class is rehearsed
about as often as a new one is learned.
"""

from .config import (CALIBRATION_WINDOW, DRIVE_MEDIAN_STEP, EXAMPLES_PER_MICROCOLUMN, MAX_MICROCOLUMNS, PRESENTATIONS,
                     REFERENCE_EPOCHS, CoLaNETConfig, adaptive_config, adaptive_epochs, schedule_rate)
from .network import NEG, CoLaNET, SpikeRecord
from .learner import CoLaNETLearner

__all__ = ["CALIBRATION_WINDOW", "DRIVE_MEDIAN_STEP", "EXAMPLES_PER_MICROCOLUMN", "MAX_MICROCOLUMNS", "NEG",
           "PRESENTATIONS", "REFERENCE_EPOCHS", "CoLaNET", "CoLaNETConfig", "CoLaNETLearner", "SpikeRecord",
           "adaptive_config", "adaptive_epochs", "schedule_rate"]
