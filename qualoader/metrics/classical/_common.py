"""Helpers shared by the classical measures: working dtype, luminance, size check and their base class."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from qualoader import _validation as validation
from qualoader._validation import check_images
from qualoader.metrics.base import QualityMetric
from qualoader.metrics.classical._features import LUMA_WEIGHTS, BatchFeatures, check_downscale

__all__ = ["LUMA_WEIGHTS", "ClassicalMetric", "check_batch_structure", "check_min_size", "luminance", "working"]


def working(images: Tensor) -> Tensor:
    """Return ``images`` in a dtype safe for reductions (half precisions become float32)."""
    return images.float() if images.dtype in (torch.float16, torch.bfloat16) else images


def luminance(images: Tensor) -> Tensor:
    """BT.601 luma of RGB images; grey images are returned as they are.

    Args:
        images: :math:`(B, C, H, W)` with ``C`` in {1, 3}, values in [0, 1].

    Returns:
        Luma :math:`(B, 1, H, W)` in [0, 1], in the working dtype of :func:`working`.
    """
    images = working(images)
    if images.shape[1] == 1:
        return images
    red, green, blue = images.unbind(1)
    return (LUMA_WEIGHTS[0] * red + LUMA_WEIGHTS[1] * green + LUMA_WEIGHTS[2] * blue).unsqueeze(1)


def check_min_size(images: Tensor | BatchFeatures, size: int) -> None:
    """Raise ``ValueError`` unless both spatial sides of ``images`` (of the reduced luma for a
    downscaled ``BatchFeatures``: ``size * downscale`` of the images) are at least ``size``."""
    if isinstance(images, BatchFeatures) and images.downscale > 1:
        if min(images.height, images.width) < size:
            full = size * images.downscale
            shape = tuple(images.shape)
            raise ValueError(
                f"images should be at least {full}x{full} pixels at downscale={images.downscale}, but got images.shape={shape}"
            )
    else:
        validation.check_min_size(images, size)  # type: ignore[arg-type]  # a BatchFeatures has .shape too


def check_batch_structure(images: object, name: str = "images") -> None:
    """Shape and dtype checks of :func:`~qualoader._validation.check_images`, without converting ``uint8``.

    A valid ``uint8`` batch passes untouched (``check_images`` would only convert it to float, a
    pass over every pixel that the classical kernels fold into their weights); anything else goes
    through ``check_images`` (no value check), which raises the usual messages.
    """
    if isinstance(images, Tensor) and images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] in (1, 3) and images.numel() > 0:
        return
    check_images(images, name, check_values=False)


class ClassicalMetric(QualityMetric):
    """Base of the classical measures: scores come from a :class:`BatchFeatures` that can be shared.

    :meth:`score_features` computes the scores from the cached intermediates of a batch; the
    scoring engine (:mod:`qualoader.engine`) builds one ``BatchFeatures`` per batch and hands it to
    every classical measure, so the luma, gradients and histograms are computed once.

    Args:
        downscale: 1 (default), 2 or 4: compute the fine-detail intermediates (second differences, Sobel gradients) on the luma
            box-averaged over ``downscale x downscale`` blocks (see
            :class:`~qualoader.metrics.classical.BatchFeatures`), about ``downscale**2`` times less
            work for them. Scores change scale (not meaning), so a reduced resolution is part of
            the score's identity. Only sharpness, gradient-energy and noise follow it; the other
            measures (moments, histogram, counts, JPEG block steps) are computed at full
            resolution at any factor, so their scores do not change.
        check_values: validate that float input is finite and in [0, 1].
    """

    #: smallest height and width the measure accepts (at full resolution).
    min_size: ClassVar[int] = 1
    #: whether ``downscale`` changes the scores: True for the measures of fine detail (second
    #: differences, gradients); False for those read at full resolution whatever the factor
    #: (moments, histograms, counts, and block steps, whose 8-pixel grid a reduction would blur).
    follows_downscale: ClassVar[bool] = True

    def __init__(self, *, downscale: int = 1, check_values: bool = True) -> None:
        super().__init__(check_values=check_values)
        self.downscale = check_downscale(downscale)
        if self.follows_downscale and downscale > 1:
            # the kernel's window must still fit once the luma is reduced
            self.min_size = type(self).min_size * downscale  # type: ignore[misc]

    def get_config(self) -> dict[str, Any]:
        # Only a downscale that changes the scores enters the identity, so full-resolution
        # fingerprints (and the stores keyed by them) stay what they were.
        return {"downscale": self.downscale} if self.follows_downscale and self.downscale > 1 else {}

    def score_features(self, features: BatchFeatures) -> Tensor:
        """Scores :math:`(B,)` from the intermediates of a validated batch."""
        raise NotImplementedError

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        return self.score_features(BatchFeatures(images, self.downscale))

    def forward(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        """Score a batch; ``uint8`` images are read as bytes, exactly as the scoring engine reads them.

        Args:
            images: :math:`(B, C, H, W)`, float in [0, 1] or uint8, ``C`` in {1, 3}.
            reference: must be ``None`` (no-reference measure).

        Returns:
            Scores of shape :math:`(B,)`.
        """
        if isinstance(images, Tensor) and images.dtype == torch.uint8 and reference is None:
            check_batch_structure(images)
            return self.score(images)
        return super().forward(images, reference)
