"""create_metric(name, profile=...): the shipped default and a user network, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import models

from qualoader.calibration import DifficultyCalibration
from qualoader.metrics import create_metric, metric_from_profile
from qualoader.profiles import DomainWarning, ProfileError, default_profile_path, load_profile, save_profile


@pytest.mark.parametrize("name", ["bn-shift", "feature-distance"])
def test_shipped_profile_gives_the_default_metric(name: str, fashion_mnist_test) -> None:
    images = fashion_mnist_test[0][:16]
    default = create_metric(name)
    profiled = create_metric(name, profile=default_profile_path(name))
    assert profiled.fingerprint() == default.fingerprint() and profiled.calibration == default.calibration
    assert profiled.profile is not None and profiled.profile.metric.name == name
    arguments = (images, images.flip(-1)) if default.requires_reference else (images,)
    assert torch.equal(profiled(*arguments), default(*arguments))


def test_user_network_profile_end_to_end(make_profile, tmp_path: Path, photos: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = models.resnet18(num_classes=10)
    calibration = DifficultyCalibration.fit([0.0, 1.0, 5.0], [0.1, 0.3, 0.9], False)
    path = save_profile(make_profile("torchvision", "resnet18", model, calibration=calibration), tmp_path / "resnet.json")
    metric = create_metric("bn-shift", profile=path)
    images = torch.nn.functional.interpolate(photos[:4], size=(64, 64), mode="area")
    scores = metric(images)
    assert scores.shape == (4,) and bool((scores >= 0).all())
    assert torch.equal(metric.difficulty(scores), calibration(scores))
    assert metric.input_domain == load_profile(path).reference.domain
    with pytest.warns(DomainWarning, match="grey input for a colour network"):
        metric(images.mean(1, keepdim=True))


def test_profile_mismatches_are_errors(make_profile, tmp_path: Path) -> None:
    shipped = default_profile_path("bn-shift")
    with pytest.raises(ProfileError, match="name should be the profile's metric 'bn-shift', but got name='feature-distance'"):
        create_metric("feature-distance", profile=shipped)
    with pytest.raises(ValueError, match="kwargs should only be strict and check_values"):
        create_metric("bn-shift", profile=shipped, divergence="mean")
    sharpness = save_profile(
        make_profile("entry_point", "qualoader.reference.architectures:FashionCNN", models.resnet18(), metric="sharpness"),
        tmp_path / "s.json",
    )
    with pytest.raises(ProfileError, match="aligned metric"):
        metric_from_profile(sharpness, trust=True)
    clash = save_profile(
        make_profile("torchvision", "resnet18", models.resnet18(num_classes=10), params={"reference": "default"}), tmp_path / "c.json"
    )
    with pytest.raises(ProfileError, match="should not set \\['reference'\\]"):
        metric_from_profile(clash)
