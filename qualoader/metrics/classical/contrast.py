"""RMS contrast: standard deviation of the luma."""

from __future__ import annotations

from torch import Tensor

from qualoader.metrics.classical._common import ClassicalMetric
from qualoader.metrics.classical._features import BatchFeatures, as_features
from qualoader.metrics.registry import register_metric

__all__ = ["RMSContrast", "rms_contrast"]


def rms_contrast(images: Tensor | BatchFeatures) -> Tensor:
    """Root-mean-square contrast: the population standard deviation of the luma.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3} (or its ``BatchFeatures``).

    Returns:
        Scores :math:`(B,)` in [0, 0.5]; higher is better (falls as contrast is reduced).

    Example:
        >>> import torch
        >>> rms_contrast(torch.zeros(2, 3, 8, 8))
        tensor([0., 0.])
    """
    return as_features(images).luma_var.sqrt()


@register_metric
class RMSContrast(ClassicalMetric):
    """RMS contrast (standard deviation of the luma); higher is better."""

    name = "contrast"
    follows_downscale = False  # moments / counts over every pixel: downscale changes nothing
    higher_is_better = True

    def score_features(self, features: BatchFeatures) -> Tensor:
        return rms_contrast(features)
