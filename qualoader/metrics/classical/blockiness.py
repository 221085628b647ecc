"""JPEG blockiness: luma steps on the 8x8 block grid relative to steps inside blocks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from qualoader._validation import check_positive_int
from qualoader.metrics.base import QualityMetric
from qualoader.metrics.classical._common import luminance
from qualoader.metrics.registry import register_metric

__all__ = ["Blockiness", "blockiness"]


def _boundary_means(steps: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """Mean step on block boundaries and mean step elsewhere, each (B,); ``steps`` is (B, N, M), along M."""
    position = torch.arange(1, steps.shape[-1] + 1, device=steps.device)
    on_grid = (position % block == 0).to(steps.dtype)
    boundary = (steps * on_grid).sum(dim=(1, 2)) / (on_grid.sum() * steps.shape[1])
    inside = (steps * (1 - on_grid)).sum(dim=(1, 2)) / ((1 - on_grid).sum() * steps.shape[1])
    return boundary, inside


def _check_block(block: int) -> int:
    check_positive_int(block, "block")
    if block < 2:
        raise ValueError(f"block should be an int >= 2, but got block={block}")
    return block


def blockiness(images: Tensor, block: int = 8, eps: float = 1e-6) -> Tensor:
    """Ratio of the mean absolute luma step across block boundaries to the mean step inside blocks.

    JPEG quantises each 8x8 block on its own, so coarse compression leaves steps on the block grid
    (anchored at the top-left pixel). Natural images score about 1; blocky images score more.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3}, with ``H, W > block``.
        block: block side in pixels (8 for JPEG), at least 2.
        eps: added to both means so flat images score 1 instead of 0/0.

    Returns:
        Scores :math:`(B,)` > 0; lower is better (rises with JPEG compression).

    Raises:
        ValueError: ``block < 2``, or the image is not larger than one block in both directions.

    Example:
        >>> blockiness(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    _check_block(block)
    if min(images.shape[-2:]) <= block:
        raise ValueError(f"images should be larger than block={block} in H and W, but got images.shape={tuple(images.shape)}")
    luma = luminance(images)[:, 0]
    across_columns = (luma[:, :, 1:] - luma[:, :, :-1]).abs()  # (B, H, W - 1): step between column j and j + 1
    across_rows = (luma[:, 1:, :] - luma[:, :-1, :]).abs().transpose(1, 2)  # (B, W, H - 1)
    boundary_x, inside_x = _boundary_means(across_columns, block)
    boundary_y, inside_y = _boundary_means(across_rows, block)
    return (boundary_x + boundary_y + 2 * eps) / (inside_x + inside_y + 2 * eps)


@register_metric
class Blockiness(QualityMetric):
    """Block-grid luma steps over in-block steps (about 1 for clean images); lower is better.

    Args:
        block: block side in pixels (8 for JPEG).
    """

    name = "blockiness"
    higher_is_better = False

    def __init__(self, block: int = 8, *, check_values: bool = True) -> None:
        super().__init__(check_values=check_values)
        self.block = _check_block(block)

    def get_config(self) -> dict[str, Any]:
        return {"block": self.block}

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        return blockiness(images, self.block)
