"""Mean brightness: average luma."""

from __future__ import annotations

from torch import Tensor

from qualoader.metrics.classical._common import ClassicalMetric
from qualoader.metrics.classical._features import BatchFeatures, as_features
from qualoader.metrics.registry import register_metric

__all__ = ["MeanBrightness", "mean_brightness"]


def mean_brightness(images: Tensor | BatchFeatures) -> Tensor:
    """Mean BT.601 luma of each image.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3} (or its ``BatchFeatures``).

    Returns:
        Scores :math:`(B,)` in [0, 1]; rises with brightness.

    Example:
        >>> import torch
        >>> mean_brightness(torch.ones(2, 3, 8, 8))
        tensor([1., 1.])
    """
    return as_features(images).luma_mean


@register_metric
class MeanBrightness(ClassicalMetric):
    """Mean luma in [0, 1]; a descriptive exposure measure (higher = brighter, not necessarily better).

    ``higher_is_better`` is ``True`` by convention (under-exposure is the commoner defect); use
    :mod:`qualoader.metrics.classical.clipping` to catch over-exposure.
    """

    name = "brightness"
    follows_downscale = False  # moments / counts over every pixel: downscale changes nothing
    higher_is_better = True

    def score_features(self, features: BatchFeatures) -> Tensor:
        return mean_brightness(features)
