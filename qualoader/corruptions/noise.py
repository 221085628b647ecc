"""Noise corruptions (CIFAR-10-C parameters): gaussian, shot, impulse and speckle noise."""

from __future__ import annotations

import torch
from torch import Tensor

from qualoader.corruptions._common import rand_like, randn_like

__all__ = ["gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"]

_GAUSSIAN_SIGMA = (0.04, 0.06, 0.08, 0.09, 0.10)
_SHOT_PHOTONS = (500.0, 250.0, 100.0, 75.0, 50.0)
_IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)
_SPECKLE_SIGMA = (0.06, 0.10, 0.12, 0.16, 0.20)


def gaussian_noise(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Add zero-mean Gaussian noise of std ``(0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]``."""
    return images + _GAUSSIAN_SIGMA[severity - 1] * randn_like(images, generator)


def shot_noise(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Poisson noise with ``(500, 250, 100, 75, 50)[severity - 1]`` photons at full intensity."""
    photons = _SHOT_PHOTONS[severity - 1]
    rate = (images * photons).float().cpu() if generator is None or generator.device.type == "cpu" else images * photons
    return (torch.poisson(rate, generator=generator).to(images.device, images.dtype)) / photons


def impulse_noise(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Salt-and-pepper noise on a fraction ``(0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]`` of pixels."""
    amount = _IMPULSE_AMOUNT[severity - 1]
    draw = rand_like(images, generator)
    salt = draw < amount / 2
    pepper = (draw >= amount / 2) & (draw < amount)
    return images.masked_fill(salt, 1.0).masked_fill(pepper, 0.0)


def speckle_noise(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Multiplicative Gaussian noise ``x + x * n`` with std ``(0.06, 0.10, 0.12, 0.16, 0.20)[severity - 1]``."""
    return images + images * _SPECKLE_SIGMA[severity - 1] * randn_like(images, generator)
