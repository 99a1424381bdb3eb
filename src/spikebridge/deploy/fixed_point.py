r"""Int8 fixed-point CoLaNET (Loihi-style integer arithmetic).

* weights: ``W - gamma`` as signed 8-bit integers (-127..127) times ``2**e``, one
  power-of-two exponent ``e`` for the layer (round to nearest);
* threshold ``theta_q = round(theta / 2**e)`` and lateral weight ``g_q = round(g theta / 2**e)``:
  unsigned integers below ``2**23`` in the same units (24-bit registers);
* decay: 12-bit ``dv`` ([`decay_dv()`][spikebridge.deploy.fixed_point.decay_dv]), ``v <- decay(v)`` ([`decay()`][spikebridge.deploy.fixed_point.decay], rounding toward
  zero, as Loihi's compartment update);
* per step ``v <- decay(v) + sum_i w_q[j,i] x_i[t] - g_q (spikes of the other neurons at t-1)``,
  saturated to 24-bit signed ``[-2**23, 2**23 - 1]``; spike when ``v >= theta_q``;
  ``v -= theta_q`` (``reset="zero"``: ``v = 0``, Loihi 1's fixed CUBA reset).

``dynamics="loihi"`` is instead the arithmetic of Loihi's CUBA LIF as Lava's bit-accurate model
(``lava.proc.lif.models.PyLifModelBitAcc``) computes it, with no current memory (``du = 4095``),
so that Lava runs the exported model spike for spike (`lava_worker`): the synaptic sum is
MSB-aligned by `ACT_SHIFT` bits into the 24-bit current (Lava's single 24-bit wrap),
the membrane (same 12-bit decay, now on the finer grid) clips to ``[-(2**23 - 1), 2**23 - 1]``,
a spike needs ``v > theta_q * 2**6`` (strict) and resets ``v`` to 0 ([`step_loihi()`][spikebridge.deploy.fixed_point.Int8CoLaNET.step_loihi]).
Its exponent is chosen so that ``theta_q`` fits Lava's 17-bit ``vth`` and the lateral input of a
few simultaneous spikes fits the current register ([`quantise()`][spikebridge.deploy.fixed_point.Int8CoLaNET.quantise]).

Synaptic sums fit int32 (``|sum| <= 127 N``) and are computed exactly: every partial sum of
int8 weights is an integer below ``127 N``, which float32 holds exactly while ``127 N < 2**24``
(float64 beyond), so the dense GEMM and the event-driven gather of
[`spike_currents()`][spikebridge.currents.spike_currents] give the same integers in any summation order
(the default is dense, as everywhere; ``method="auto"`` takes the faster); the state is
simulated with int64 tensor ops. Saved as
safetensors (int8 weights, int32 parameters, int16 maps; host-side normaliser float32) whose
metadata is an [`Int8Sidecar`][spikebridge.deploy.fixed_point.Int8Sidecar], the same record (plus file sizes) written beside it as JSON.

The integer model has its own simulation loop (`simulate()`) rather than
[`lif_population()`][spikebridge.neurons.lif_population]: its decay truncates toward zero after an integer
multiply, the membrane saturates to 24 bits every step and the state is int64, none of which
the float loop can express without changing its rounding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..coding import RateNormaliser, encode
from ..colanet import CoLaNET
from ..currents import spike_currents
from ..errors import SpikebridgeError
from ..io import load_tensors, save_tensors
from ..readout import READOUT_RULE
from .formats import INT8_FORMAT, INT8_VERSION, sidecar_path
from .network import Network, network_of, readout_scores
from .sidecar import VersionedSidecar

DECAY_BITS = 12
MEMBRANE_BITS = 24
WEIGHT_BITS = 8
DECAY_EQUATION = "trunc(v*(4096-dv)/4096)"  # written into the sidecars' "dynamics"
DYNAMICS = ("spikebridge", "loihi")
ACT_SHIFT = 6  # Loihi MSB-aligns the synaptic input and the threshold by 6 bits within the 24-bit state
LOIHI_VTH_BITS = 17  # Lava's LIF vth: unsigned 17-bit
_SIZES = ("file_bytes", "network_bytes", "float32_weight_bytes")  # Int8Sidecar fields of the sidecar only
LATERAL_HEADROOM = 3  # dynamics "loihi": other neurons spiking in one step whose inhibition fits the current


def decay_dv(beta: float) -> int:
    """The 12-bit decay constant of a leak factor ``beta``: ``dv = round(4096 (1 - beta))``, clamped
    to ``[0, 4096]``. Int8CoLaNET and the integer learner ([`integer_learning`][spikebridge.deploy.integer_learning]) both use it."""
    return int(min(1 << DECAY_BITS, max(0, round((1 << DECAY_BITS) * (1.0 - beta)))))


def decay(v: torch.Tensor, dv: int) -> torch.Tensor:
    """One decay step of the int64 state: ``v <- trunc(v (4096 - dv) / 4096)`` (toward zero)."""
    return torch.div(v * ((1 << DECAY_BITS) - dv), 1 << DECAY_BITS, rounding_mode="trunc")


def wrap24_loihi(x: torch.Tensor) -> torch.Tensor:
    """Lava's 24-bit current wrap (``AbstractPyLifModelFixed.subthr_dynamics``), one wrap as Lava
    writes it: ``x - 2**24`` where ``x > 2**23``, ``x + 2**24`` where ``x <= -2**23``."""
    m = 1 << (MEMBRANE_BITS - 1)
    return torch.where(x > m, x - 2 * m, torch.where(x <= -m, x + 2 * m, x))


def decay_factor(dv: int) -> float:
    """The float leak factor of ``dv``: ``beta_q = (4096 - dv) / 4096``."""
    return ((1 << DECAY_BITS) - dv) / (1 << DECAY_BITS)


@dataclass
class Int8Sidecar(VersionedSidecar):
    """The record of an int8 model: the safetensors metadata of the file and, with the file sizes,
    its JSON sidecar ``<file>.json``; read and checked as every [`VersionedSidecar`][spikebridge.deploy.sidecar.VersionedSidecar]
    ([`load()`][spikebridge.deploy.fixed_point.Int8CoLaNET.load] checks both)."""

    KIND = "int8 model"

    exponent: int
    decay_dv: int
    n_classes: int
    n_inputs: int
    normaliser: dict
    steps: int
    coder: str
    dt_s: float
    reset: str
    dynamics_kind: str
    bit_widths: dict
    dynamics: str  # the update equations, in words (dynamics_kind: "spikebridge" or "loihi")
    weight_value: str
    readout: str
    file_bytes: int | None = None  # the sidecar only: sizes of the saved model
    network_bytes: int | None = None
    float32_weight_bytes: int | None = None
    format: str = INT8_FORMAT
    version: int = INT8_VERSION


@dataclass
class IntRecord:
    counts: torch.Tensor  # [B, J'] int64
    first_spike: torch.Tensor  # [B, J'] int64, 1-based, T + 1 if none
    v_final: torch.Tensor  # [B, J'] int64
    steps: int


@dataclass
class Int8CoLaNET:
    """Integer CoLaNET (see the module docstring for the arithmetic and bit widths).

    Attributes
    ----------
    weights : torch.Tensor
        [J, N] int8 weights of the recruited neurons (W - gamma).
    exponent : int
        Weight LSB = 2**exponent.
    threshold : torch.Tensor
        [K] int32 firing threshold per member.
    lateral : torch.Tensor
        [K] int32 lateral inhibition weight per member.
    decay_dv : int
        12-bit decay: v <- trunc(v * (4096 - decay_dv) / 4096).
    member : torch.Tensor
        [J] int64 ensemble member of each neuron.
    row : torch.Tensor
        [J] int64 its row in the float network.
    column : torch.Tensor
        [J] int64 its class column.
    n_classes : int
        Columns, one per class.
    normaliser : RateNormaliser
        Host-side feature -> rate map.
    steps : int
        Time steps per example.
    coder : str
        "regular" or "bernoulli" input spikes.
    dt : float
        Time step (s).
    reset : str
        "subtract" or "zero".
    dynamics : str
        "spikebridge" or "loihi" (module docstring).
    """

    weights: torch.Tensor
    exponent: int
    threshold: torch.Tensor
    lateral: torch.Tensor
    decay_dv: int
    member: torch.Tensor
    row: torch.Tensor
    column: torch.Tensor
    n_classes: int
    normaliser: RateNormaliser
    steps: int = 32
    coder: str = "regular"
    dt: float = 1e-3
    reset: str = "subtract"
    dynamics: str = "spikebridge"

    V_MIN, V_MAX = -(1 << (MEMBRANE_BITS - 1)), (1 << (MEMBRANE_BITS - 1)) - 1

    @classmethod
    def quantise(cls, model: CoLaNET, reset: str = "subtract", dynamics: str = "spikebridge",
                 headroom: int = LATERAL_HEADROOM) -> "Int8CoLaNET":
        """Round ``model`` to int8 weights with one exponent. ``dynamics="loihi"`` (reset to zero)
        raises the exponent until ``theta_q < 2**17`` (Lava's ``vth``) and the lateral input of
        ``headroom`` other neurons of a member spiking in one step, ``headroom g_q``, stays below
        ``2**17``: shifted left by 6 bits it fits the 24-bit current. More simultaneous spikes wrap
        the current, in Lava and in [`step_loihi()`][spikebridge.deploy.fixed_point.Int8CoLaNET.step_loihi] alike. Fitting every other neuron of a
        50-neuron member, ``(M - 1) g_q < 2**17``, would leave Imagenette's weights about 2 bits;
        headroom 3 was picked by comparing headrooms 0-28 on Imagenette's val split (it kept the
        default int8 model's top-1; benchmarks/results/lava.json has the top-1 of both models)."""
        if dynamics not in DYNAMICS:
            raise SpikebridgeError(f"unknown dynamics {dynamics!r}; choose from {', '.join(DYNAMICS)}")
        if dynamics == "loihi":
            reset = "zero"
        net = network_of(model)
        wmax = float(net.weights.abs().max())
        e = math.ceil(math.log2(wmax / 127.0)) if wmax > 0 else 0
        limit = cls.V_MAX if dynamics == "spikebridge" else (1 << LOIHI_VTH_BITS) - 1
        others = min(headroom, int(torch.bincount(net.member).max()) - 1) if dynamics == "loihi" else 1
        while True:  # thresholds and lateral weights must fit the registers
            theta = torch.round(net.threshold.double() / 2.0**e)
            lateral = torch.round(net.lateral.double() / 2.0**e)
            if max(float(theta.max()), others * float(lateral.max())) <= limit:
                break
            e += 1
        wq = torch.round(net.weights.double() / 2.0**e).clamp(-127, 127).to(torch.int8)
        cfg = model.config
        return cls(wq, e, theta.clamp_min(1).to(torch.int32), lateral.to(torch.int32), decay_dv(net.beta),
                   net.member, net.row, net.column, model.n_classes, model.normaliser, cfg.steps, cfg.coder, cfg.dt,
                   reset, dynamics)

    # -- network view for the readout
    def network(self) -> Network:
        w = self.weights.to(torch.float32) * 2.0**self.exponent
        return Network(w, self.threshold.to(torch.float32), self.lateral.to(torch.float32), self.member, self.row,
                       self.column, decay_factor(self.decay_dv), self.n_classes)

    def feedforward(self, input_spikes: torch.Tensor, method: str | None = None) -> torch.Tensor:
        """Exact integer synaptic sums ``[T, B, J']`` (int64) of binary input spikes (``method``:
        that of [`spike_currents()`][spikebridge.currents.spike_currents]; every path is exact)."""
        N = input_spikes.shape[-1]
        dtype = torch.float32 if N * 127 < (1 << 24) else torch.float64  # see the module docstring
        currents = spike_currents(input_spikes, self.weights.to(dtype).unsqueeze(0), method)[0]
        return currents.round().to(torch.int64)

    @torch.no_grad()
    def simulate(self, input_spikes: torch.Tensor, method: str | None = None) -> IntRecord:
        T, B, _ = input_spikes.shape
        J = self.weights.shape[0]
        cur = self.feedforward(input_spikes, method)
        theta = self.threshold.to(torch.int64)[self.member]
        lateral = self.lateral.to(torch.int64)[self.member]
        K = len(self.threshold)
        onehot = torch.nn.functional.one_hot(self.member, K).to(torch.int64)  # [J', K]
        v = torch.zeros(B, J, dtype=torch.int64)
        prev = torch.zeros(B, J, dtype=torch.int64)
        counts = torch.zeros(B, J, dtype=torch.int64)
        first = torch.full((B, J), T + 1, dtype=torch.int64)
        for t in range(T):
            others = (prev @ onehot) @ onehot.T - prev  # spikes of the other neurons of the same member
            if self.dynamics == "loihi":
                v, s = self.step_loihi(v, cur[t] - lateral * others, theta)
            else:
                v = decay(v, self.decay_dv) + cur[t] - lateral * others
                v = v.clamp(self.V_MIN, self.V_MAX)
                s = v >= theta
                v = v - theta * s if self.reset == "subtract" else v.masked_fill(s, 0)
            counts += s
            first = torch.where(s & (first > T), torch.full_like(first, t + 1), first)
            prev = s.to(torch.int64)
        return IntRecord(counts, first, v, T)

    def step_loihi(self, v: torch.Tensor, a: torch.Tensor, theta: torch.Tensor):
        """One step of Loihi's CUBA LIF with ``du = 4095`` (Lava ``PyLifModelBitAcc``; ``v`` on the
        grid ``2**-6`` of the weight LSB, ``a`` the integer synaptic input of this step)::

            u = wrap24(a * 2**6)     (du = 4095: the decay constant du + 1 = 4096 clears u first)
            v = clip(trunc(v*(4096-dv)/4096) + u, -(2**23 - 1), 2**23 - 1)
            s = v > theta_q * 2**6;  v = 0 where s
        """
        u = wrap24_loihi(a << ACT_SHIFT)
        v = (decay(v, self.decay_dv) + u).clamp(self.V_MIN + 1, self.V_MAX)
        s = v > theta << ACT_SHIFT
        return v.masked_fill(s, 0), s

    def v_scale(self) -> int:
        """Membrane units per weight LSB: ``2**6`` for ``dynamics="loihi"``, else 1."""
        return 1 << ACT_SHIFT if self.dynamics == "loihi" else 1

    def rates(self, features) -> torch.Tensor:
        return self.normaliser(features)

    def spikes_for(self, features, steps: int | None = None, seed: int = 0) -> torch.Tensor:
        return encode(self.rates(features), steps or self.steps, self.coder, seed=seed, dt=self.dt,
                      max_rate=1.0 / self.dt)

    def scores(self, record: IntRecord) -> torch.Tensor:
        return readout_scores(record.counts, record.first_spike, self.network(), record.steps,
                              record.v_final.to(torch.float64) / self.v_scale())

    @torch.no_grad()
    def predict(self, features, steps: int | None = None, batch_size: int = 1024, seed: int = 0,
                method: str | None = None) -> torch.Tensor:
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        out = []
        for b in range(0, len(features), batch_size):
            rec = self.simulate(self.spikes_for(features[b : b + batch_size], steps, seed=seed + b), method)
            out.append(self.scores(rec).argmax(1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)

    # -- persistence
    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights.contiguous(), "threshold": self.threshold, "lateral": self.lateral,
                "member": self.member.to(torch.int16), "row": self.row.to(torch.int16),
                "column": self.column.to(torch.int16), **self.normaliser.tensors()}

    def network_bytes(self) -> int:
        """On-chip payload: int8 weights, 24-bit thresholds and lateral weights (stored in 4 bytes),
        the 12-bit decay and the exponent (2 bytes each), one int16 class column per neuron."""
        return (self.weights.numel() + 4 * (self.threshold.numel() + self.lateral.numel()) + 2 + 2
                + 2 * self.column.numel())

    def metadata(self) -> dict:
        """The [`Int8Sidecar`][spikebridge.deploy.fixed_point.Int8Sidecar] record of this model without the file sizes (the file's metadata)."""
        side = Int8Sidecar(
            exponent=self.exponent, decay_dv=self.decay_dv, n_classes=self.n_classes,
            n_inputs=int(self.weights.shape[1]), normaliser=self.normaliser.metadata(), steps=self.steps,
            coder=self.coder, dt_s=self.dt, reset=self.reset, dynamics_kind=self.dynamics,
            bit_widths={"weight": WEIGHT_BITS, "membrane": MEMBRANE_BITS, "threshold": MEMBRANE_BITS,
                        "lateral": MEMBRANE_BITS, "decay": DECAY_BITS, "synaptic_sum": 32},
            dynamics=self.equations(), weight_value="w_q * 2**exponent (float units of the CoLaNET current)",
            readout=READOUT_RULE)
        return {k: v for k, v in asdict(side).items() if k not in _SIZES}

    def equations(self) -> str:
        if self.dynamics == "loihi":
            return (f"a = sum_i w_q[j,i] x_i[t] - lateral_q * (other spikes at t-1); u = wrap24(a * 2**{ACT_SHIFT}); "
                    f"v <- clip({DECAY_EQUATION} + u, -(2**23-1), 2**23-1); s = v > threshold_q * 2**{ACT_SHIFT}; "
                    "v = 0 where s (Loihi CUBA LIF, du = 4095, as Lava's PyLifModelBitAcc)")
        return (f"v <- {DECAY_EQUATION} + sum_i w_q[j,i] x_i[t] - lateral_q * (other spikes at t-1); "
                "v <- clamp(v, -2**23, 2**23-1); s = v >= threshold_q; "
                + ("v -= threshold_q * s" if self.reset == "subtract" else "v = 0 where s"))

    def save(self, path) -> dict:
        """Write ``path`` (safetensors, the record as metadata) and ``path.json`` ([`Int8Sidecar`][spikebridge.deploy.fixed_point.Int8Sidecar]
        with the file sizes); returns the sidecar's fields."""
        path = Path(path)
        meta = self.metadata()
        save_tensors(path, self.tensors(), meta)
        side = Int8Sidecar(**meta, file_bytes=path.stat().st_size, network_bytes=self.network_bytes(),
                           float32_weight_bytes=4 * self.weights.numel())
        side.write(sidecar_path(path))
        return side.to_dict()

    @classmethod
    def load(cls, path) -> "Int8CoLaNET":
        """The model [`save()`][spikebridge.deploy.fixed_point.Int8CoLaNET.save] wrote; its record (file metadata) and, when present, its sidecar are
        checked as [`Int8Sidecar`][spikebridge.deploy.fixed_point.Int8Sidecar] (format and version), each error one line naming the file."""
        t, meta = load_tensors(path)
        m = Int8Sidecar.from_dict(meta, path)
        if sidecar_path(path).is_file():
            Int8Sidecar.read(sidecar_path(path))
        try:
            return cls(t["weights"], m.exponent, t["threshold"], t["lateral"], m.decay_dv, t["member"].long(),
                       t["row"].long(), t["column"].long(), m.n_classes, RateNormaliser.from_tensors(t, m.normaliser),
                       m.steps, m.coder, float(m.dt_s), m.reset, m.dynamics_kind)
        except KeyError as exc:
            raise SpikebridgeError(f"{path} is not a complete int8 model: it lacks {exc}") from exc

