"""Noise level: Immerkaer's fast estimate of the standard deviation of additive noise."""

from __future__ import annotations

import math

from torch import Tensor

from qualoader.metrics.classical._common import ClassicalMetric, check_min_size
from qualoader.metrics.classical._features import BatchFeatures, as_features
from qualoader.metrics.registry import register_metric

__all__ = ["NoiseLevel", "noise_level"]

# sqrt(pi / 2) / 6: turns the mean absolute response of the mask (whose squared weights sum to 36)
# into a Gaussian standard deviation.
_SCALE = math.sqrt(math.pi / 2.0) / 6.0


def noise_level(images: Tensor | BatchFeatures) -> Tensor:
    """Immerkaer (1996) estimate of the noise standard deviation of the luma.

    :math:`\\sigma = \\sqrt{\\pi / 2} \\, \\frac{1}{6 (H - 2)(W - 2)} \\sum |I * M|` with the 3x3 mask
    :math:`M = [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]` (a difference of two Laplacians: it cancels
    image structure up to second order and keeps the noise), evaluated inside the image.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3}, ``H, W >= 3`` (or its
            ``BatchFeatures``).

    Returns:
        Noise standard deviation :math:`(B,)` in intensity units of [0, 1]; lower is better.

    Example:
        >>> import torch
        >>> noise_level(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2])
    """
    check_min_size(images, 3)
    features = as_features(images)
    return features.immerkaer_sum * (_SCALE / ((features.height - 2) * (features.width - 2)))


@register_metric
class NoiseLevel(ClassicalMetric):
    """Immerkaer noise standard deviation of the luma; lower is better (rises with added noise)."""

    name = "noise"
    higher_is_better = False
    min_size = 3

    def score_features(self, features: BatchFeatures) -> Tensor:
        return noise_level(features)
