"""Fixtures for the data middleware tests: small real datasets and metrics (classical, calibrated)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from qualoader.calibration import DifficultyCalibration
from qualoader.metrics import QualityMetric, create_metric


@pytest.fixture
def fmnist_small(fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> TensorDataset:
    """The first 96 real Fashion-MNIST test images as ``(uint8 (1, 28, 28), label)`` samples."""
    images, labels = fashion_mnist_test
    return TensorDataset(images[:96], labels[:96])


@pytest.fixture
def sharpness() -> QualityMetric:
    return create_metric("sharpness")


@pytest.fixture
def calibrated_brightness(fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> QualityMetric:
    """``brightness`` with a calibration fitted on real scores (darker images -> more expected error)."""
    metric = create_metric("brightness")
    scores = metric(fashion_mnist_test[0][:200])
    errors = (scores < scores.median()).double() * 0.8 + 0.1 * torch.rand(
        200, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    metric.calibration = DifficultyCalibration.fit(scores, errors.clamp(0, 1), metric.higher_is_better)
    return metric


def write_image_folder(root: Path, photos: torch.Tensor, count: int = 12, side: int = 32) -> list[Path]:
    """An ImageFolder ``root/<class>/<k>.png`` of ``count`` real photo crops (two classes); returns the files in ImageFolder order."""
    files = []
    for k in range(count):
        photo = photos[k % len(photos)]
        top = (k * 7) % (photo.shape[1] - side)
        array = (photo[:, top : top + side, top : top + side].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        path = root / ("a" if k % 2 == 0 else "b") / f"{k:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
        files.append(path)
    return sorted(files)


@pytest.fixture
def make_image_folder(photos: torch.Tensor) -> Callable[..., list[Path]]:
    """``make_image_folder(root, count=12, side=32)``: see :func:`write_image_folder`."""
    return lambda root, count=12, side=32: write_image_folder(root, photos, count, side)


@pytest.fixture
def image_folder(tmp_path: Path, photos: torch.Tensor) -> Path:
    """A 12-image ImageFolder of real photo crops (32x32 PNG, classes ``a`` and ``b``)."""
    write_image_folder(tmp_path / "images", photos)
    return tmp_path / "images"
