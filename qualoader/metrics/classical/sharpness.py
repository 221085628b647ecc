"""Sharpness: variance of the Laplacian and mean gradient energy of the luma."""

from __future__ import annotations

from torch import Tensor

from qualoader.metrics.classical._common import ClassicalMetric, check_min_size
from qualoader.metrics.classical._features import BatchFeatures, as_features
from qualoader.metrics.registry import register_metric

__all__ = ["GradientEnergy", "LaplacianVariance", "gradient_energy", "laplacian_variance"]


def laplacian_variance(images: Tensor | BatchFeatures) -> Tensor:
    """Variance of the 3x3 Laplacian response of the luma (inside the image, no padding).

    Blur removes high frequencies, so the score falls as blur rises: higher is sharper.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3}, ``H, W >= 3`` (or the
            :class:`~qualoader.metrics.classical.BatchFeatures` of such a batch).

    Returns:
        Scores :math:`(B,)` >= 0 (in squared intensity units of [0, 1] images).

    Example:
        >>> import torch
        >>> laplacian_variance(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    check_min_size(images, 3)
    return as_features(images).laplacian_var


def gradient_energy(images: Tensor | BatchFeatures) -> Tensor:
    """Mean squared Sobel gradient magnitude of the luma (Tenengrad energy).

    The Sobel kernels are normalised (divided by 8) and the luma is replicate-padded, as in
    ``kornia.filters.spatial_gradient(luma, "sobel", normalized=True)``.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3} (or its ``BatchFeatures``).

    Returns:
        Scores :math:`(B,)` >= 0; higher is sharper.

    Example:
        >>> import torch
        >>> gradient_energy(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    check_min_size(images, 3)
    features = as_features(images)
    return features.sobel_energy / (features.height * features.width)


@register_metric
class LaplacianVariance(ClassicalMetric):
    """Variance of the Laplacian of the luma; higher means sharper (falls with blur)."""

    name = "sharpness"
    higher_is_better = True
    min_size = 3

    def score_features(self, features: BatchFeatures) -> Tensor:
        return laplacian_variance(features)


@register_metric
class GradientEnergy(ClassicalMetric):
    """Mean squared Sobel gradient magnitude of the luma; higher means sharper (falls with blur)."""

    name = "gradient-energy"
    higher_is_better = True
    min_size = 3

    def score_features(self, features: BatchFeatures) -> Tensor:
        return gradient_energy(features)
