"""``BatchFeatures``: the shared kernels equal straightforward reference computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kornia.filters import spatial_gradient

from qualoader.metrics import create_metric
from qualoader.metrics.classical import (
    BatchFeatures,
    ClassicalMetric,
    blockiness,
    clipped_fraction,
    colorfulness,
    gradient_energy,
    laplacian_variance,
    noise_level,
)
from qualoader.metrics.classical._features import LUMA_WEIGHTS

CLASSICAL = ("sharpness", "gradient-energy", "noise", "contrast", "brightness", "colorfulness", "blockiness", "clipping", "entropy")


def _luma(images: torch.Tensor) -> torch.Tensor:
    weights = images.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def photos64(photos: torch.Tensor) -> torch.Tensor:
    return photos.double()


def test_luma_and_moments(photos64: torch.Tensor) -> None:
    features = BatchFeatures(photos64)
    luma = _luma(photos64)[:, 0]
    torch.testing.assert_close(features.luma, luma)
    torch.testing.assert_close(features.luma_mean, luma.mean(dim=(1, 2)))
    torch.testing.assert_close(features.luma_var, luma.var(dim=(1, 2), unbiased=False))


def test_laplacian_and_immerkaer_equal_conv2d(photos64: torch.Tensor) -> None:
    luma = _luma(photos64)
    laplacian = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64).view(1, 1, 3, 3)
    immerkaer = torch.tensor([[1.0, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=torch.float64).view(1, 1, 3, 3)
    expected = F.conv2d(luma, laplacian).flatten(1).var(dim=1, unbiased=False)
    torch.testing.assert_close(laplacian_variance(photos64), expected)
    sigma = F.conv2d(luma, immerkaer).abs().flatten(1).mean(dim=1) * math.sqrt(math.pi / 2) / 6
    torch.testing.assert_close(noise_level(photos64), sigma)


def test_gradient_energy_equals_kornia_sobel(photos64: torch.Tensor) -> None:
    gradients = spatial_gradient(_luma(photos64), mode="sobel", order=1, normalized=True)
    torch.testing.assert_close(gradient_energy(photos64), gradients.square().sum(dim=2).flatten(1).mean(dim=1))


def test_blockiness_equals_masked_means(photos64: torch.Tensor) -> None:
    luma = _luma(photos64)[:, 0]

    def means(steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grid = (torch.arange(1, steps.shape[-1] + 1) % 8 == 0).double()
        return (steps * grid).sum(dim=(1, 2)) / (grid.sum() * steps.shape[1]), (steps * (1 - grid)).sum(dim=(1, 2)) / (
            (1 - grid).sum() * steps.shape[1]
        )

    bx, ix = means((luma[:, :, 1:] - luma[:, :, :-1]).abs())
    by, iy = means((luma[:, 1:] - luma[:, :-1]).abs().transpose(1, 2))
    torch.testing.assert_close(blockiness(photos64), (bx + by + 2e-6) / (ix + iy + 2e-6))


def test_colorfulness_equals_the_formula(photos64: torch.Tensor) -> None:
    red, green, blue = photos64.flatten(2).unbind(1)
    rg, yb = red - green, 0.5 * (red + green) - blue
    expected = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False)).sqrt() + 0.3 * (rg.mean(1).square() + yb.mean(1).square()).sqrt()
    torch.testing.assert_close(colorfulness(photos64), expected)


@pytest.mark.parametrize(("low", "high"), [(0.5 / 255, 1 - 0.5 / 255), (0.0, 1.0), (0.1, 0.9), (0.3, 1.0), (0.0, 0.5)])
def test_clipping_counts_the_same_on_bytes_and_floats(low: float, high: float) -> None:
    raw = torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    raw[0] = 255
    raw[1, :, :4] = 0
    on_bytes = clipped_fraction(raw, low, high)
    on_floats = clipped_fraction(raw.float() / 255, low, high)
    torch.testing.assert_close(on_bytes, on_floats, rtol=0, atol=0)
    values = raw.float() / 255
    expected = ((values <= low) | (values >= high)).flatten(1).float().mean(dim=1)
    torch.testing.assert_close(on_bytes, expected)


def test_one_shared_features_object_gives_every_metric_its_own_score(photos: torch.Tensor) -> None:
    features = BatchFeatures((photos * 255).round().to(torch.uint8))
    for name in CLASSICAL:
        metric = create_metric(name)
        assert isinstance(metric, ClassicalMetric)
        torch.testing.assert_close(metric.score_features(features), metric(features.raw), msg=name)


def test_half_precision_is_computed_in_float32(photos: torch.Tensor) -> None:
    features = BatchFeatures(photos.half())
    assert features.images.dtype == torch.float32 and features.luma.dtype == torch.float32


def test_flat_images_give_exact_zeros() -> None:
    flat = torch.full((2, 3, 16, 16), 0.3)
    features = BatchFeatures(flat)
    assert bool((features.laplacian == 0).all()) and bool((features.immerkaer_sum == 0).all()) and bool((features.sobel_energy == 0).all())


def test_bytes_and_their_float_values_score_alike(photos: torch.Tensor) -> None:
    raw = (photos * 255).round().to(torch.uint8)
    for name in CLASSICAL:
        metric = create_metric(name)
        # bytes fold the 1/255 into the weights: float32 rounding differs, and an exact half-level
        # of the luma can fall into either entropy bin (a few pixels, < 1e-3 bits)
        tolerance = {"atol": 1e-3, "rtol": 0} if name == "entropy" else {"atol": 1e-7, "rtol": 1e-5}
        torch.testing.assert_close(metric(raw), metric(raw.float() / 255), **tolerance, msg=name)
