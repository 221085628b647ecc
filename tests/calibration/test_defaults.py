"""The shipped-calibration table: lookup, exact-configuration matching, and difficulty rising with corruption."""

from __future__ import annotations

import pytest
import torch

from qualoader.calibration import (
    SHIPPED_DEFAULTS,
    SHIPPED_SWEEP,
    DifficultyCalibration,
    default_calibration,
    default_calibration_path,
    shipped_calibration,
)
from qualoader.corruptions import CORRUPTION_FAMILIES
from qualoader.metrics import create_metric, list_metrics


def test_default_calibration_lookup() -> None:
    assert default_calibration("no-such-metric") is None
    assert default_calibration_path("bn-shift").name == "profile_fashion-mnist_bn-shift.json"  # the calibration lives in the profile
    assert default_calibration_path("task-guided").name == "calibration_task-guided.json"
    with pytest.raises(TypeError, match="metric_name should be"):
        default_calibration(3)  # type: ignore[arg-type]
    first, second = default_calibration("bn-shift"), default_calibration("bn-shift")
    first.info["touched"] = True
    assert "touched" not in second.info  # every caller gets its own object


@pytest.mark.parametrize("name", sorted(SHIPPED_DEFAULTS))
def test_every_table_entry_names_a_registered_metric_and_a_shipped_file(name: str) -> None:
    entry = SHIPPED_DEFAULTS[name]
    assert entry.metric == name and name in list_metrics()
    assert default_calibration_path(name).is_file()
    calibration = default_calibration(name)
    assert isinstance(calibration, DifficultyCalibration)
    assert calibration.higher_is_better == create_metric(name).higher_is_better


def test_exact_configuration_only() -> None:
    from qualoader.reference import ReferenceNetwork, default_reference

    embedded = default_reference()
    resized = ReferenceNetwork(embedded.model, input_size=32, in_channels=1, mean=(0.286,), std=(0.353,), feature_layer="classifier.2")
    assert create_metric("bn-shift").calibration == default_calibration("bn-shift")
    assert create_metric("bn-shift", reference=default_reference()).calibration is not None  # same network, built by hand
    assert create_metric("bn-shift", divergence="wasserstein").calibration is None
    assert create_metric("bn-shift", variance_floor=0.02).calibration is None
    assert create_metric("feature-distance", reference=resized).calibration is None  # same weights, other input convention
    assert shipped_calibration(create_metric("sharpness")) is None  # not in the table


@pytest.mark.parametrize("name", sorted(SHIPPED_DEFAULTS))
def test_shipped_aligned_metrics_yield_a_difficulty_that_rises_with_corruption(name, fashion_mnist_test) -> None:
    from qualoader.corruptions import corrupt

    metric = create_metric(name)
    assert metric.calibration is not None, f"{name} should ship a default calibration"
    clean = fashion_mnist_test[0][:200].float() / 255
    difficulties = []
    for severity in (1, 3, 5):
        noisy = corrupt(clean, "gaussian_noise", severity, generator=torch.Generator().manual_seed(severity))
        scores = metric(noisy, clean) if metric.requires_reference else metric(noisy)
        difficulty = metric.difficulty(scores)
        assert difficulty.shape == (200,) and bool(((difficulty >= 0) & (difficulty <= 1)).all())
        difficulties.append(float(difficulty.mean()))
    assert difficulties == sorted(difficulties) and difficulties[-1] > difficulties[0], difficulties


@pytest.mark.parametrize("name", ["bn-shift", "confidence", "feature-distance"])
def test_shipped_sweep_is_the_sweep_recorded_in_the_shipped_profiles(name: str) -> None:
    calibration = default_calibration(name)
    assert calibration is not None and tuple(calibration.info["corruptions"]) == SHIPPED_SWEEP
    # ImageNet-C corruptions only, none from the held-out "extra" family
    assert {CORRUPTION_FAMILIES[corruption] for corruption in SHIPPED_SWEEP} == {"noise", "blur", "digital", "weather"}
