"""Colourfulness of Hasler and Suesstrunk (2003)."""

from __future__ import annotations

import torch
from torch import Tensor

from qualoader.metrics.classical._common import ClassicalMetric
from qualoader.metrics.classical._features import BatchFeatures, as_features
from qualoader.metrics.registry import register_metric

__all__ = ["Colorfulness", "colorfulness"]


def colorfulness(images: Tensor | BatchFeatures) -> Tensor:
    """Hasler-Suesstrunk colourfulness :math:`\\sqrt{\\sigma_{rg}^2 + \\sigma_{yb}^2} + 0.3 \\sqrt{\\mu_{rg}^2 + \\mu_{yb}^2}`.

    With opponent channels :math:`rg = R - G` and :math:`yb = (R + G) / 2 - B`, computed on [0, 1]
    intensities (the paper's values on 0..255 images are 255 times larger). Grey images
    (``C == 1``) have no chroma, so their colourfulness is defined as 0.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3} (or its ``BatchFeatures``).

    Returns:
        Scores :math:`(B,)` >= 0; higher is more colourful (falls with desaturation).

    Example:
        >>> import torch
        >>> colorfulness(torch.rand(2, 1, 8, 8))
        tensor([0., 0.])
    """
    features = as_features(images)
    if features.channels == 1:
        return torch.zeros(features.batch, dtype=features.dtype, device=features.device)
    rg_mean, rg_var, yb_mean, yb_var = features.opponent_moments
    return (rg_var + yb_var).sqrt() + 0.3 * (rg_mean.square() + yb_mean.square()).sqrt()


@register_metric
class Colorfulness(ClassicalMetric):
    """Hasler-Suesstrunk colourfulness (0 for grey images); higher is better."""

    name = "colorfulness"
    follows_downscale = False  # moments / counts over every pixel: downscale changes nothing
    higher_is_better = True

    def score_features(self, features: BatchFeatures) -> Tensor:
        return colorfulness(features)
