"""Blur corruptions: gaussian, defocus, motion, zoom and glass blur (radii scale with image size)."""

from __future__ import annotations

import math

import kornia.filters as KF
import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader.corruptions._common import scale

__all__ = ["defocus_blur", "gaussian_blur", "glass_blur", "motion_blur", "zoom_blur"]

_GAUSSIAN_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)  # CIFAR-10-C, in pixels of a 32 px image
_DEFOCUS_RADIUS = (0.3, 0.4, 0.5, 1.0, 1.5)
_MOTION_LENGTH = (2.0, 3.0, 4.0, 5.5, 7.0)
_ZOOM_MAX = (1.06, 1.11, 1.16, 1.21, 1.26)
_GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # (sigma, shift, iterations)


def _odd(size: float) -> int:
    return max(3, 2 * math.ceil(size) + 1)


def gaussian_blur(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian blur with sigma ``(0.4, 0.6, 0.7, 0.8, 1.0)`` px at 32 px, scaled to the image size."""
    sigma = scale(images, _GAUSSIAN_SIGMA[severity - 1])
    return KF.gaussian_blur2d(images, (_odd(3 * sigma),) * 2, (sigma, sigma), border_type="reflect")


def defocus_blur(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Anti-aliased disk (defocus) blur of radius ``(0.3, 0.4, 0.5, 1, 1.5)`` px at 32 px, plus half a pixel."""
    radius = scale(images, _DEFOCUS_RADIUS[severity - 1]) + 0.5
    size = _odd(radius)
    coords = torch.arange(size, device=images.device, dtype=images.dtype) - size // 2
    distance = (coords[None] ** 2 + coords[:, None] ** 2).sqrt()
    disk = (radius + 0.5 - distance).clamp(0.0, 1.0)
    return KF.filter2d(images, (disk / disk.sum())[None], border_type="reflect")


def motion_blur(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Linear motion blur of length ``(2, 3, 4, 5.5, 7)`` px at 32 px, one random angle per image."""
    length = _odd(scale(images, _MOTION_LENGTH[severity - 1]) / 2)
    device = generator.device if generator is not None else images.device
    angle = (torch.rand(images.shape[0], generator=generator, device=device) * 90.0 - 45.0).to(images.device)
    return KF.motion_blur(images, length, angle.to(images.dtype), torch.zeros_like(angle, dtype=images.dtype), border_type="reflect")


def zoom_blur(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Average of centre zooms from 1 to ``(1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]``."""
    height, width = images.shape[-2:]
    total = images.clone()
    zooms = torch.linspace(1.0, _ZOOM_MAX[severity - 1], 6)[1:]
    for zoom in zooms.tolist():
        size = (round(height * zoom), round(width * zoom))
        big = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        top, left = (size[0] - height) // 2, (size[1] - width) // 2
        total += big[..., top : top + height, left : left + width]
    return total / (len(zooms) + 1)


def glass_blur(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian blur, then local random pixel shuffling (``shift`` px, ``iterations`` times), then blur."""
    sigma, shift, iterations = _GLASS[severity - 1]
    sigma = max(scale(images, sigma), 0.05)
    batch, _, height, width = images.shape
    blurred = KF.gaussian_blur2d(images, (_odd(3 * sigma),) * 2, (sigma, sigma), border_type="reflect")
    device = generator.device if generator is not None else images.device
    rows = torch.arange(height, device=images.device).view(1, height, 1)
    cols = torch.arange(width, device=images.device).view(1, 1, width)
    for _ in range(iterations):
        offsets = torch.randint(-shift, shift + 1, (2, batch, height, width), generator=generator, device=device).to(images.device)
        source_rows = (rows + offsets[0]).clamp(0, height - 1)
        source_cols = (cols + offsets[1]).clamp(0, width - 1)
        flat = (source_rows * width + source_cols).view(batch, 1, -1).expand(-1, images.shape[1], -1)
        blurred = blurred.flatten(2).gather(2, flat).view_as(images)
    return KF.gaussian_blur2d(blurred, (_odd(3 * sigma),) * 2, (sigma, sigma), border_type="reflect")
