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

Import each name from its module (``from spikebridge.deploy.fixed_point import Int8CoLaNET``);
the package itself imports nothing, so ``spikebridge.deploy.formats`` stays torch-free.
"""
