"""Profiles built locally for the tests from user networks (``copied_default``, the shipped one, is in ``tests/conftest.py``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from qualoader.calibration import DifficultyCalibration
from qualoader.profiles import (
    InputDomain,
    InputTransform,
    MetricSpec,
    QualityProfile,
    ReferenceSpec,
    WeightsFile,
)


@pytest.fixture
def photos_224(photos: torch.Tensor) -> torch.Tensor:
    """The scikit-image photos at 224 px, RGB, ``(15, 3, 224, 224)`` in [0, 1]."""
    return F.interpolate(photos, size=(224, 224), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


@pytest.fixture
def make_profile(tmp_path: Path) -> Callable[..., QualityProfile]:
    """``make_profile(source, name, model, labels=10, metric="bn-shift", ...)``: save ``model``'s weights and describe them."""

    def make(
        source: str,
        name: str | None,
        model: torch.nn.Module,
        *,
        labels: int = 10,
        metric: str = "bn-shift",
        params: dict | None = None,
        size: int = 64,
        channels: int = 3,
        calibration: DifficultyCalibration | None = None,
        torchscript: bool = False,
    ) -> QualityProfile:
        weights = tmp_path / f"{source}.pt"
        if torchscript:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated; users still have such files
                torch.jit.script(model).save(str(weights))
        else:
            torch.save(model.state_dict(), weights)
        mean, std = (0.5,) * channels, (0.25,) * channels
        reference = ReferenceSpec(
            source=source,
            name=name,
            weights=WeightsFile.of(weights),
            transform=InputTransform((size, size), channels, mean, std),
            labels=tuple(f"class {i}" for i in range(labels)),
            domain=InputDomain(channels=channels, size=(size, size), mean=mean, std=std),
        )
        return QualityProfile(
            f"test/{source}", reference, MetricSpec(metric, params or {}), calibration, None, {"data": "synthetic", "seed": 0}
        )

    return make
