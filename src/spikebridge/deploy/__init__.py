"""Neuromorphic deployment of a trained CoLaNET.

* [`api`][spikebridge.deploy.api] -- the one export API, ``spikebridge.export(model, path, format=...)``
  and ``spikebridge.load(path)`` ([`export()`][spikebridge.deploy.api.export], [`load()`][spikebridge.deploy.api.load]): every format below,
  from a classifier, learner or network, read back by format detection;
* [`network`][spikebridge.deploy.network] -- the inference path as plain data (`Network`,
  `network_of()`) and its readout (`readout_scores()`);
* [`nir`][spikebridge.deploy.nir] -- NIR export (`export_nir()`, `nir_graph()`) with a typed,
  versioned sidecar (`NIRSidecar`); `nir_import` reads it back
  (`import_nir()`); [`nir_lif`][spikebridge.deploy.nir_lif] maps LIF parameters to NIR's and back;
* [`fixed_point`][spikebridge.deploy.fixed_point] -- the int8 fixed-point model (`Int8CoLaNET`,
  `quantise()`) and its versioned record (`Int8Sidecar`);
* [`lava_host`][spikebridge.deploy.lava_host] -- the int8 model (``dynamics="loihi"``) run in Intel's Lava
  (`run_lava()`; Lava's own Python 3.10 environment runs `lava_worker`);
* [`hardware`][spikebridge.deploy.hardware] -- documented chip limits, core counts and `fit_report()`;
* [`akida`][spikebridge.deploy.akida] -- BrainChip Akida models (`AkidaCoLaNET`, `AkidaSidecar`;
  needs the ``akida`` extra); [`akida_quantisation`][spikebridge.deploy.akida_quantisation] -- their weights and input counts;
* [`integer_learning`][spikebridge.deploy.integer_learning] -- CoLaNET trained in integer arithmetic
  (`IntegerCoLaNET`, `integer_learner()`) with its rule sidecar (`IntegerRuleSidecar`);
* `sidecar` -- the versioned JSON sidecar base (`VersionedSidecar`)
  of the NIR, int8, Akida and integer-rule sidecars;
* `formats` -- format names and conventions (no torch, for the CLI);
* `peer_agreement` -- exported graphs run by snnTorch's and Norse's NIR
  import (`peer_predictions()`; needs the ``peers`` extra);
* `nir_consumers` -- graphs laid out for Rockpool and Sinabs, run there
  (Sinabs' own environment runs `sinabs_worker`), and our simulation of each.

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
