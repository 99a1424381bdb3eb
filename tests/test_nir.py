"""Tests of spikebridge.deploy.nir."""

import pytest

from spikebridge.colanet import CoLaNET, CoLaNETConfig
from spikebridge.errors import SpikebridgeError


# ------------------------------------------------------------------ export refuses what it cannot honour
def test_nir_export_refuses_a_convention_the_target_cannot_honour():
    from spikebridge.deploy.nir import nir_graph

    model = CoLaNET(4, 2, CoLaNETConfig(microcolumns=1))
    with pytest.raises(SpikebridgeError, match="needs --convention euler"):
        nir_graph(model, target="snntorch", convention="exact")  # not replaced by "euler" silently
