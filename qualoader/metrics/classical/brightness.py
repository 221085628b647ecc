"""Mean brightness: average luma."""

from __future__ import annotations

from torch import Tensor

from qualoader.metrics.base import QualityMetric
from qualoader.metrics.classical._common import luminance
from qualoader.metrics.registry import register_metric

__all__ = ["MeanBrightness", "mean_brightness"]


def mean_brightness(images: Tensor) -> Tensor:
    """Mean BT.601 luma of each image.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3}.

    Returns:
        Scores :math:`(B,)` in [0, 1]; rises with brightness.

    Example:
        >>> mean_brightness(torch.ones(2, 3, 8, 8))
        tensor([1., 1.])
    """
    return luminance(images).flatten(1).mean(dim=1)


@register_metric
class MeanBrightness(QualityMetric):
    """Mean luma in [0, 1]; a descriptive exposure measure (higher = brighter, not necessarily better).

    ``higher_is_better`` is ``True`` by convention (under-exposure is the commoner defect); use
    :mod:`qualoader.metrics.classical.clipping` to catch over-exposure.
    """

    name = "brightness"
    higher_is_better = True

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        return mean_brightness(images)
