"""Graded local degradations of real photos for the directional tests of the classical measures.

Each ``Degradations`` method maps photos :math:`(N, 3, H, W)` in [0, 1] and a severity 0..5
(0 = untouched) to degraded photos, deterministically (seeded noise).
"""

from __future__ import annotations

import io

import kornia
import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

SEVERITIES = (0, 1, 2, 3, 4, 5)


class Degradations:
    """Monotone degradations, severity 0 (clean) to 5 (strongest)."""

    @staticmethod
    def blur(images: Tensor, severity: int) -> Tensor:
        if severity == 0:
            return images
        sigma = (0.5, 1.0, 1.5, 2.0, 3.0)[severity - 1]
        return kornia.filters.gaussian_blur2d(images, (13, 13), (sigma, sigma))

    @staticmethod
    def noise(images: Tensor, severity: int) -> Tensor:
        generator = torch.Generator().manual_seed(1234)
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
        return (images + (0.0, 0.02, 0.04, 0.08, 0.12, 0.2)[severity] * noise).clamp(0, 1)

    @staticmethod
    def contrast(images: Tensor, severity: int) -> Tensor:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return (images - mean) * (1.0, 0.8, 0.6, 0.4, 0.2, 0.1)[severity] + mean

    @staticmethod
    def brightness(images: Tensor, severity: int) -> Tensor:
        return (images + 0.1 * severity).clamp(0, 1)

    @staticmethod
    def overexpose(images: Tensor, severity: int) -> Tensor:
        return (images * (1.0, 1.2, 1.5, 2.0, 3.0, 4.0)[severity]).clamp(0, 1)

    @staticmethod
    def desaturate(images: Tensor, severity: int) -> Tensor:
        grey = images.mean(dim=1, keepdim=True)
        return grey + (images - grey) * (1.0 - 0.2 * severity)

    @staticmethod
    def quantise(images: Tensor, severity: int) -> Tensor:
        levels = (255, 64, 32, 16, 8, 4)[severity]
        return (images * levels).round() / levels

    @staticmethod
    def jpeg(images: Tensor, severity: int) -> Tensor:
        if severity == 0:
            return images
        quality = (90, 70, 50, 30, 10)[severity - 1]
        pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        decoded = []
        for array in pixels:
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
            decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
        return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).to(images.dtype) / 255


@pytest.fixture(scope="session")
def degrade() -> type[Degradations]:
    return Degradations


def severity_scores(metric, images: Tensor, degradation) -> Tensor:
    """Scores :math:`(N, 6)` of every photo at severities 0..5."""
    return torch.stack([metric(degradation(images, severity)) for severity in SEVERITIES], dim=1)


@pytest.fixture(scope="session")
def scores_over_severity():
    return severity_scores
