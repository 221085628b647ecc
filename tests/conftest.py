"""Shared fixtures: devices, dtypes and real images generated locally (never fetched)."""

from __future__ import annotations

import os

import pytest
import torch

from qualoader.datasets import fashion_mnist_root, load_fashion_mnist, load_photos



@pytest.fixture(params=["cpu", "cuda"])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Every device this machine has: ``cuda`` runs where available and is skipped otherwise."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine")
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """Real natural photos from scikit-image, ``(15, 3, 128, 128)`` float32 in [0, 1]."""
    return load_photos(128)


@pytest.fixture(scope="session")
def fashion_mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    """The real Fashion-MNIST test split: ``(10000, 1, 28, 28)`` uint8 images and labels.

    Skipped off CI when the Debian package is missing; a failure on CI (``CI=true``), where
    ``.ci/run`` installs it, so the tests that need it can never be skipped silently there.
    """
    try:
        fashion_mnist_root()
    except FileNotFoundError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))
    return load_fashion_mnist("test")
