"""Noise level: Immerkaer's fast estimate of the standard deviation of additive noise."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader.metrics.base import QualityMetric
from qualoader.metrics.classical._common import check_min_size, luminance
from qualoader.metrics.registry import register_metric

__all__ = ["NoiseLevel", "noise_level"]

# Difference of two Laplacians: cancels image structure up to second order, keeps the noise.
_IMMERKAER = ((1.0, -2.0, 1.0), (-2.0, 4.0, -2.0), (1.0, -2.0, 1.0))


def noise_level(images: Tensor) -> Tensor:
    """Immerkaer (1996) estimate of the noise standard deviation of the luma.

    :math:`\\sigma = \\sqrt{\\pi / 2} \\, \\frac{1}{6 (H - 2)(W - 2)} \\sum |I * M|` with the 3x3 mask
    :math:`M` above, evaluated inside the image (no padding).

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3}, ``H, W >= 3``.

    Returns:
        Noise standard deviation :math:`(B,)` in intensity units of [0, 1]; lower is better.

    Example:
        >>> noise_level(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2])
    """
    check_min_size(images, 3)
    luma = luminance(images)
    kernel = torch.tensor(_IMMERKAER, dtype=luma.dtype, device=luma.device).view(1, 1, 3, 3)
    response = F.conv2d(luma, kernel).abs().flatten(1).mean(dim=1)
    return response * (math.sqrt(math.pi / 2.0) / 6.0)


@register_metric
class NoiseLevel(QualityMetric):
    """Immerkaer noise standard deviation of the luma; lower is better (rises with added noise)."""

    name = "noise"
    higher_is_better = False

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        return noise_level(images)
