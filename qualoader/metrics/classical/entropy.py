"""Histogram entropy of the 8-bit luma (the MATLAB / pyiqa ``entropy``)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from qualoader._validation import check_positive_int
from qualoader.metrics.classical._common import ClassicalMetric
from qualoader.metrics.classical._features import BatchFeatures, as_features
from qualoader.metrics.registry import register_metric

__all__ = ["HistogramEntropy", "histogram_entropy"]


def histogram_entropy(images: Tensor | BatchFeatures, bins: int = 256) -> Tensor:
    """Shannon entropy (bits) of the luma histogram with ``bins`` equal bins over [0, 1].

    The luma is quantised to ``round(y * (bins - 1))``, as MATLAB's ``entropy`` and pyiqa do for
    8-bit images; the histogram of the whole batch is built at once with ``scatter_add_`` (and
    shared with the other measures through :class:`BatchFeatures`).

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3} (or its ``BatchFeatures``).
        bins: number of grey levels (256 for 8-bit images).

    Returns:
        Scores :math:`(B,)` in [0, log2(bins)]; higher is better (falls with contrast loss and
        quantisation).

    Example:
        >>> import torch
        >>> histogram_entropy(torch.zeros(2, 1, 8, 8))
        tensor([0., 0.])
    """
    check_positive_int(bins, "bins")
    features = as_features(images)
    probability = features.luma_histogram(bins) / features.pixels_per_image
    # p log(1/p) rather than -p log(p): a one-level histogram then gives +0, not -0
    return torch.special.xlogy(probability, probability.reciprocal()).sum(dim=1) / math.log(2.0)


@register_metric
class HistogramEntropy(ClassicalMetric):
    """Shannon entropy of the 8-bit luma histogram, in bits; higher is better.

    Args:
        bins: number of grey levels.
    """

    name = "entropy"
    follows_downscale = False  # a histogram has no neighbourhood: counted over every pixel at any downscale
    higher_is_better = True

    def __init__(self, bins: int = 256, *, downscale: int = 1, check_values: bool = True) -> None:
        super().__init__(downscale=downscale, check_values=check_values)
        self.bins = check_positive_int(bins, "bins")

    def get_config(self) -> dict[str, Any]:
        return {"bins": self.bins, **super().get_config()}

    def score_features(self, features: BatchFeatures) -> Tensor:
        return histogram_entropy(features, self.bins)
