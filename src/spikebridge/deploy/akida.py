r"""BrainChip Akida export of a trained CoLaNET: ``InputData`` + ``FullyConnected`` (``.fbz``).

Akida runs feed-forward layers on integer events; its ``FullyConnected`` layer takes 1-, 2- or
4-bit inputs and 1-, 2- or 4-bit integer weights (no scale in the arithmetic) and, with
``activation=False``, outputs the integer potentials ``P_j = sum_i x_i q[j, i]``. CoLaNET maps
onto it as its continuous readout on spike counts:

Inputs
    ``x_i`` = spikes of input channel ``i`` over a window of ``T = 2**input_bits - 1`` steps of
    the regular (deterministic) coder of `coding`, i.e.
    ``x_i = floor(0.5 + T r_i + 1e-6)`` in ``0..T`` (``T`` = 15, 3, 1 for 4, 2, 1 bits), computed
    on the host from the rates ``r`` of the model's normaliser.
Neurons
    all ``U = K * C * M`` plastic neurons, member by member, each member's ``J = C * M`` in
    CoLaNET's order (neuron ``j`` belongs to column ``j // M``); unrecruited neurons get zero
    weights and take no part in the decision.
Weights ([`quantise_weights()`][spikebridge.deploy.akida_quantisation.quantise_weights], symmetric, one scale ``s_j`` per neuron)
    ``w_j = W_j - gamma`` (the feedforward inhibition folded in, as in every export) becomes
    ``w_hat_j = s_j (alpha q_j - beta)``, chosen to minimise the expected squared error of the
    neuron's *drive*, ``E[(x . e)^2] = e^T Sigma e`` with ``e = w_j - w_hat_j`` and
    ``Sigma = E[x x^T]`` the second moment of the input rates ``x = counts / T`` over
    calibration features (the training set, ``calibration=``); without them ``Sigma = I``, the
    plain weight error. For a code ``c_j = alpha q_j - beta`` the best scale is
    ``s_j = (c_j^T Sigma w_j) / (c_j^T Sigma c_j)``.

    * 4 and 2 bits: Akida's signed range ``q in [-Q, Q]``, ``Q = 2**(bits-1) - 1`` (7 or 1),
      ``alpha = 1, beta = 0``; ``q_j = clip(round(w_j / c), -Q, Q)`` for the clipping step
      ``c = rho max|w_j| / Q`` whose ``rho`` in ``1/64 .. 1`` gives the least error;
    * 1 bit: Akida's 1-bit weights are ``{0, 1}``; ``q_j = [w_j > 0]`` stands for the sign,
      ``alpha = 2, beta = 1`` (``w_hat = s_j (2 q - 1) = s_j sign(w)``; ``Sigma = I`` gives
      ``s_j = mean_i |w_j,i|``);
    * with calibration (``Sigma`` not ``I``), rounding with error feedback
      (``_error_feedback_codes`` of [`akida_quantisation`][spikebridge.deploy.akida_quantisation], OPTQ/GPTQ): the codes of the nearest rounding are
      re-rounded input by input, the error of each moved onto the inputs not yet rounded so that
      ``e^T Sigma e`` stays least, then the scale is refitted; a neuron keeps whichever codes give
      the lower error. On imagenet64 at 4 bits it lifted agreement with the float readout on the
      same counts from 97.9 % to 99.2 % (``benchmarks/akida_deploy.py``);
    * ``slices = L > 1``: each CoLaNET neuron becomes ``L`` Akida neurons (unit ``l U + j``), slice
      ``l`` quantising what slices ``< l`` left, ``w_j - sum_{m<l} w_hat_mj``; the readout sums
      their drives, so the weights keep ``bits``-bit synapses with about ``L`` times the bits of
      precision (``L`` times the neurons and synapses).

    CoLaNET's weights are heavy-tailed (most near 0, some at the bounds): at 2 bits the weight
    error alone zeroes most small weights, which on Imagenette moved 3 % of decisions
    (``Sigma`` from the training rates: 0.6 %); on imagenet64 (one neuron per class) the two were
    within a point at every width. ``benchmarks/akida_deploy.py`` measures both.
Decision ([`scores()`][spikebridge.deploy.akida.AkidaCoLaNET.scores], from Akida's output potentials)
    ``a_j = sum_l s_lj (alpha P_lj - beta S) / T`` with ``S = sum_i x_i`` (so ``a_j = w_hat_j . x / T``,
    the drive of CoLaNET's continuous mode at the rates ``x / T``), ``u_j = a_j / theta_k``, and
    the column decision of [`column_scores_continuous()`][spikebridge.colanet.CoLaNET.column_scores_continuous],
    [`continuous_column_scores()`][spikebridge.readout.continuous_column_scores] on the drives ``a``.

Akida's own output scaling: ``Model.predict`` returns ``(P_j - threshold_j) / act_step_j``
(float; measured on akida 2.19.3). The export sets ``act_step = T theta_k / (alpha s_lj)`` and
``threshold = 0``, so for 2- and 4-bit weights ``predict`` gives ``u_j`` (summed over slices) and,
with one member and one slice, Akida's ``predict_classes(x, num_classes=C)`` (neuron ``j`` -> class
``j // M``) is the decision; unrecruited neurons get ``threshold 2**30`` and ``act_step 1/16`` (``predict`` = -2**34).
Akida refuses ``act_step < 1/16``: if a model's smallest ``act_step`` would be below, all of them
are multiplied by one factor ``f`` (``predict = u / f``, same argmax; ``f`` in the sidecar).
With 1-bit weights the ``- s_j S`` term depends on the input, so only the host readout above
decides. The ``.fbz`` is written by Akida's ``Model.save`` and opens with ``akida.Model(path)``;
``<path>.json`` ([`AkidaSidecar`][spikebridge.deploy.akida.AkidaSidecar]) holds what Akida has no field for: the coder and
normaliser, ``T``, scales, thresholds, class of every neuron and the decision rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..coding import RateNormaliser
from ..colanet import CoLaNET
from ..errors import SpikebridgeError, require_finite
from ..readout import NEG, continuous_column_scores
from .akida_quantisation import CLIP_GRID, input_second_moment, quantise_weights, spike_counts, window_steps
from .formats import AKIDA_FORMAT, AKIDA_VERSION, check_akida_bits, sidecar_path
from .sidecar import VersionedSidecar, model_and_sidecar

MIN_ACT_STEP = 1.0 / 16  # Akida refuses smaller act_step values
UNUSED_THRESHOLD = 1 << 30  # threshold of unrecruited neurons: predict() = -2**30 / act_step

DECISION_RULE = ("a_j = sum over slices l of scale_lj * (alpha * P_lj - beta * S) / T, P_lj = Akida FullyConnected "
                 "output potential of unit l * U + j, S = sum of the input counts, alpha/beta = 2/1 for 1-bit weights (q in {0,1} codes the "
                 "sign) and 1/0 otherwise; u_j = a_j / theta[member_j]; score_c = sum over members k of "
                 "max(0, u_kc) + 1e-6 * theta_k * u_kc, u_kc = max of u_j over the recruited neurons of column c "
                 "in member k; prediction = argmax_c score_c (CoLaNET's continuous readout on the counts)")


def _akida():
    try:
        import akida
    except ImportError as exc:
        raise SpikebridgeError("Akida export needs BrainChip's 'akida' package: pip install 'spikebridge[akida]'") from exc
    return akida


# --------------------------------------------------------------------------- the sidecar
@dataclass
class AkidaSidecar(VersionedSidecar):
    """What the ``.fbz`` has no field for, written beside it as ``<file>.json``; read and checked
    as every [`VersionedSidecar`][spikebridge.deploy.sidecar.VersionedSidecar]."""

    KIND = "Akida sidecar"

    akida_version: str
    input_bits: int
    weight_bits: int
    steps: int
    n_inputs: int
    n_classes: int
    members: int
    microcolumns: int
    thresholds: list  # theta_k per member
    gamma: list
    neurons: list  # per CoLaNET neuron j: {"member", "row", "column", "active", "scales"} (one scale per slice)
    coder: dict
    colanet_config: dict
    slices: int = 1  # Akida neurons per CoLaNET neuron: slice l of neuron j is FullyConnected unit l * U + j
    weights: dict = field(default_factory=dict)  # the quantiser, in words
    readout: dict = field(default_factory=dict)
    classes: list | None = None
    format: str = AKIDA_FORMAT
    version: int = AKIDA_VERSION


# --------------------------------------------------------------------------- the Akida model
@dataclass
class AkidaCoLaNET:
    """An Akida ``Model`` (``InputData`` + ``FullyConnected``) with its host-side coder and readout.

    Attributes
    ----------
    model : object
        The akida.Model.
    side : AkidaSidecar
        Its sidecar: coder, window, scales, thresholds, readout.
    normaliser : RateNormaliser
        The host-side feature -> rate map.
    """

    model: object
    side: AkidaSidecar
    normaliser: RateNormaliser

    # -- construction
    @classmethod
    def from_colanet(cls, model: CoLaNET, input_bits: int = 4, weight_bits: int = 4, classes=None,
                     calibration=None, second_moment: torch.Tensor | None = None, slices: int = 1) -> "AkidaCoLaNET":
        """Map ``model`` onto Akida. ``calibration``: features ``[B, D]`` (the training set) whose
        input second moment the weight quantiser uses (or pass it as ``second_moment``, from
        `input_second_moment()`); neither: the plain weight error. ``slices``: Akida neurons
        per CoLaNET neuron (residual slices of its weights, summed by the readout)."""
        akida = _akida()
        if not isinstance(model, CoLaNET):
            raise SpikebridgeError(f"Akida export supports CoLaNET models only, not {type(model).__name__}")
        if not bool(model.active.any()) or model.normaliser is None:
            raise SpikebridgeError("the model has no recruited neurons or no rate normaliser (train it first)")
        input_bits, weight_bits = check_akida_bits(input_bits, "input bits"), check_akida_bits(weight_bits, "weight bits")
        cfg = model.config
        K, J, N = model.weights.shape
        T = window_steps(input_bits)
        sigma_note = "identity (no calibration features: the weight error)"
        if second_moment is not None:
            sigma_note = "E[x x^T] of the input rates x = counts / T (given)"
        elif calibration is not None:
            second_moment = input_second_moment(model, calibration, input_bits)
            sigma_note = f"E[x x^T] of the input rates x = counts / T of {len(calibration)} calibration examples"
        qw = quantise_weights(model.effective_weights().reshape(K * J, N), weight_bits, second_moment, slices)
        L, U = qw.scale.shape
        active = model.active.reshape(-1)
        member = torch.arange(K).repeat_interleave(J)
        theta = model.threshold.double()
        scale = torch.where(active, qw.scale, torch.zeros(()))  # [L, U]
        used = active & (scale > 0)
        act_step = T * theta[member] / (qw.alpha * scale.clamp_min(1e-300))
        factor = max(1.0, MIN_ACT_STEP / float(act_step[used].min())) if bool(used.any()) else 1.0
        act_step = torch.where(used, act_step * factor, torch.full_like(act_step, MIN_ACT_STEP))
        threshold = torch.where(active, 0, UNUSED_THRESHOLD).expand(L, U)
        net = akida.Model()
        net.add(akida.InputData(input_shape=(1, 1, N), input_bits=input_bits, name="spike_counts"))
        net.add(akida.FullyConnected(units=L * U, weights_bits=weight_bits, activation=False, name="colanet"))
        layer = net.get_layer("colanet")
        layer.set_variable("weights", np.ascontiguousarray(qw.q.reshape(L * U, N).T.numpy().reshape(1, 1, N, L * U)))
        layer.set_variable("threshold", threshold.reshape(-1).numpy().astype(np.int32))
        layer.set_variable("act_step", act_step.reshape(-1).numpy().astype(np.float32))
        norm = model.normaliser
        side = AkidaSidecar(
            akida_version=akida.__version__, input_bits=input_bits, weight_bits=weight_bits, steps=T,
            n_inputs=model.n_inputs, n_classes=model.n_classes, members=K, microcolumns=cfg.microcolumns,
            thresholds=[float(t) for t in theta], gamma=[float(g) for g in model.gamma],
            neurons=[{"member": int(k), "row": int(j % J), "column": int(model.column[j % J]), "active": bool(a),
                      "scales": [float(v) for v in s]} for j, (k, a, s) in enumerate(zip(member, active, scale.T))],
            slices=L,
            coder={"name": "regular", "steps": T, "count": "x[c] = floor(0.5 + T * rate[c] + 1e-6) (spikes of the "
                   "regular coder over T steps)", "normalise": "rate[c] = clip((feature[source[c]] - center[c]) * gain[c], 0, 1)",
                   "kind": norm.kind, "parameter": norm.parameter, "source": [int(i) for i in norm.source],
                   "center": [float(v) for v in norm.center], "gain": [float(v) for v in norm.gain]},
            colanet_config=asdict(cfg),
            weights={"bits": weight_bits, "alpha": qw.alpha, "beta": qw.beta,
                     "value": "w_hat[j, i] = sum over slices l of scale_lj * (alpha * q[l*U + j, i] - beta) ~ W[j, i] - gamma",
                     "quantiser": ("q = [w > 0] (sign code)" if weight_bits == 1 else
                                   f"q = clip(round(w / c), -Q, Q), Q = {(1 << (weight_bits - 1)) - 1}, c = rho * "
                                   f"max|w| / Q for the rho in 1/{CLIP_GRID}..1 of least error"),
                     "scale": "scale = (c^T Sigma w) / (c^T Sigma c), c = alpha q - beta: least e^T Sigma e, e = w - w_hat; "
                              "slice l > 1 quantises the rest w - (w_hat of slices < l)",
                     "sigma": sigma_note,
                     "akida_scaling": "predict() = (P - threshold) / act_step with act_step = factor * T theta / "
                                      "(alpha scale), threshold 0 (2/4 bits: the sum of a neuron's slices of predict() "
                                      "is u_j / factor); unrecruited: threshold 2**30, act_step 1/16",
                     "predict_factor": factor},
            readout={"rule": DECISION_RULE, "akida_predict_classes": weight_bits != 1 and K == 1 and L == 1},
            classes=list(classes) if classes is not None else None)
        return cls(net, side, norm)

    # -- inference
    @property
    def steps(self) -> int:
        return self.side.steps

    def counts(self, features) -> np.ndarray:
        """Input spike counts ``[B, 1, 1, N]`` uint8 (Akida's input layout) of ``features [B, D]``."""
        require_finite(features, "input")
        x = spike_counts(self.normaliser(features), self.steps).numpy()
        return x.reshape(len(x), 1, 1, -1)

    def potentials(self, counts: np.ndarray) -> np.ndarray:
        """Akida's output potentials ``P [B, U]`` (int32) for input counts ``[B, 1, 1, N]``."""
        return np.asarray(self.model.forward(np.ascontiguousarray(counts, dtype=np.uint8))).reshape(len(counts), -1)

    def scores(self, potentials: np.ndarray, counts: np.ndarray) -> torch.Tensor:
        """Column scores ``[B, C]`` (float64) from Akida's potentials: `DECISION_RULE`."""
        side = self.side
        alpha, beta = (2, 1) if side.weight_bits == 1 else (1, 0)
        K, C = side.members, side.n_classes
        scale = torch.tensor([n["scales"] for n in side.neurons], dtype=torch.float64).T  # [L, U]
        active = torch.tensor([n["active"] for n in side.neurons])
        theta = torch.tensor(side.thresholds, dtype=torch.float64)
        P = torch.from_numpy(np.asarray(potentials, np.int64)).double().view(len(potentials), *scale.shape)
        S = torch.from_numpy(np.asarray(counts).reshape(len(counts), -1).sum(1, dtype=np.int64)).double()
        a = (scale * (alpha * P - beta * S.view(-1, 1, 1))).sum(1) / side.steps  # [B, U]: drive at the rates x / T
        a = a.masked_fill(~active, NEG).view(len(a), K, -1).transpose(0, 1)  # [K, B, J]
        return continuous_column_scores(a, theta, C)

    def predict(self, features, batch_size: int = 2048) -> torch.Tensor:
        """Class predictions ``[B]`` (int64): counts -> Akida ``forward`` -> [`scores()`][spikebridge.deploy.akida.AkidaCoLaNET.scores]."""
        out = []
        for b in range(0, len(features), batch_size):
            x = self.counts(features[b : b + batch_size])
            out.append(self.scores(self.potentials(x), x).argmax(1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)

    def predict_classes(self, counts: np.ndarray) -> np.ndarray:
        """Akida's own ``predict_classes`` (argmax of ``predict``, neuron ``j`` -> class ``j // (U / C)``);
        our decision for one member and 2- or 4-bit weights (see the module docstring)."""
        if not self.side.readout.get("akida_predict_classes"):
            raise SpikebridgeError("Akida's predict_classes is not CoLaNET's decision for 1-bit weights, "
                                   "ensembles or weight slices; use AkidaCoLaNET.predict")
        return np.asarray(self.model.predict_classes(np.ascontiguousarray(counts, np.uint8),
                                                     num_classes=self.side.n_classes))

    # -- hardware
    def hardware_mapping(self, device: str = "AKD1000") -> dict:
        """Map a copy of the model onto a virtual Akida ``device`` (no chip needed to map; running it
        needs one): neural processors used and program size, or the mapper's refusal."""
        akida = _akida()
        make = {"AKD1000": akida.AKD1000, "AKD1500": akida.AKD1500}
        if device not in make:
            raise SpikebridgeError(f"unknown Akida device {device!r}; choose one of {sorted(make)}")
        mapped = akida.Model(layers=[self.model.get_layer(i) for i in range(len(self.model.layers))])
        try:
            mapped.map(make[device](), hw_only=True)
        except Exception as exc:  # the mapper's reason, reported (it is the measurement)
            return {"device": device, "mapped": False, "error": str(exc).splitlines()[0]}
        seq = mapped.sequences
        nps = [n for s in seq for p in s.passes for layer in p.layers if layer.mapping for n in layer.mapping.nps]
        return {"device": device, "mapped": True, "sequences": len(seq),
                "hardware_sequences": sum(str(s.backend).endswith("Hardware") for s in seq),
                "neural_processors": len(nps), "np_types": sorted({str(n.type).split(".")[-1] for n in nps}),
                "program_bytes": int(sum(len(s.program or b"") for s in seq))}

    # -- persistence
    def save(self, path) -> dict:
        """Write ``path`` (Akida ``.fbz``) and ``path.json`` ([`AkidaSidecar`][spikebridge.deploy.akida.AkidaSidecar]); returns a summary."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.model.save(str(path))
        self.side.write(sidecar_path(path))
        return {"path": str(path), "sidecar": str(sidecar_path(path)), "bytes": path.stat().st_size,
                "sidecar_bytes": sidecar_path(path).stat().st_size, "neurons": len(self.side.neurons),
                "recruited": sum(n["active"] for n in self.side.neurons), "slices": self.side.slices, "inputs": self.side.n_inputs,
                "channels": len(self.side.coder["source"]),
                "input_bits": self.side.input_bits, "weight_bits": self.side.weight_bits, "steps": self.steps}

    @classmethod
    def load(cls, path) -> "AkidaCoLaNET":
        """Read ``path`` with ``akida.Model(path)`` and its sidecar; checks that they describe one network."""
        akida = _akida()
        path, side_file = model_and_sidecar(path, "Akida model", "coder, scales and class columns of the model",
                                            "a bare .fbz has no CoLaNET readout")
        side = AkidaSidecar.read(side_file)
        try:
            net = akida.Model(str(path))
        except Exception as exc:
            raise SpikebridgeError(f"cannot read {path} as an Akida model: {exc}".splitlines()[0]) from exc
        layers = [net.get_layer(i) for i in range(len(net.layers))]
        units = len(side.neurons) * side.slices
        kinds = [layer.parameters.layer_type for layer in layers]
        if (kinds != [akida.LayerType.InputData, akida.LayerType.FullyConnected] or layers[0].input_bits != side.input_bits
                or list(layers[1].output_dims) != [1, 1, units] or layers[1].parameters.weights_bits != side.weight_bits):
            raise SpikebridgeError(f"{path} does not match {side_file} (expected InputData({side.input_bits} bits) + "
                                   f"FullyConnected({units} units, {side.weight_bits}-bit weights))")
        c = side.coder
        norm = RateNormaliser(torch.tensor(c["source"], dtype=torch.int64), torch.tensor(c["center"], dtype=torch.float32),
                              torch.tensor(c["gain"], dtype=torch.float32), c["kind"], c["parameter"])
        return cls(net, side, norm)
