"""Neuromorphic deployment of a trained CoLaNET.

* :mod:`~spikebridge.deploy.api` -- the one export API, ``spikebridge.export(model, path, format=...)``
  and ``spikebridge.load(path)`` (:func:`~.api.export`, :func:`~.api.load`): every format below,
  from a classifier, learner or network, read back by format detection;
* :mod:`~spikebridge.deploy.network` -- the inference path as plain data (:class:`Network`,
  :func:`network_of`) and its readout (:func:`readout_scores`);
* :mod:`~spikebridge.deploy.nir` -- NIR export (:func:`export_nir`, :func:`nir_graph`) with a typed,
  versioned sidecar (:class:`NIRSidecar`); :mod:`~spikebridge.deploy.nir_import` reads it back
  (:func:`import_nir`); :mod:`~spikebridge.deploy.nir_lif` maps LIF parameters to NIR's and back;
* :mod:`~spikebridge.deploy.fixed_point` -- the int8 fixed-point model (:class:`Int8CoLaNET`,
  :meth:`Int8CoLaNET.quantise`) and its versioned record (:class:`Int8Sidecar`);
* :mod:`~spikebridge.deploy.lava_host` -- the int8 model (``dynamics="loihi"``) run in Intel's Lava
  (:func:`run_lava`; Lava's own Python 3.10 environment runs :mod:`~spikebridge.deploy.lava_worker`);
* :mod:`~spikebridge.deploy.hardware` -- documented chip limits, core counts and :func:`fit_report`;
* :mod:`~spikebridge.deploy.akida` -- BrainChip Akida models (:class:`AkidaCoLaNET`, :class:`AkidaSidecar`;
  needs the ``akida`` extra); :mod:`~spikebridge.deploy.akida_quantisation` -- their weights and input counts;
* :mod:`~spikebridge.deploy.integer_learning` -- CoLaNET trained in integer arithmetic
  (:class:`IntegerCoLaNET`, :func:`integer_learner`) with its rule sidecar (:class:`IntegerRuleSidecar`);
* :mod:`~spikebridge.deploy.sidecar` -- the versioned JSON sidecar base (:class:`VersionedSidecar`)
  of the NIR, int8, Akida and integer-rule sidecars;
* :mod:`~spikebridge.deploy.formats` -- format names and conventions (no torch, for the CLI);
* :mod:`~spikebridge.deploy.peer_agreement` -- exported graphs run by snnTorch's and Norse's NIR
  import (:func:`peer_predictions`; needs the ``peers`` extra);
* :mod:`~spikebridge.deploy.nir_consumers` -- graphs laid out for Rockpool and Sinabs, run there
  (Sinabs' own environment runs :mod:`~spikebridge.deploy.sinabs_worker`), and our simulation of each.

Names are imported on first use, so ``spikebridge.deploy.formats`` stays torch-free.
"""

from importlib import import_module

_WHERE = {
    "formats": ["AKIDA_BITS", "AKIDA_FORMAT", "CONVENTIONS", "EXPORT_FORMATS", "FORMATS", "INT8_FORMAT",
                "INT8_VERSION", "SIDECAR_FORMAT", "SIDECAR_VERSION", "SNNTORCH_DT", "TARGETS", "sidecar_path"],
    "network": ["Network", "READOUT_RULE", "first_spike_steps", "network_of", "readout_scores"],
    "nir": ["NIRSidecar", "export_nir", "nir_graph"],
    "nir_import": ["import_nir"],
    "nir_lif": ["NIRLIF", "lif_to_nir", "nir_to_lif"],
    "fixed_point": ["DECAY_BITS", "DYNAMICS", "Int8CoLaNET", "Int8Sidecar", "IntRecord", "MEMBRANE_BITS",
                    "WEIGHT_BITS"],
    "integer_learning": ["IntegerCoLaNET", "IntegerRuleSidecar", "integer_learner"],
    "lava_host": ["LAVA_ENV", "lava_python", "run_lava"],
    "hardware": ["CHIPS", "fit_all", "fit_report"],
    "akida": ["AkidaCoLaNET", "AkidaSidecar"],
    "sidecar": ["VersionedSidecar"],
    "peer_agreement": ["peer_predictions"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'spikebridge.deploy' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])
