"""Preprocessing split where it becomes float: PIL stages in the loader workers, normalisation
on whole batches."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from ..errors import SpikebridgeError


def _resized_size(stored: tuple[int, int], size: int | list[int] | tuple[int, ...], max_size: int | None) -> tuple[int, int]:
    """``(w, h)`` that torchvision's ``Resize(size, max_size=...)`` gives an image of ``stored`` ``(w, h)``."""
    from torchvision.transforms.functional import _compute_resized_output_size

    h, w = _compute_resized_output_size((stored[1], stored[0]), [size] if isinstance(size, int) else list(size), max_size)
    return w, h


class Preprocess:
    """The encoder's timm eval transform, split where it becomes float.

    `pixels()` (run in the DataLoader workers) does the PIL stages -- resize, centre crop --
    and returns ``uint8 [H, W, 3]``; `normalize()` (run in the main process, on the whole
    batch) turns ``uint8 [B, H, W, 3]`` into the normalised ``float32 [B, 3, H, W]``, already
    channels_last (the permuted HWC batch *is* that layout: no copy). The two together give
    exactly the tensors of ``timm.data.create_transform(**data_config, is_training=False)``
    (same PIL calls, then the same ``/255``, ``-mean``, ``/std`` float operations); the
    resize is skipped when the image already has the resized size, as torchvision does.

    ``jpeg_draft``: `draft_target()` tells `open()` the size the resize
    will produce, so a JPEG >= 2x that size is decoded at 1/2, 1/4 or 1/8 scale in DCT space;
    the resize then maps the same region of the original image (PIL's ``box``) onto the same
    output size, so only the pixel values differ (by the DCT-domain downscale), not the
    geometry. Images smaller than 2x the target are decoded in full, bit-identical to timm.
    """

    def __init__(self, data_config: dict[str, Any], jpeg_draft: bool = True):
        transform = timm.data.create_transform(**data_config, is_training=False)
        stages = list(getattr(transform, "transforms", [transform]))
        names = [type(t).__name__ for t in stages]
        if len(stages) < 2 or names[-2] not in ("ToTensor", "MaybeToTensor") or names[-1] != "Normalize":
            raise SpikebridgeError(f"unexpected timm eval transform for {data_config}: {names} "
                                   "(expected PIL stages, then ToTensor and Normalize)")
        self.stages = stages[:-2]
        self.mean = tuple(float(v) for v in stages[-1].mean)
        self.std = tuple(float(v) for v in stages[-1].std)
        self.resize = self.stages[0] if self.stages and isinstance(self.stages[0], transforms.Resize) else None
        self.jpeg_draft = bool(jpeg_draft) and self.resize is not None
        self.input_size = tuple(data_config["input_size"])

    def resized_size(self, stored: tuple[int, int]) -> tuple[int, int]:
        """``(w, h)`` after the resize stage, for an image stored at ``(w, h)``."""
        if self.resize is None:
            raise SpikebridgeError("this transform has no leading Resize stage")
        return _resized_size(stored, self.resize.size, self.resize.max_size)

    @property
    def draft_target(self) -> Callable[[tuple[int, int]], tuple[int, int]] | None:
        """What to pass as ``draft_to`` to `open()` (``None`` without JPEG draft)."""
        return self.resized_size if self.jpeg_draft else None

    def pixels(self, img: Image.Image) -> torch.Tensor:
        """RGB PIL image -> ``uint8 [H, W, 3]`` after the resize and crop stages."""
        stages = self.stages
        draft = img.info.get("draft")
        if self.resize is not None:
            stored = tuple(draft["size"]) if draft else img.size
            target = self.resized_size(stored)
            interpolation = transforms.InterpolationMode(self.resize.interpolation)
            resample = transforms.functional.pil_modes_mapping[interpolation]
            if draft:  # the decoded image covers stored/scale pixels of the original (the last one partly)
                box = (0.0, 0.0, stored[0] / draft["scale"], stored[1] / draft["scale"])
                img = img.resize(target, resample, box=box)
            elif img.size != target:
                img = img.resize(target, resample)
            stages = stages[1:]
        for stage in stages:
            img = stage(img)
        if img.mode != "RGB":
            raise SpikebridgeError(f"preprocessing expects RGB images, got mode {img.mode}")
        return torch.from_numpy(np.array(img, dtype=np.uint8))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """``uint8 [B, H, W, 3]`` -> normalised ``float32 [B, 3, H, W]`` (channels_last strides)."""
        if pixels.dtype != torch.uint8 or pixels.dim() != 4 or pixels.shape[-1] != 3:
            raise SpikebridgeError(f"pixels must be uint8 [B, H, W, 3], got {pixels.dtype} {list(pixels.shape)}")
        x = pixels.permute(0, 3, 1, 2).to(torch.float32).div_(255)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """One PIL image -> normalised ``float32 [3, H, W]`` (what the timm transform returns)."""
        return self.normalize(self.pixels(img)[None])[0].contiguous()


class Normalized(nn.Module):
    """``uint8 [B, H, W, 3]`` pixels -> ``net`` features, normalisation included (one compiled graph)."""

    def __init__(self, net: nn.Module, preprocess: Preprocess):
        super().__init__()
        self.net, self.preprocess = net, preprocess

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess.normalize(pixels))
