"""The versioned-sidecar base (spikebridge.deploy.sidecar) behind the NIR, int8, Akida and integer-rule
sidecars: format, version, unknown and missing fields, unreadable files, each a one-line error
naming the file."""

import json
import re
from dataclasses import dataclass, field

import pytest

from spikebridge.deploy.akida import AkidaSidecar
from spikebridge.deploy.fixed_point import Int8Sidecar
from spikebridge.deploy.integer_learning import IntegerRuleSidecar
from spikebridge.deploy.nir import NIRSidecar
from spikebridge.deploy.sidecar import VersionedSidecar
from spikebridge.errors import SpikebridgeError


@dataclass
class ToySidecar(VersionedSidecar):
    KIND = "toy sidecar"

    steps: int
    notes: dict = field(default_factory=dict)  # added in version 2
    format: str = "spikebridge-toy"
    version: int = 2


def _refused(path, data, message):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    with pytest.raises(SpikebridgeError, match=re.escape(message)) as err:
        ToySidecar.read(path)
    text = str(err.value)
    assert str(path) in text and "\n" not in text, text


def test_versioned_sidecar_checks_and_names_the_file(tmp_path):
    path = tmp_path / "model.toy.json"
    ToySidecar(steps=8, notes={"a": 1}).write(path)
    assert ToySidecar.read(path) == ToySidecar(8, {"a": 1})
    assert json.loads(path.read_text())["format"] == "spikebridge-toy"
    older = ToySidecar.from_dict({"format": "spikebridge-toy", "version": 1, "steps": 4})
    assert (older.steps, older.notes, older.version) == (4, {}, 1)  # fields added since get their defaults
    _refused(path, {"format": "spikebridge-toy", "version": 3, "steps": 8},
             "is toy sidecar version 3; this spikebridge reads versions up to 2")
    _refused(path, {"format": "spikebridge-toy", "version": "two", "steps": 8}, "version 'two'")
    _refused(path, {"format": "spikebridge-nir", "steps": 8}, "is not a spikebridge toy sidecar")
    _refused(path, [1, 2], "is not a spikebridge toy sidecar")
    _refused(path, {"format": "spikebridge-toy", "version": 2, "steps": 8, "step": 9}, "an unknown field 'step'")
    _refused(path, {"format": "spikebridge-toy", "version": 2}, "lacks a field: steps")
    _refused(path, "{not json", "cannot read")
    with pytest.raises(SpikebridgeError, match=re.escape(f"toy sidecar not found: {tmp_path / 'absent.json'}")):
        ToySidecar.read(tmp_path / "absent.json")


@pytest.mark.parametrize("cls, name", [(NIRSidecar, "spikebridge-nir"), (AkidaSidecar, "spikebridge-akida"),
                                       (IntegerRuleSidecar, "spikebridge-integer-rule"),
                                       (Int8Sidecar, "spikebridge-int8")])
def test_the_export_sidecars_share_the_base(cls, name, tmp_path):
    assert issubclass(cls, VersionedSidecar) and cls.schema() == (name, 1)
    path = tmp_path / "side.json"
    path.write_text(json.dumps({"format": name, "version": 2}))
    with pytest.raises(SpikebridgeError, match=re.escape(f"{path} is {cls.KIND} version 2")):
        cls.read(path)
    with pytest.raises(SpikebridgeError, match=f"{cls.KIND} not found"):
        cls.read(tmp_path / "absent.json")
