"""Helpers shared by the classical measures: working dtype and luminance."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["LUMA_WEIGHTS", "check_min_size", "luminance", "working"]

#: ITU-R BT.601 luma weights (the Y of YIQ / unscaled YCbCr), as used by MATLAB and pyiqa.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


def working(images: Tensor) -> Tensor:
    """Return ``images`` in a dtype safe for reductions (half precisions become float32)."""
    return images.float() if images.dtype in (torch.float16, torch.bfloat16) else images


def luminance(images: Tensor) -> Tensor:
    """BT.601 luma of RGB images; grey images are returned as they are.

    Args:
        images: :math:`(B, C, H, W)` with ``C`` in {1, 3}, values in [0, 1].

    Returns:
        Luma :math:`(B, 1, H, W)` in [0, 1], in the working dtype of :func:`working`.
    """
    images = working(images)
    if images.shape[1] == 1:
        return images
    red, green, blue = images.unbind(1)
    return (LUMA_WEIGHTS[0] * red + LUMA_WEIGHTS[1] * green + LUMA_WEIGHTS[2] * blue).unsqueeze(1)


def check_min_size(images: Tensor, size: int) -> None:
    """Raise ``ValueError`` unless both spatial sides of ``images`` are at least ``size``."""
    if min(images.shape[-2:]) < size:
        raise ValueError(f"images should be at least {size}x{size} pixels, but got images.shape={tuple(images.shape)}")
