"""Helpers shared by the corruption families: seeded draws and size-aware kernels."""

from __future__ import annotations

import torch
from torch import Tensor


def randn_like(images: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise of ``images``' shape, drawn on the generator's device then moved."""
    device = generator.device if generator is not None else images.device
    return torch.randn(images.shape, generator=generator, device=device, dtype=images.dtype).to(images.device)


def rand_like(images: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform [0, 1) noise of ``images``' shape, drawn on the generator's device then moved."""
    device = generator.device if generator is not None else images.device
    return torch.rand(images.shape, generator=generator, device=device, dtype=images.dtype).to(images.device)


def scale(images: Tensor, size_at_32: float) -> float:
    """Scale a pixel length defined for 32 px images (CIFAR-10-C) to the images' short side."""
    return size_at_32 * min(images.shape[-2:]) / 32.0
