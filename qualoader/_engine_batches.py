"""How the scoring engine lays out a batch: groups of one shape and dtype, rows put back in input order, the value check.

Split from :mod:`qualoader.engine` (the engine's grouping); the shared forward pass lives in
:mod:`qualoader._shared_pass`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader.metrics.classical._common import check_batch_structure

__all__ = ["as_groups", "check_on_host", "out_of_range", "put", "resize_batch", "rows_of"]


def as_groups(images: Tensor | Sequence[Tensor]) -> tuple[int, list[tuple[list[int] | None, Tensor]]]:
    """``(B, [(rows or None for all, stack (b, C, H, W))])``: the batch split by shape and dtype."""
    if isinstance(images, Tensor):
        if images.ndim == 3:  # (B, H, W): grey images without a channel axis
            images = images.unsqueeze(1)
        check_batch_structure(images, "images")
        return images.shape[0], [(None, images)]
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise TypeError(
            f"images should be a tensor (B, C, H, W) or a sequence of tensors (C, H, W), but got images of type {type(images).__name__}"
        )
    if not images:
        raise ValueError("images should hold at least one image, but got an empty sequence")
    groups: dict[tuple[Any, ...], list[int]] = {}
    for row, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise TypeError(f"images[{row}] should be a tensor (C, H, W), but got images[{row}] of type {type(image).__name__}")
        if image.ndim == 2:
            image = image.unsqueeze(0)
        if image.ndim != 3:
            raise ValueError(f"images[{row}] should have shape (C, H, W), but got images[{row}].shape={tuple(image.shape)}")
        groups.setdefault((*image.shape, image.dtype), []).append(row)
    out = []
    for rows in groups.values():
        members = [images[r] if images[r].ndim == 3 else images[r].unsqueeze(0) for r in rows]
        # One image: a view, not a copy (mixed-size batches are mostly groups of one, and every
        # small op costs a thread-pool round trip on a busy CPU).
        stack = members[0].unsqueeze(0) if len(members) == 1 else torch.stack(members)
        check_batch_structure(stack, f"images[{rows[0]}]")
        out.append((rows if len(rows) < len(images) else None, stack))
    return len(images), out


def out_of_range(images: Tensor) -> Tensor:
    """0-d bool on the images' device: some value is NaN, infinite or outside [0, 1]."""
    low, high = images.aminmax()
    return ~((low >= 0) & (high <= 1))  # NaN fails both comparisons


def rows_of(rows: Tensor | None, part: Tensor) -> Tensor:
    return torch.arange(part.shape[0], device=part.device) if rows is None else rows


def put(target: Tensor, rows: Tensor | slice | None, values: Tensor) -> None:
    """``target[rows] = values`` (``None``: every row)."""
    if rows is None:
        target.copy_(values)
    elif isinstance(rows, slice):
        target[rows] = values
    else:
        target.index_copy_(0, rows, values.to(target.dtype))


def check_on_host(images: Tensor | Sequence[Tensor]) -> None:
    """Run the full value check of the float images on the host, raising the ``ValueError`` that names the problem (error path only)."""
    from qualoader._validation import check_images

    if isinstance(images, Tensor):
        stacks = [images.unsqueeze(1) if images.ndim == 3 else images]
    else:
        stacks = [image.reshape(1, -1, *image.shape[-2:]) for image in images if isinstance(image, Tensor)]
    for position, stack in enumerate(stacks):
        if stack.is_floating_point() and stack.ndim == 4:
            check_images(stack.detach().cpu(), "images" if isinstance(images, Tensor) else f"images[{position}]", check_values=True)


def resize_batch(images: Tensor, size: tuple[int, int]) -> Tensor:
    """``images`` :math:`(B, C, H, W)` at ``size``, as a reference network's preprocess resizes (antialiased bilinear, float32).

    Images already at ``size`` are returned as they are.
    """
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    source = images if images.dtype == torch.float32 else images.float()
    return F.interpolate(source, size=size, mode="bilinear", align_corners=False, antialias=True)
