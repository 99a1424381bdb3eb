"""Versioned JSON sidecars: the schema checks shared by every sidecar of `deploy`.

A sidecar is a dataclass written as JSON beside an exported file (`sidecar_path()`).
Its ``format`` and ``version`` fields identify the schema: their defaults are the format name
and the newest version this spikebridge writes. [`from_dict()`][spikebridge.deploy.sidecar.VersionedSidecar.from_dict] refuses
another format, a newer version, fields the schema does not have and missing fields without a
default (older sidecars get the defaults of fields added since), each with a one-line error
naming the file. Imports neither torch nor NIR.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar, TypeVar

from ..errors import SpikebridgeError
from .formats import sidecar_path

S = TypeVar("S", bound="VersionedSidecar")


@dataclass
class VersionedSidecar:
    """Base of the export sidecars. A subclass is a ``@dataclass`` that ends with the fields
    ``format: str = <its format name>`` and ``version: int = <its newest version>`` and names
    itself in `KIND` (for messages: ``"NIR sidecar"``)."""

    KIND: ClassVar[str] = "sidecar"

    @classmethod
    def schema(cls) -> tuple[str, int]:
        """``(format, newest version)``: the defaults of the ``format`` and ``version`` fields."""
        defaults = {f.name: f.default for f in fields(cls)}
        return defaults["format"], defaults["version"]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[S], data, source="sidecar") -> S:
        """The sidecar of ``data`` (parsed JSON); ``source`` (the file) names it in errors."""
        name, newest = cls.schema()
        if not isinstance(data, dict) or data.get("format") != name:
            raise SpikebridgeError(f"{source} is not a spikebridge {cls.KIND}")
        version = data.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SpikebridgeError(f"{source} has {cls.KIND} version {version!r}; expected a whole number from 1")
        if version > newest:
            raise SpikebridgeError(f"{source} is {cls.KIND} version {version}; this spikebridge reads versions up "
                                   f"to {newest} (upgrade spikebridge)")
        known = [f.name for f in fields(cls)]
        unknown = [k for k in data if k not in known]
        if unknown:
            raise SpikebridgeError(f"{source} has {'unknown fields' if len(unknown) > 1 else 'an unknown field'} "
                                   f"{', '.join(map(repr, unknown))} (not in {cls.KIND} version {version})")
        missing = [f.name for f in fields(cls)
                   if f.name not in data and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise SpikebridgeError(f"{source} lacks {'fields' if len(missing) > 1 else 'a field'}: "
                                   f"{', '.join(missing)}")
        return cls(**data)

    def write(self, path) -> None:
        from ..io import write_json_atomic

        write_json_atomic(path, self.to_dict())

    @classmethod
    def read(cls: type[S], path) -> S:
        """The sidecar in the JSON file ``path`` ([`from_dict()`][spikebridge.deploy.sidecar.VersionedSidecar.from_dict]); a missing or unreadable file
        is a one-line error naming it."""
        path = Path(path)
        if not path.is_file():
            raise SpikebridgeError(f"{cls.KIND} not found: {path}")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SpikebridgeError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
        return cls.from_dict(data, path)


def model_and_sidecar(path, model_kind: str, sidecar_holds: str, bare: str) -> tuple[Path, Path]:
    """``(path, its sidecar path)`` of an exported model, both checked to exist; a missing one is a
    one-line error naming the file (``sidecar_holds``: what the sidecar carries; ``bare``: what a
    model without it lacks)."""
    path = Path(path)
    if not path.is_file():
        raise SpikebridgeError(f"{model_kind} not found: {path}")
    side_file = sidecar_path(path)
    if not side_file.is_file():
        raise SpikebridgeError(f"{side_file} ({sidecar_holds}) is missing; {bare}")
    return path, side_file
