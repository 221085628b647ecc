"""Clipped-pixel fraction: share of values saturated at black or white."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from qualoader._validation import check_probability
from qualoader.metrics.classical._common import ClassicalMetric
from qualoader.metrics.classical._features import BatchFeatures, as_features
from qualoader.metrics.registry import register_metric

__all__ = ["ClippedFraction", "clipped_fraction"]

_LOW = 0.5 / 255.0
_HIGH = 1.0 - 0.5 / 255.0


def _check_bounds(low: float, high: float) -> None:
    check_probability(low, "low")
    check_probability(high, "high")
    if not low < high:
        raise ValueError(f"low should be smaller than high={high}, but got low={low}")


def clipped_fraction(images: Tensor | BatchFeatures, low: float = _LOW, high: float = _HIGH) -> Tensor:
    """Fraction of channel values at or below ``low`` or at or above ``high``.

    The defaults count values that round to 0 or 255 in 8 bits.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3} (or its ``BatchFeatures``).
        low: values ``<= low`` count as clipped black.
        high: values ``>= high`` count as clipped white.

    Returns:
        Scores :math:`(B,)` in [0, 1]; lower is better (rises with over- and under-exposure).

    Example:
        >>> import torch
        >>> clipped_fraction(torch.ones(2, 3, 4, 4))
        tensor([1., 1.])
    """
    _check_bounds(low, high)
    features = as_features(images)
    return features.clipped_count(low, high) / features.values_per_image


@register_metric
class ClippedFraction(ClassicalMetric):
    """Fraction of channel values clipped to black or white; lower is better.

    Args:
        low: values ``<= low`` count as clipped black (default: rounds to 0 in 8 bits).
        high: values ``>= high`` count as clipped white (default: rounds to 255 in 8 bits).
    """

    name = "clipping"
    follows_downscale = False  # moments / counts over every pixel: downscale changes nothing
    higher_is_better = False

    def __init__(self, low: float = _LOW, high: float = _HIGH, *, downscale: int = 1, check_values: bool = True) -> None:
        super().__init__(downscale=downscale, check_values=check_values)
        _check_bounds(low, high)
        self.low, self.high = float(low), float(high)

    def get_config(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, **super().get_config()}

    def score_features(self, features: BatchFeatures) -> Tensor:
        return clipped_fraction(features, self.low, self.high)
