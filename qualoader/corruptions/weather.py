"""Weather corruptions generated locally (no downloaded textures): fog, frost, snow and spatter.

ImageNet-C draws frost from photographed ice textures and snow from layered random flakes; here both
are procedural (frost: ridged multi-octave noise; snow: thresholded noise smeared by motion blur),
so they need no files, run batched on the images' device and depend only on ``generator``.
"""

from __future__ import annotations

import kornia.filters as KF
import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader.corruptions._common import rand_like, scale

__all__ = ["fog", "frost", "snow", "spatter"]

_FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))  # (strength, 1/decay) as ImageNet-C
_SPATTER = (0.62, 0.64, 0.65, 0.66, 0.67)  # threshold of the smoothed noise that becomes droplets
_FROST = ((1.0, 0.25), (0.95, 0.35), (0.9, 0.45), (0.85, 0.5), (0.75, 0.6))  # (image weight, ice weight) as ImageNet-C's blend
# (cover: share of pixels a streak crosses, streak length px at 32, whiteout: how far the scene is washed towards grey-white)
_SNOW = ((0.1, 3.0, 0.05), (0.16, 4.0, 0.1), (0.22, 4.0, 0.15), (0.3, 6.0, 0.2), (0.38, 8.0, 0.25))


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


def frost(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Blend with a procedural ice layer: ``a * image + b * ice`` with ``(a, b)`` from ``(1, 0.25)`` to ``(0.75, 0.6)``.

    The ice is ridged value noise (bright thin crests where the noise passes the middle of its range), so it hides
    fine detail in streaks rather than uniformly like fog.
    """
    image_weight, ice_weight = _FROST[severity - 1]
    noise = _plasma(images, generator, decay=1.6)
    ice = (1.0 - (2.0 * noise - 1.0).abs()).pow(3)
    return image_weight * images + ice_weight * ice


def snow(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Falling snow: the scene washed towards grey-white, plus flakes streaked along one random direction per image.

    Flakes of brightness in [0.5, 1] are smeared by a motion blur of ``(3, ..., 8)`` px at 32 px (scaled to the
    image size) into streaks crossing about ``(10, ..., 38)`` % of the pixels, added to the washed-out scene.
    """
    cover, length, whiteout = _SNOW[severity - 1]
    batch, _, height, width = images.shape
    kernel = max(3, 2 * round(scale(images, length) / 2) + 1)
    seeds = rand_like(images.new_empty(batch, 2, height, width), generator)
    # Each seed becomes a streak about `kernel` pixels long: seeding cover / kernel of the pixels covers about `cover`
    # of them, at any image size.
    flakes = (seeds[:, :1] < cover / kernel).to(images.dtype) * (0.5 + 0.5 * seeds[:, 1:])
    device = generator.device if generator is not None else images.device
    # near-vertical fall: 60 to 120 degrees
    angle = (torch.rand(batch, generator=generator, device=device) * 60.0 - 30.0 + 90.0).to(images.device, images.dtype)
    # Each flake spreads over ~kernel pixels; rescaling by kernel keeps its peak visible instead of fading as it lengthens.
    streaks = (KF.motion_blur(flakes, kernel, angle, torch.zeros_like(angle), border_type="constant") * kernel / 2).clamp(0.0, 1.0)
    grey = images.mean(dim=1, keepdim=True)
    washed = (1 - whiteout) * images + whiteout * torch.maximum(images, 1.5 * grey + 0.5).clamp(max=1.0)
    return washed + streaks
