"""Digital and photometric corruptions: brightness, contrast, saturate, pixelate, jpeg, elastic."""

from __future__ import annotations

import io

import kornia.color as KC
import kornia.filters as KF
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from qualoader.corruptions._common import randn_like, scale
from qualoader.decoding import decode_image

__all__ = ["brightness", "contrast", "elastic", "jpeg", "pixelate", "saturate"]

_BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
_CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
_SATURATE = (0.3, 0.1, 2.0, 5.0, 20.0)  # severities 1-2 desaturate, 3-5 over-saturate (ImageNet-C)
_PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
_JPEG_QUALITY = (80, 65, 58, 50, 40)
_ELASTIC = ((1.0, 0.5), (1.5, 0.6), (2.0, 0.7), (2.5, 0.8), (3.0, 0.9))  # (displacement px at 32, smoothing px at 32)


def brightness(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Raise the HSV value (C=3) or the intensity (C=1) by ``(0.1, ..., 0.5)[severity - 1]``."""
    shift = _BRIGHTNESS[severity - 1]
    if images.shape[1] == 1:
        return images + shift
    hsv = KC.rgb_to_hsv(images)
    hsv = torch.cat([hsv[:, :2], (hsv[:, 2:] + shift).clamp(0.0, 1.0)], dim=1)
    return KC.hsv_to_rgb(hsv)


def contrast(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Shrink towards each image's mean by the factor ``(0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]``."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * _CONTRAST[severity - 1] + mean


def saturate(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Scale the HSV saturation by ``(0.3, 0.1, 2, 5, 20)[severity - 1]``; grey (C=1) images are returned unchanged."""
    if images.shape[1] == 1:
        return images.clone()
    hsv = KC.rgb_to_hsv(images)
    hsv = torch.cat([hsv[:, :1], (hsv[:, 1:2] * _SATURATE[severity - 1]).clamp(0.0, 1.0), hsv[:, 2:]], dim=1)
    return KC.hsv_to_rgb(hsv)


def pixelate(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Box-downsample by ``(0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]`` and upsample with nearest neighbours."""
    height, width = images.shape[-2:]
    factor = _PIXELATE[severity - 1]
    small = F.interpolate(images, size=(max(1, int(height * factor)), max(1, int(width * factor))), mode="area")
    return F.interpolate(small, size=(height, width), mode="nearest")


def _jpeg_round_trip(image: Tensor, quality: int) -> Tensor:
    """Encode one ``uint8`` image :math:`(C, H, W)` as JPEG with PIL and decode it with the package's decoder."""
    array = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    buffer = io.BytesIO()
    # 4:2:0 chroma subsampling, as torchvision's (deprecated) encode_jpeg used: the round trip gives
    # the same pixels bit for bit, so sweeps and shipped calibrations are unchanged.
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buffer, format="JPEG", quality=quality, subsampling=2)
    return decode_image(buffer.getvalue())


def jpeg(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """A real JPEG round trip (libjpeg through PIL, on CPU) at quality ``(80, 65, 58, 50, 40)[severity - 1]``."""
    pixels = images.detach().mul(255).round().clamp(0, 255).to(torch.uint8).cpu()
    decoded = torch.stack([_jpeg_round_trip(image, _JPEG_QUALITY[severity - 1]) for image in pixels])
    return decoded.to(images.device, images.dtype) / 255.0


def elastic(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Elastic warp: a smoothed random displacement field of ``(1, ..., 3)`` px at 32 px amplitude."""
    displacement, smoothing = _ELASTIC[severity - 1]
    batch, _, height, width = images.shape
    sigma = max(scale(images, smoothing * 4), 0.5)
    field = randn_like(images.new_empty(batch, 2, height, width), generator)
    size = 2 * int(3 * sigma) + 1
    field = KF.gaussian_blur2d(field, (size, size), (sigma, sigma), border_type="reflect")
    field = field / field.flatten(1).std(dim=1).clamp_min(1e-8).view(batch, 1, 1, 1)
    field = field * scale(images, displacement)
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, height, device=images.device, dtype=images.dtype),
        torch.linspace(-1, 1, width, device=images.device, dtype=images.dtype),
        indexing="ij",
    )
    grid = torch.stack([xs + field[:, 0] * 2 / max(width - 1, 1), ys + field[:, 1] * 2 / max(height - 1, 1)], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
