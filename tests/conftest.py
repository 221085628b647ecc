"""Shared fixtures: devices, dtypes and real images generated locally (never fetched)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

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


_REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """Import a script of the repository (``"benchmarks/alignment.py"``) as a module, once."""

    def load(relative_path: str) -> ModuleType:
        name = "script_" + Path(relative_path).stem
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, _REPOSITORY / relative_path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]

    return load
