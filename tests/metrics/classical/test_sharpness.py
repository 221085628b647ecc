from __future__ import annotations

import pytest
import torch

from qualoader.metrics import create_metric
from qualoader.metrics.classical.sharpness import gradient_energy, laplacian_variance

FUNCTIONS = {"sharpness": laplacian_variance, "gradient-energy": gradient_energy}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_module_matches_function(name, photos):
    metric = create_metric(name)
    torch.testing.assert_close(metric(photos), FUNCTIONS[name](photos))
    assert metric.higher_is_better and not metric.requires_reference


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_falls_with_blur(name, photos, degrade, scores_over_severity):
    scores = scores_over_severity(create_metric(name), photos, degrade.blur)
    steps = scores.diff(dim=1)
    assert bool((steps < 0).all()), f"{name} should fall with every blur step, got {scores}"


@pytest.mark.parametrize("function", [laplacian_variance, gradient_energy])
def test_flat_image_has_zero_sharpness(function):
    flat = torch.full((2, 3, 16, 16), 0.3)
    torch.testing.assert_close(function(flat), torch.zeros(2), atol=1e-10, rtol=0)


def test_laplacian_of_a_ramp_is_zero_and_of_a_checkerboard_is_large():
    ramp = torch.linspace(0, 1, 16).expand(1, 1, 16, 16)
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2).float().expand(1, 1, 16, 16)
    assert laplacian_variance(ramp).item() < 1e-10
    # the response alternates between -4 and +4, so its variance is 16
    torch.testing.assert_close(laplacian_variance(checker), torch.tensor([16.0]))


@pytest.mark.parametrize("function", [laplacian_variance, gradient_energy])
def test_too_small_images_raise(function):
    with pytest.raises(ValueError, match="at least 3x3"):
        function(torch.rand(1, 3, 2, 8))
