r"""Does a trained CoLaNET fit a neuromorphic chip? Documented limits and core counts.

[`fit_report()`][spikebridge.deploy.hardware.fit_report] answers, one line per chip or toolchain, whether the exported network
(``N`` input channels, ``J'`` recruited LIF neurons in ``K`` members, lateral inhibition within
a member, 8-bit weights of the int8 model) maps onto it as exported, how many cores it needs,
and what would have to change; [`fit_all()`][spikebridge.deploy.hardware.fit_all] gives the same as data. The figures are the
vendors' and papers' published ones ([`CHIPS`][spikebridge.deploy.hardware.CHIPS], each with its source); where a figure is
not published it is marked as derived or uncertain rather than invented.

Limits (``ChipLimits``; sources in each entry's ``source``)
-----------------------------------------------------------
=================  =====  ==================  ========================  ==========  ================
chip               cores  neurons / core      fan-in / inputs           weights     recurrence
=================  =====  ==================  ========================  ==========  ================
Speck (DYNAP-CNN)  9      kernel / neuron     layer input channels      8-bit       no (acyclic
                          memory per core     bounded by kernel memory  signed      layer graph)
Xylo Audio 2       1      1000 hidden, 8 out  16 input channels         8-bit       hidden only
Xylo IMU           1      496 hidden, 16 out  16 input channels, 128    8-bit       hidden only
                                              input-expansion neurons
Loihi 2            128    8192                synaptic memory per core  1-8 bit     yes
TrueNorth          4096   256                 256 axons per core        4 levels    via axons
                                                                        per neuron
=================  =====  ==================  ========================  ==========  ================

Mapping rules (the equations of the core counts)
------------------------------------------------
* **Speck** (DYNAP-CNN cores; sinabs' memory model, ``DynapcnnLayer.memory_summary``): a fully
  connected layer is a convolution of ``c = N`` input channels with a 1x1 kernel onto
  ``f`` output channels at 1x1, which needs kernel memory ``c * 2^(ceil(log2(kx*ky)) + ceil(log2 f))
  = N * 2^ceil(log2 f)`` and neuron memory ``f * 2^(ceil(log2 h) + ceil(log2 w)) = f`` words; core
  ``i`` holds it when both fit its kernel / neuron memory. Split over cores by neurons (every core
  sees all ``N`` inputs, the host sending each input event to every core used), a core of
  kernel memory ``K_i`` holds ``f_i = 2^floor(log2(K_i / N))`` neurons; the cores needed are the
  fewest, largest first, whose ``f_i`` add up to ``J'``.
* **Xylo** (the Xylo mapper's design rules in Rockpool): at most 16 input channels, the hidden
  and output neuron counts above, the readout a separate non-recurrent output layer (one
  neuron per class), at least two neuron layers.
* **Loihi 2**: every synapse lives in its target neuron's core, so neurons are split over
  cores: ``cores = max(ceil(J' / 8192), ceil(bits * (N J' + L) / S_core))`` with ``L = sum_k
  J_k (J_k - 1)`` lateral synapses and ``S_core`` the synaptic bits per core; one neuron's
  fan-in must fit a core (``bits * N <= S_core``).
* **TrueNorth** (a core: 256 axons x 256 neurons, binary crossbar; each axon has one of 4
  types, each neuron one signed weight per type; each neuron sends its spike to one axon).
  With ``c`` copies of every input, each on its own axon type (``c`` non-zero weight levels per
  neuron; ``c = 4`` by default), the inputs are split into ``S = ceil(c N / 256)`` slices.
  ``S = 1``: the neurons sit on the input core(s), ``ceil(J_k / 256)`` per member, needing
  ``c N + J_k [lateral]`` axons. ``S > 1``: every slice computes partial neurons
  (``S * ceil(J' / 256)`` cores) whose spikes a merge layer adds: a merge core hosts
  ``n = floor((256 - J_k [lateral]) / S)`` neurons of a member (``S`` partial axons each plus one
  lateral axon per neuron of the member), ``ceil(J_k / n)`` cores per member. With lateral
  inhibition each neuron's spike must reach the ``m_k`` cores of its member and the output, so
  ``J_k (m_k + 1)`` splitter neurons (``ceil(J_k (m_k + 1) / 256)`` cores) copy it.
  Partial sums carried by spikes, ``c`` weight levels and TrueNorth's linear leak change the
  computation: the count says what the chip would hold, not that it reproduces our decisions
  (``benchmarks/truenorth_mapping.py`` simulates each change: benchmarks/results/truenorth.json).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from ..errors import SpikebridgeError

__all__ = ["CHIPS", "ChipLimits", "Fit", "ModelShape", "fit_all", "fit_report", "model_shape", "speck_layer_memory",
           "truenorth_cores"]

KI = 1024


@dataclass(frozen=True)
class ChipLimits:
    """Published limits of one chip (``None``: not limited or not published; see ``uncertain``)."""

    name: str
    toolchain: str
    cores: int
    neurons_per_core: int | None
    weight_bits: int | None
    recurrence: str  # where recurrent connections are allowed: "yes", "hidden layer only", "no"
    neuron_model: str
    source: str
    input_channels: int | None = None  # chip input channels
    hidden_neurons: int | None = None
    output_neurons: int | None = None
    axons_per_core: int | None = None
    weight_levels: int | None = None  # distinct non-zero weights per neuron (TrueNorth: 4 axon types)
    synapse_bits_per_core: int | None = None
    input_expansion_neurons: int | None = None  # hidden neurons that may receive input (Xylo IMU)
    kernel_memory: tuple = ()  # Speck: words per core
    neuron_memory: tuple = ()
    max_output_features: int | None = None
    uncertain: str = ""


CHIPS: dict[str, ChipLimits] = {
    "speck": ChipLimits(
        name="Speck (DYNAP-CNN)", toolchain="Sinabs", cores=9, neurons_per_core=None, weight_bits=8,
        recurrence="no", neuron_model="integrate-and-fire (no multiplicative leak), 16-bit membrane",
        kernel_memory=(16 * KI, 16 * KI, 16 * KI, 32 * KI, 32 * KI, 64 * KI, 64 * KI, 16 * KI, 16 * KI),
        neuron_memory=(64 * KI, 64 * KI, 64 * KI, 32 * KI, 32 * KI, 16 * KI, 16 * KI, 16 * KI, 16 * KI),
        max_output_features=1024,
        source="sinabs 3.1.3 (SynSense): backend/dynapcnn/chips/dynapcnn.py (kernel and neuron memory of the 9 "
               "cores), discretize.py (8-bit weights), validate_memory_speck.py (memory formulas, at most 1024 "
               "output features and 16x16 kernels per layer), dynapcnn_layer.py (IAF layers only), utils.py "
               "(a cyclic layer graph is rejected)",
        uncertain="whether the host may send one input event to several cores (assumed for a split by neurons)"),
    "xylo_audio2": ChipLimits(
        name="Xylo Audio 2 (SYNS61201)", toolchain="Rockpool", cores=1, neurons_per_core=None, weight_bits=8,
        recurrence="hidden layer only", neuron_model="LIF with bit-shift decay 1 - 2^-dash, 2 synapses per neuron",
        input_channels=16, hidden_neurons=1000, output_neurons=8,
        source="rockpool 3.1.0 (SynSense): devices/xylo/syns61201/xylo_mapper.py (design rules: <= 16 inputs, "
               "<= 8 outputs, non-recurrent output layer, at least two neuron layers; mapper defaults 1000 hidden, "
               "8 output neurons), xylo_samna.py (int8 weights)"),
    "xylo_imu": ChipLimits(
        name="Xylo IMU (SYNS63300)", toolchain="Rockpool", cores=1, neurons_per_core=None, weight_bits=8,
        recurrence="hidden layer only", neuron_model="LIF with bit-shift decay 1 - 2^-dash, 1 synapse per neuron",
        input_channels=16, hidden_neurons=496, output_neurons=16, input_expansion_neurons=128,
        source="rockpool 3.1.0 (SynSense): devices/xylo/syns63300/xylo_mapper.py (design rules, 496 hidden and 16 "
               "output neurons, 1 synapse per neuron), xylo_samna.py (at most 128 input- and 128 output-expansion "
               "neurons, int8 weights)"),
    "loihi2": ChipLimits(
        name="Loihi 2", toolchain="Lava", cores=128, neurons_per_core=8192, weight_bits=8, recurrence="yes",
        neuron_model="programmable (our LIF, subtractive reset and 12-bit decay as in the int8 model)",
        synapse_bits_per_core=120_000_000 // 128,
        source="Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2' (technology brief, "
               "2021): 128 neuromorphic cores, up to 1M neurons (8192 per core) and 120M synapses per chip, "
               "synaptic weights of 1 to 8 bits",
        uncertain="synaptic memory per core is derived, not published: 120M synapses / 128 cores, taken as 1-bit "
                  "synapses (937,500 bits per core); fan-in per core not published"),
    "truenorth": ChipLimits(
        name="TrueNorth", toolchain="IBM Corelet", cores=4096, neurons_per_core=256, weight_bits=None,
        recurrence="yes", neuron_model="integrate-and-fire with linear (subtractive) leak, one target axon per neuron",
        axons_per_core=256, weight_levels=4,
        source="Merolla et al., Science 345:668 (2014): 4096 cores of 256 axons x 256 neurons, binary synapse "
               "crossbar; each axon one of 4 types, each neuron one signed integer weight per type (Cassidy et al., "
               "IJCNN 2013); each neuron's spike goes to one axon",
        uncertain="the bit width of the 4 per-neuron weights (9-bit signed in Cassidy et al. 2013) is not used here"),
}


@dataclass(frozen=True)
class ModelShape:
    """What the limits are checked against: ``inputs`` channels, recruited neurons per member,
    classes, weight bits and whether lateral inhibition is exported (a recurrent edge)."""

    inputs: int
    members: tuple  # J_k: recruited neurons of member k
    classes: int
    weight_bits: int = 8
    lateral: bool = True

    @property
    def neurons(self) -> int:
        return int(sum(self.members))

    @property
    def synapses(self) -> int:
        """Feed-forward synapses ``N J'`` plus lateral ones ``sum_k J_k (J_k - 1)``."""
        return self.inputs * self.neurons + (sum(j * (j - 1) for j in self.members) if self.lateral else 0)


@dataclass
class Fit:
    """Whether a `ModelShape` maps onto a chip as exported, and at what cost otherwise."""

    chip: str
    fits: bool  # maps as exported (structure, counts and weight bits), one chip
    cores: int | None  # cores the (possibly restructured) network needs; None where it cannot be mapped
    available: int
    reasons: list = field(default_factory=list)  # why it does not fit as exported
    changes: list = field(default_factory=list)  # what would have to change (and what that changes)
    notes: list = field(default_factory=list)  # assumptions behind a fit
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        limits = CHIPS[self.chip]
        head = f"{limits.name} [{limits.toolchain}]: "
        cores = f"{self.cores} of {self.available} core{'s' if self.available > 1 else ''}" if self.cores else None
        if self.fits:
            return head + f"fits ({cores})" + (f"; {'; '.join(self.notes)}" if self.notes else "")
        text = head + "does not fit as exported: " + "; ".join(self.reasons)
        if self.changes:
            text += ". To fit: " + "; ".join(self.changes) + (f" ({cores})" if cores else "")
        return text + (f" ({'; '.join(self.notes)})" if self.notes else "")


def model_shape(model_or_network, lateral: bool | None = None) -> ModelShape:
    """`ModelShape` of a [`CoLaNET`][spikebridge.colanet.CoLaNET], an exported
    [`Network`][spikebridge.deploy.network.Network], an `Int8CoLaNET` or a
    `ModelShape` (returned as is). Weights are counted at the int8 model's 8 bits."""
    from ..colanet import CoLaNET
    from .fixed_point import WEIGHT_BITS, Int8CoLaNET
    from .network import Network, network_of

    x = model_or_network
    if isinstance(x, ModelShape):
        return x
    g = None
    if isinstance(x, CoLaNET):
        g = x.config.lateral_inhibition
        x = network_of(x)
    if isinstance(x, Int8CoLaNET):
        net = x.network()
    elif isinstance(x, Network):
        net = x
    else:
        raise SpikebridgeError(f"fit_report takes a CoLaNET, an exported Network or an Int8CoLaNET, not "
                               f"{type(x).__name__}")
    members = tuple(int(c) for c in torch.bincount(net.member, minlength=len(net.threshold)).tolist())
    if lateral is None:
        lateral = bool((net.lateral != 0).any()) if g is None else g != 0
    lateral = lateral and max(members) > 1
    return ModelShape(int(net.weights.shape[1]), members, int(net.n_classes), WEIGHT_BITS, lateral)


# --------------------------------------------------------------------------- per chip
def speck_layer_memory(inputs: int, outputs: int, kernel=(1, 1), out_size=(1, 1)) -> tuple[int, int]:
    """(kernel, neuron) memory words of one DYNAP-CNN layer (module docstring): a fully
    connected layer is ``kernel = (1, 1)`` and ``out_size = (1, 1)``."""
    log2 = lambda v: math.ceil(math.log2(v)) if v > 1 else 0  # noqa: E731
    kernel_words = inputs * 2 ** (log2(kernel[0] * kernel[1]) + log2(outputs))
    neuron_words = outputs * 2 ** (log2(out_size[0]) + log2(out_size[1]))
    return kernel_words, neuron_words


def _speck(s: ModelShape) -> Fit:
    c = CHIPS["speck"]
    kernel, neurons = speck_layer_memory(s.inputs, s.neurons)
    whole = [i for i in range(c.cores) if kernel <= c.kernel_memory[i] and neurons <= c.neuron_memory[i]]
    fit = Fit("speck", False, None, c.cores, detail={"kernel_memory_words": kernel, "neuron_memory_words": neurons})
    if s.neurons > c.max_output_features:
        fit.reasons.append(f"{s.neurons} neurons > {c.max_output_features} output features per layer")
    if not whole:
        fit.reasons.append(f"kernel memory {s.inputs} x 2^{int(math.log2(kernel // s.inputs))} = {kernel / KI:g} Ki "
                           f"words > {max(c.kernel_memory) // KI} Ki on the largest core")
    if s.lateral:
        fit.reasons.append("lateral inhibition is a recurrent edge (the DYNAP-CNN layer graph must be acyclic)")
    fit.reasons.append("IAF neurons: no multiplicative leak (beta -> 1)")
    # split by neurons: core i holds 2^floor(log2(K_i / N)) neurons that see all N inputs
    per_core = sorted((2 ** math.floor(math.log2(k / s.inputs)) if k >= s.inputs else 0 for k in c.kernel_memory),
                      reverse=True)
    per_core = [min(f, c.max_output_features) for f in per_core]
    total, used = 0, 0
    for f in per_core:
        if total >= s.neurons or f == 0:
            break
        total, used = total + f, used + 1
    fit.detail["neurons_per_core_split"] = per_core
    fit.cores = 1 if whole else (used if total >= s.neurons else None)
    if whole:
        fit.changes.append("one core holds the layer")
    elif fit.cores:
        fit.changes.append(f"split the {s.neurons} neurons over {fit.cores} cores (at most {per_core[0]} per core, "
                           f"each input event sent to every core)")
    else:
        fit.changes.append(f"fewer inputs or neurons: the 9 cores hold {total} neurons of {s.inputs} inputs")
    if s.lateral:
        fit.changes.append("lateral inhibition dropped or made feed-forward (agreement measured in "
                           "benchmarks/nir_consumers.py)")
    fit.changes.append("beta -> 1 (integrate-and-fire)")
    return fit


def _xylo(key: str, s: ModelShape) -> Fit:
    c = CHIPS[key]
    fit = Fit(key, False, None, 1)
    if s.inputs > c.input_channels:
        fit.reasons.append(f"{s.inputs} input channels > {c.input_channels}")
    if c.input_expansion_neurons and s.neurons > c.input_expansion_neurons:
        fit.reasons.append(f"{s.neurons} neurons receive input > {c.input_expansion_neurons} input-expansion neurons")
    if s.neurons > c.hidden_neurons:
        fit.reasons.append(f"{s.neurons} neurons > {c.hidden_neurons} hidden neurons")
    if s.classes > c.output_neurons:
        fit.reasons.append(f"{s.classes} classes > {c.output_neurons} output neurons (the readout must be an output "
                           f"layer)")
    fit.reasons.append("the exported graph has one neuron layer, Xylo needs a hidden and an output layer")
    fit.fits = False
    fit.changes.append(f"at most {c.input_channels} input channels (e.g. {c.input_channels // 2} features as ON/OFF "
                       f"pairs instead of {s.inputs})")
    fit.changes.append(f"an output layer of one neuron per class (<= {c.output_neurons}) fed by the columns")
    fit.changes.append("beta to a bit-shift decay 1 - 2^-dash")
    if s.neurons <= c.hidden_neurons and (not c.input_expansion_neurons or s.neurons <= c.input_expansion_neurons):
        fit.notes.append(f"the {s.neurons} neurons fit its {c.hidden_neurons} hidden neurons")
    return fit


def _loihi2(s: ModelShape) -> Fit:
    c = CHIPS["loihi2"]
    bits = s.weight_bits
    fit = Fit("loihi2", True, None, c.cores)
    syn_bits = bits * s.synapses
    by_neurons = math.ceil(s.neurons / c.neurons_per_core)
    by_synapses = math.ceil(syn_bits / c.synapse_bits_per_core)
    fit.cores = max(by_neurons, by_synapses)
    fit.detail = {"synapses": s.synapses, "synapse_bits": syn_bits, "cores_by_neurons": by_neurons,
                  "cores_by_synapses": by_synapses}
    if bits > c.weight_bits:
        fit.fits = False
        fit.reasons.append(f"{bits}-bit weights > {c.weight_bits} bits")
        fit.changes.append(f"weights quantised to {c.weight_bits} bits")
    if bits * s.inputs > c.synapse_bits_per_core:
        fit.fits, fit.cores = False, None
        fit.reasons.append(f"one neuron's fan-in ({s.inputs} x {bits} bits) exceeds a core's synaptic memory")
        fit.changes.append("fewer inputs per neuron")
    elif fit.cores > c.cores:
        fit.fits = False
        fit.reasons.append(f"{fit.cores} cores > {c.cores} per chip")
        fit.changes.append(f"{math.ceil(fit.cores / c.cores)} chips")
    if fit.fits:
        fit.notes.append(f"{s.synapses:,} synapses x {bits} bits; synaptic memory per core derived from 120M "
                         f"synapses/chip (uncertain)")
    return fit


def truenorth_cores(s: ModelShape, copies: int = 4) -> dict:
    """TrueNorth core count of the split-and-merge mapping (module docstring) with ``copies``
    axon copies of each input (non-zero weight levels per neuron, 1 to 4). Returns the slices
    ``S`` and the cores per layer; ``total`` is ``None`` when no merge core can hold a neuron."""
    c = CHIPS["truenorth"]
    if not 1 <= copies <= c.weight_levels:
        raise SpikebridgeError(f"TrueNorth copies must be 1 to {c.weight_levels} (axon types), not {copies}")
    A, P = c.axons_per_core, c.neurons_per_core
    S = math.ceil(copies * s.inputs / A)
    lat = [j if s.lateral and j > 1 else 0 for j in s.members]
    out = {"copies": copies, "slices": S, "partial": 0, "merge": 0, "splitter": 0, "total": None}
    merge_cores = []
    if S == 1:
        if any(copies * s.inputs + l_k > A for l_k in lat):
            return out  # the inputs and the lateral axons do not share one core
        merge_cores = [math.ceil(j / P) for j in s.members]
    else:
        out["partial"] = S * math.ceil(s.neurons / P)
        for j, l_k in zip(s.members, lat):
            n = min(P, (A - l_k) // S)
            if n < 1:
                return out
            merge_cores.append(math.ceil(j / n))
    out["merge"] = sum(merge_cores)
    out["splitter"] = sum(math.ceil(j * (m + 1) / P) for j, m, l_k in zip(s.members, merge_cores, lat) if l_k)
    out["total"] = out["partial"] + out["merge"] + out["splitter"]
    return out


def _truenorth(s: ModelShape, copies: int = 4) -> Fit:
    c = CHIPS["truenorth"]
    plan = truenorth_cores(s, copies)
    fit = Fit("truenorth", False, plan["total"], c.cores, detail={"plan": plan, "plan_one_copy": truenorth_cores(s, 1)})
    if s.inputs > c.axons_per_core:
        fit.reasons.append(f"fan-in {s.inputs} > {c.axons_per_core} axons per core")
    if s.neurons > c.neurons_per_core:
        fit.reasons.append(f"{s.neurons} neurons > {c.neurons_per_core} per core")
    fit.reasons.append(f"{s.weight_bits}-bit weights > {c.weight_levels} weight levels per neuron")
    fit.reasons.append("linear leak instead of the multiplicative beta")
    if s.lateral:
        fit.reasons.append("a neuron's spike reaches one axon: lateral inhibition and output need splitter neurons")
    if plan["total"] is None:
        fit.changes.append("fewer inputs per neuron: no merge core can hold a neuron's partial sums")
        return fit
    if plan["slices"] > 1:
        fit.changes.append(f"each neuron split over {plan['slices']} input slices ({plan['partial']} cores of partial "
                           f"neurons) plus a merge layer ({plan['merge']} core{'s' if plan['merge'] > 1 else ''})")
    if plan["splitter"]:
        fit.changes.append(f"{plan['splitter']} splitter cores copy spikes for lateral inhibition and output")
    fit.changes.append(f"weights to {copies} levels per neuron (each input on {copies} axons, one per axon type)")
    fit.changes.append("linear leak; partial sums carried by spikes change the decisions")
    if plan["total"] > c.cores:
        fit.changes.append(f"{math.ceil(plan['total'] / c.cores)} chips")
    return fit


def fit_all(model_or_network, lateral: bool | None = None) -> dict[str, Fit]:
    """[`Fit`][spikebridge.deploy.hardware.Fit] of the model on every chip of [`CHIPS`][spikebridge.deploy.hardware.CHIPS] (keys as there)."""
    s = model_shape(model_or_network, lateral)
    return {"speck": _speck(s), "xylo_audio2": _xylo("xylo_audio2", s), "xylo_imu": _xylo("xylo_imu", s),
            "loihi2": _loihi2(s), "truenorth": _truenorth(s)}


def fit_report(model_or_network, lateral: bool | None = None) -> list[str]:
    """One line per chip/toolchain: whether ``model_or_network`` (a CoLaNET, an exported
    Network, an Int8CoLaNET or a `ModelShape`) fits as exported, and why not; with the
    cores the network needs and what would have to change."""
    s = model_shape(model_or_network, lateral)
    head = (f"hardware fit of {s.inputs} inputs -> {s.neurons} LIF neurons ({len(s.members)} member(s)"
            f"{', lateral inhibition' if s.lateral else ''}), {s.classes} classes, {s.weight_bits}-bit weights:")
    return [head] + ["  " + f.line() for f in fit_all(s).values()]
