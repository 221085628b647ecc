"""Fixtures for the data middleware tests: small real datasets and metrics (classical, calibrated)."""

from __future__ import annotations

import pytest
import torch
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
    errors = (scores < scores.median()).double() * 0.8 + 0.1 * torch.rand(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    metric.calibration = DifficultyCalibration.fit(scores, errors.clamp(0, 1), metric.higher_is_better)
    return metric
