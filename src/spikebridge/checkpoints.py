"""Former home of the safetensors I/O, now :mod:`spikebridge.io` (names kept importable)."""

from .io import is_safetensors, load_tensors, save_tensors

__all__ = ["is_safetensors", "load_tensors", "save_tensors"]
