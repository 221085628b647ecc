"""Sharpness: variance of the Laplacian and mean gradient energy of the luma."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import spatial_gradient
from torch import Tensor

from qualoader.metrics.base import QualityMetric
from qualoader.metrics.classical._common import check_min_size, luminance
from qualoader.metrics.registry import register_metric

__all__ = ["GradientEnergy", "LaplacianVariance", "gradient_energy", "laplacian_variance"]

_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def laplacian_variance(images: Tensor) -> Tensor:
    """Variance of the 3x3 Laplacian response of the luma (inside the image, no padding).

    Blur removes high frequencies, so the score falls as blur rises: higher is sharper.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3}, ``H, W >= 3``.

    Returns:
        Scores :math:`(B,)` >= 0 (in squared intensity units of [0, 1] images).

    Example:
        >>> laplacian_variance(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    check_min_size(images, 3)
    luma = luminance(images)
    kernel = torch.tensor(_LAPLACIAN, dtype=luma.dtype, device=luma.device).view(1, 1, 3, 3)
    response = F.conv2d(luma, kernel)
    return response.flatten(1).var(dim=1, unbiased=False)


def gradient_energy(images: Tensor) -> Tensor:
    """Mean squared Sobel gradient magnitude of the luma (Tenengrad energy).

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3}.

    Returns:
        Scores :math:`(B,)` >= 0; higher is sharper.

    Example:
        >>> gradient_energy(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    check_min_size(images, 3)
    gradients = spatial_gradient(luminance(images), mode="sobel", order=1, normalized=True)  # (B, 1, 2, H, W)
    return gradients.square().sum(dim=2).flatten(1).mean(dim=1)


@register_metric
class LaplacianVariance(QualityMetric):
    """Variance of the Laplacian of the luma; higher means sharper (falls with blur)."""

    name = "sharpness"
    higher_is_better = True

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        return laplacian_variance(images)


@register_metric
class GradientEnergy(QualityMetric):
    """Mean squared Sobel gradient magnitude of the luma; higher means sharper (falls with blur)."""

    name = "gradient-energy"
    higher_is_better = True

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        return gradient_energy(images)
