"""Small helpers that several test modules share (fixtures live in the conftest files).

Imported as ``tests.helpers``: the repository root is on ``sys.path`` (``pythonpath`` in
``pyproject.toml``), and a plain module avoids importing a ``conftest`` by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from qualoader.metrics import QualityMetric

__all__ = ["CountingMetric", "ListDataset", "add_noise", "precompute_argv", "save_photo_crops"]


class CountingMetric(QualityMetric):
    """Wraps a metric and counts the images it scored in ``scored`` (same name and config: the same store table)."""

    def __init__(self, inner: QualityMetric) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.scored = 0

    def get_config(self) -> dict[str, Any]:
        return self.inner.get_config()

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        self.scored += images.shape[0]
        return self.inner.score(images)


class ListDataset(Dataset[Any]):
    """A map-style dataset over a Python list of samples (any structure a user's dataset returns)."""

    def __init__(self, samples: list[Any]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        return self.samples[index]


def add_noise(images: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """``images`` :math:`(B, C, H, W)` in [0, 1] plus seeded Gaussian noise of std ``sigma``, clamped to [0, 1]."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images + sigma * noise).clamp(0, 1)


def save_photo_crops(folder: Path, photos: Tensor, count: int, side: int) -> list[Path]:
    """``folder/<k>.png`` for ``k < count``: the top-left ``side``-pixel crop of photo ``k`` :math:`(3, H, W)`.

    Pixels are truncated to 8 bits (``.byte()``, not rounded): the tests that use it were written against those pixels.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        path = folder / f"{k}.png"
        Image.fromarray((photos[k, :, :side, :side].permute(1, 2, 0) * 255).byte().numpy()).save(path)
        paths.append(path)
    return paths


def precompute_argv(images: Path, store: Path, *extra: str) -> list[str]:
    """``qualoader precompute`` of a folder into a store with ``sharpness`` and no progress bar, then ``extra``."""
    return ["precompute", str(images), "--store", str(store), "--metric", "sharpness", "--no-progress", *extra]
