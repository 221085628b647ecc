"""Fixtures for the webdataset tests: real images written as shards by webdataset's ShardWriter."""

from __future__ import annotations

import pytest
import torch

from qualoader.calibration import DifficultyCalibration
from qualoader.metrics import QualityMetric, create_metric
from qualoader.webdataset import write_image_shards


@pytest.fixture(scope="session")
def fm_shards(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> list[str]:
    """240 real Fashion-MNIST test images (PNG + cls) in 3 shards of 80."""
    images, labels = fashion_mnist_test
    folder = tmp_path_factory.mktemp("fm")
    return [str(p) for p in write_image_shards(images[:240], str(folder / "fm-%06d.tar"), labels=labels[:240], maxcount=80)]


@pytest.fixture(scope="session")
def photo_shards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The 15 real skimage photos at three sizes (48, 64, 80 px; 45 PNG samples) in 2 shards."""
    from qualoader.datasets import load_photos

    images = [image for size in (48, 64, 80) for image in load_photos(size)]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0)).tolist()
    folder = tmp_path_factory.mktemp("photos")
    keys = [f"photo{i:03d}" for i in range(len(images))]
    paths = write_image_shards([images[i] for i in order], str(folder / "photo-%06d.tar"), labels=order, keys=keys, maxcount=30)
    return [str(p) for p in paths]


@pytest.fixture
def calibrated_sharpness() -> QualityMetric:
    """``sharpness`` with a logistic calibration (blurrier -> more expected error)."""
    metric = create_metric("sharpness")
    metric.calibration = DifficultyCalibration("logistic", True, {"mean": 0.1, "std": 0.05, "slope": -2.0, "bias": 0.0})
    return metric

