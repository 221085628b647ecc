"""JPEG blockiness: luma steps on the 8x8 block grid relative to steps inside blocks."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from qualoader._validation import check_positive_int
from qualoader.metrics.classical._common import ClassicalMetric
from qualoader.metrics.classical._features import BatchFeatures, as_features
from qualoader.metrics.registry import register_metric

__all__ = ["Blockiness", "blockiness"]


def _check_block(block: int) -> int:
    check_positive_int(block, "block")
    if block < 2:
        raise ValueError(f"block should be an int >= 2, but got block={block}")
    return block


def blockiness(images: Tensor | BatchFeatures, block: int = 8, eps: float = 1e-6) -> Tensor:
    """Ratio of the mean absolute luma step across block boundaries to the mean step inside blocks.

    JPEG quantises each 8x8 block on its own, so coarse compression leaves steps on the block grid
    (anchored at the top-left pixel). Natural images score about 1; blocky images score more.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3}, with ``H, W > block`` (or
            its ``BatchFeatures``).
        block: block side in pixels (8 for JPEG), at least 2.
        eps: added to both means so flat images score 1 instead of 0/0.

    Returns:
        Scores :math:`(B,)` > 0; lower is better (rises with JPEG compression).

    Raises:
        ValueError: ``block < 2``, or the image is not larger than one block in both directions.

    Example:
        >>> import torch
        >>> blockiness(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    _check_block(block)
    features = as_features(images)
    if min(features.shape[-2:]) <= block:
        raise ValueError(f"images should be larger than block={block} in H and W, but got images.shape={tuple(features.shape)}")
    boundary_x, inside_x, boundary_y, inside_y = features.steps(block)
    return (boundary_x + boundary_y + 2 * eps) / (inside_x + inside_y + 2 * eps)


@register_metric
class Blockiness(ClassicalMetric):
    """Block-grid luma steps over in-block steps (about 1 for clean images); lower is better.

    Args:
        block: block side in pixels (8 for JPEG).
    """

    name = "blockiness"
    higher_is_better = False
    follows_downscale = False  # the 8-pixel JPEG grid is only seen at full resolution

    def __init__(self, block: int = 8, *, downscale: int = 1, check_values: bool = True) -> None:
        super().__init__(downscale=downscale, check_values=check_values)
        self.block = _check_block(block)
        self.min_size = self.block + 1  # type: ignore[misc]  # one full block plus a step across its edge

    def get_config(self) -> dict[str, Any]:
        return {"block": self.block, **super().get_config()}

    def score_features(self, features: BatchFeatures) -> Tensor:
        return blockiness(features, self.block)
