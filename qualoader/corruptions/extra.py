"""Degradations outside ImageNet-C: low light, posterize, occlusion, vignette, over-sharpening, scanline dropout.

They form the ``"extra"`` family of :data:`qualoader.corruptions.CORRUPTION_FAMILIES`, kept apart so a
metric trained on the ImageNet-C families can be tested on degradation types it never saw
(``benchmarks/generalisation.py``). Each is ``f(images, severity, generator) -> images`` on float
images (B, C, H, W) in [0, 1], C in {1, 3}, batched, seeded only through ``generator``, with pixel
lengths defined at 32 px and scaled to the image's short side, like the ImageNet-C ones.
"""

from __future__ import annotations

import kornia.filters as KF
import torch
from torch import Tensor

from qualoader.corruptions._common import randn_like, scale

__all__ = ["low_light", "occlusion", "oversharpen", "posterize", "scanline", "vignette"]

_LOW_LIGHT = ((1.3, 0.7, 400.0), (1.6, 0.55, 200.0), (2.0, 0.4, 100.0), (2.4, 0.3, 60.0), (2.8, 0.2, 35.0))  # (gamma, exposure, photons)
_POSTERIZE_LEVELS = (10, 7, 5, 3, 2)  # grey levels per channel; 2 = binarised
_OCCLUSION_AREA = (0.06, 0.12, 0.2, 0.3, 0.42)  # fraction of the image hidden by one square patch
_VIGNETTE = (0.35, 0.5, 0.65, 0.8, 0.95)  # darkening at the corners
_OVERSHARPEN = ((1.5, 1.0), (3.0, 1.0), (5.0, 1.2), (8.0, 1.4), (12.0, 1.6))  # (amount, sigma px at 32)
_SCANLINE = (0.06, 0.12, 0.2, 0.3, 0.42)  # fraction of rows lost


def _uniform(count: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
    """``count`` uniform [0, 1) draws on the generator's device, moved to ``like``'s device and dtype."""
    device = generator.device if generator is not None else like.device
    return torch.rand(count, generator=generator, device=device).to(like.device, like.dtype)


def low_light(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Under-exposure: gamma ``(1.3 .. 2.8)`` then exposure ``(0.7 .. 0.2)``, then photon noise of a dim sensor.

    The noise is the Gaussian approximation of Poisson noise with ``(400 .. 35)`` photons at full
    intensity (std ``sqrt(x / photons)``), so it can be drawn on any device; fewer photons as the light falls.
    """
    gamma, exposure, photons = _LOW_LIGHT[severity - 1]
    dark = images.clamp_min(0.0).pow(gamma) * exposure
    return dark + dark.div(photons).sqrt() * randn_like(images, generator)


def posterize(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Bit-depth reduction: round every channel to ``(10, 7, 5, 3, 2)`` evenly spaced levels (deterministic)."""
    steps = _POSTERIZE_LEVELS[severity - 1] - 1
    return torch.round(images * steps) / steps


def occlusion(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Cut-out: one square patch covering ``(6 .. 42)%`` of the image at a random place, filled with a random grey."""
    batch, _, height, width = images.shape
    side = max(1, round((_OCCLUSION_AREA[severity - 1] * height * width) ** 0.5))
    side_h, side_w = min(side, height), min(side, width)
    draws = _uniform(3 * batch, generator, images).view(3, batch)
    top = (draws[0] * (height - side_h + 1)).floor().view(batch, 1, 1, 1)
    left = (draws[1] * (width - side_w + 1)).floor().view(batch, 1, 1, 1)
    rows = torch.arange(height, device=images.device, dtype=images.dtype).view(1, 1, height, 1)
    cols = torch.arange(width, device=images.device, dtype=images.dtype).view(1, 1, 1, width)
    inside = (rows >= top) & (rows < top + side_h) & (cols >= left) & (cols < left + side_w)
    # A grey fill rather than black, so the patch also hides dark content (e.g. garments on black).
    fill = (0.25 + 0.5 * draws[2]).view(batch, 1, 1, 1).expand_as(images)
    return torch.where(inside, fill, images)


def vignette(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Lens vignetting: brightness falls with the squared distance from a slightly off-centre point.

    The corners lose up to ``(35 .. 95)%`` of their brightness; the centre moves by up to 15% of
    the side per image so that a centred object is not always spared.
    """
    batch, _, height, width = images.shape
    strength = _VIGNETTE[severity - 1]
    offsets = (_uniform(2 * batch, generator, images).view(2, batch, 1, 1) - 0.5) * 0.3
    ys = torch.linspace(-1.0, 1.0, height, device=images.device, dtype=images.dtype).view(1, height, 1)
    xs = torch.linspace(-1.0, 1.0, width, device=images.device, dtype=images.dtype).view(1, 1, width)
    radius2 = ((ys - offsets[0]).square() + (xs - offsets[1]).square()) / 2.0  # 1 at a corner of the centred grid
    return images * (1.0 - strength * radius2.clamp(max=1.0)).unsqueeze(1)


def oversharpen(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Unsharp masking gone too far: ``x + amount * (x - blur(x))`` with amount ``(1.5 .. 12)``, which rings and clips at edges."""
    amount, sigma = _OVERSHARPEN[severity - 1]
    sigma = scale(images, sigma)
    size = max(3, 2 * int(3 * sigma) + 1)
    blurred = KF.gaussian_blur2d(images, (size, size), (sigma, sigma), border_type="reflect")
    return images + amount * (images - blurred)


def scanline(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Line dropout: a random ``(6 .. 42)%`` of the rows of each image are lost (set to black), as from a faulty sensor readout."""
    batch, _, height, _ = images.shape
    lost = _uniform(batch * height, generator, images).view(batch, 1, height, 1) < _SCANLINE[severity - 1]
    return images.masked_fill(lost, 0.0)
