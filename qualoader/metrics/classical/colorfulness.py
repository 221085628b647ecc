"""Colourfulness of Hasler and Suesstrunk (2003)."""

from __future__ import annotations

from torch import Tensor

from qualoader.metrics.base import QualityMetric
from qualoader.metrics.classical._common import working
from qualoader.metrics.registry import register_metric

__all__ = ["Colorfulness", "colorfulness"]


def colorfulness(images: Tensor) -> Tensor:
    """Hasler-Suesstrunk colourfulness :math:`\\sqrt{\\sigma_{rg}^2 + \\sigma_{yb}^2} + 0.3 \\sqrt{\\mu_{rg}^2 + \\mu_{yb}^2}`.

    With opponent channels :math:`rg = R - G` and :math:`yb = (R + G) / 2 - B`, computed on [0, 1]
    intensities (the paper's values on 0..255 images are 255 times larger). Grey images
    (``C == 1``) have no chroma, so their colourfulness is defined as 0.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3}.

    Returns:
        Scores :math:`(B,)` >= 0; higher is more colourful (falls with desaturation).

    Example:
        >>> colorfulness(torch.rand(2, 1, 8, 8))
        tensor([0., 0.])
    """
    images = working(images)
    if images.shape[1] == 1:
        return images.new_zeros(images.shape[0])
    red, green, blue = images.flatten(2).unbind(1)
    rg = red - green
    yb = 0.5 * (red + green) - blue
    spread = (rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False)).sqrt()
    offset = (rg.mean(dim=1).square() + yb.mean(dim=1).square()).sqrt()
    return spread + 0.3 * offset


@register_metric
class Colorfulness(QualityMetric):
    """Hasler-Suesstrunk colourfulness (0 for grey images); higher is better."""

    name = "colorfulness"
    higher_is_better = True

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        return colorfulness(images)
