"""Shared fixtures: devices, dtypes and real images generated locally (never fetched)."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
import torch

from qualoader.datasets import FashionMNISTSampleWarning, fashion_mnist_source, load_fashion_mnist, load_photos


def pytest_report_header(config: pytest.Config) -> str:
    """Say which Fashion-MNIST copy the run uses: the suite passes with either."""
    if fashion_mnist_source() == "full":
        return "Fashion-MNIST: full local copy"
    return "Fashion-MNIST: bundled sample (first 3000 test / 2000 train images); install dataset-fashion-mnist for the full copy"


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
def photos_224() -> torch.Tensor:
    """Five real scikit-image photos, RGB at 224 px ``(5, 3, 224, 224)``: far outside the embedded 28 px grey reference's domain."""
    return load_photos(224)[:5]


@pytest.fixture(scope="session")
def fashion_mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    """Real Fashion-MNIST test images and labels: ``(N, 1, 28, 28)`` uint8 and ``(N,)`` int64.

    The full split (N = 10000) where a local copy exists, else the bundled sample (its first
    N = 3000 images, the same pixels): tests slice a prefix or use ``len(images)``, so they
    pass with either copy and need no download.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FashionMNISTSampleWarning)  # the report header says which copy
        return load_fashion_mnist("test")


@pytest.fixture
def copied_default(tmp_path: Path) -> Path:
    """The shipped bn-shift profile saved into ``tmp_path`` with a copy of its weights beside it (as a user would hold it)."""
    # imported here: the root conftest loads for every test, and most never touch profiles
    from qualoader.profiles import WeightsFile, default_profile_path, load_profile, save_profile
    from qualoader.reference import DEFAULT_CHECKPOINT

    profile = load_profile(default_profile_path("bn-shift"))
    weights = tmp_path / "weights.pt"
    shutil.copyfile(DEFAULT_CHECKPOINT, weights)
    moved = replace(
        profile, reference=replace(profile.reference, weights=WeightsFile(weights, profile.reference.weights.sha256)), path=None
    )
    return save_profile(moved, tmp_path / "profile.json")


@pytest.fixture
def block_sockets(monkeypatch: pytest.MonkeyPatch) -> Callable[[type[Exception], str], None]:
    """``block_sockets(error_type, message)``: until the test ends, every attempt to connect raises ``error_type(message)``.

    The caller picks the error: ``AssertionError`` fails a test at once, while ``OSError`` is what the code under
    test meets on a machine that is really offline.
    """

    def block(error_type: type[Exception], message: str) -> None:
        def refuse(*args: object, **kwargs: object) -> None:
            raise error_type(message)

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse)

    return block


_REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """Import a script of the repository (``"benchmarks/engine_common.py"``) as a module, once."""

    def load(relative_path: str) -> ModuleType:
        name = "script_" + Path(relative_path).stem
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, _REPOSITORY / relative_path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]

    return load
