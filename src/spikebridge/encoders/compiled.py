"""Inputs of ``torch.compile`` graphs: fixed-size batches with spare bytes after their end."""

from __future__ import annotations

import numpy as np
import torch

#: spare bytes after every input of a compiled graph (see graph_input)
GRAPH_INPUT_SLACK = 256


def graph_input(chunk: torch.Tensor, size: int, channels_last: bool) -> torch.Tensor:
    """``chunk`` padded with zeros to ``size`` images (one static shape for the compiled graph),
    copied into a fresh buffer that has spare bytes after its end.

    Inductor's vectorised CPU kernel for the uint8 -> float normalisation reads up to one
    vector past the end of its input (torch 2.14): harmless inside a heap block, a segfault
    when the input ends exactly at an unmapped page -- as a DataLoader batch in shared memory
    can (reproduced with a guard page). The copy costs ~1 % of a batch's forward pass.
    """
    shape = (size, *chunk.shape[1:])
    if channels_last:  # [B, C, H, W] with channels_last strides
        b, c, h, w = shape
        strides = (c * h * w, 1, w * c, c)
    else:
        strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
    flat = chunk.new_empty(int(np.prod(shape)) + GRAPH_INPUT_SLACK // chunk.element_size() + 1)
    out = flat.as_strided(shape, strides)
    out[: len(chunk)].copy_(chunk)
    out[len(chunk):].zero_()  # padding: images are encoded independently
    return out
