from __future__ import annotations

import math

import pytest
import torch

from qualoader.metrics import create_metric
from qualoader.metrics.classical.noise import noise_level


def test_module_matches_function(photos):
    metric = create_metric("noise")
    torch.testing.assert_close(metric(photos), noise_level(photos))
    assert not metric.higher_is_better


def test_rises_with_gaussian_noise(photos, degrade, scores_over_severity):
    scores = scores_over_severity(create_metric("noise"), photos, degrade.noise)
    assert bool((scores.diff(dim=1) > 0).all()), scores


def test_estimates_the_sigma_of_white_noise_on_a_flat_image():
    generator = torch.Generator().manual_seed(0)
    sigma = 0.05
    noisy = 0.5 + sigma * torch.randn(4, 1, 256, 256, generator=generator)
    estimate = noise_level(noisy)
    # Immerkaer's estimator is unbiased for Gaussian noise on planar images
    torch.testing.assert_close(estimate, torch.full((4,), sigma), rtol=0.03, atol=0)


def test_planar_image_has_no_noise():
    plane = (torch.linspace(0, 0.5, 32)[:, None] + torch.linspace(0, 0.4, 32)[None, :]).expand(1, 3, 32, 32)
    assert noise_level(plane).item() < 1e-6


def test_constant_is_immerkaer():
    # |I * M| of a single unit impulse inside a 3x3 image sums to the centre weight 4
    impulse = torch.zeros(1, 1, 3, 3)
    impulse[..., 1, 1] = 1.0
    torch.testing.assert_close(noise_level(impulse), torch.tensor([4 * math.sqrt(math.pi / 2) / 6]))


def test_too_small_images_raise():
    with pytest.raises(ValueError, match="at least 3x3"):
        noise_level(torch.rand(1, 1, 8, 2))
