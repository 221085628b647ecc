"""Weather corruptions generated locally (no downloaded textures): fog and spatter."""

from __future__ import annotations

import kornia.filters as KF
import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader.corruptions._common import rand_like, scale

__all__ = ["fog", "spatter"]

_FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))  # (strength, 1/decay) as ImageNet-C
_SPATTER = (0.62, 0.64, 0.65, 0.66, 0.67)  # threshold of the smoothed noise that becomes droplets


def _plasma(images: Tensor, generator: torch.Generator | None, decay: float) -> Tensor:
    """Multi-octave value noise of shape (B, 1, H, W) in [0, 1]: coarse octaves weigh most."""
    batch, _, height, width = images.shape
    total = images.new_zeros(batch, 1, height, width)
    weight, weights = 1.0, 0.0
    cells = 2
    while cells <= max(height, width):
        octave = rand_like(images.new_empty(batch, 1, cells, cells), generator)
        total += weight * F.interpolate(octave, size=(height, width), mode="bicubic", align_corners=False)
        weights += weight
        weight /= decay
        cells *= 2
    total = total / weights
    low = total.amin(dim=(2, 3), keepdim=True)
    high = total.amax(dim=(2, 3), keepdim=True)
    return (total - low) / (high - low).clamp_min(1e-8)


def fog(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Add a smooth plasma-noise haze of strength ``(0.2, 0.5, 0.75, 1, 1.5)`` and renormalise to the image's max."""
    strength, decay = _FOG[severity - 1]
    peak = images.amax(dim=(1, 2, 3), keepdim=True)
    hazy = images + strength * _plasma(images, generator, decay)
    return hazy * peak / (peak + strength)


def spatter(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Opaque muddy droplets: thresholded smoothed noise covering more of the image as severity rises."""
    sigma = max(scale(images, 1.0), 0.5)
    size = 2 * int(3 * sigma) + 1
    noise = rand_like(images.new_empty(images.shape[0], 1, *images.shape[-2:]), generator)
    smooth = KF.gaussian_blur2d(noise, (size, size), (sigma, sigma), border_type="reflect")
    smooth = (smooth - smooth.mean(dim=(2, 3), keepdim=True)) / smooth.std(dim=(2, 3), keepdim=True).clamp_min(1e-8)
    threshold = (0.68 - _SPATTER[severity - 1]) * 30.0 + 1.0  # z-score: larger severity, lower threshold
    mask = torch.sigmoid((smooth - threshold) * 4.0)
    mud = images.new_tensor(0.35)
    return images * (1 - mask) + mud * mask
