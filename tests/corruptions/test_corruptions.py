"""The corruption suite on real images: shape, range, determinism, severity, family behaviour, bad input."""

from __future__ import annotations

import itertools

import kornia.filters as KF
import pytest
import torch

from qualoader.corruptions import CORRUPTION_FAMILIES, corrupt, list_corruptions

NAMES = list_corruptions()


@pytest.fixture(scope="module")
def garments(fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """64 real Fashion-MNIST test images, (64, 1, 28, 28) float in [0, 1]."""
    return fashion_mnist_test[0][::157][:64].float() / 255.0


def _high_frequency_energy(images: torch.Tensor) -> torch.Tensor:
    return KF.laplacian(images, 3).pow(2).mean()


def test_every_corruption_has_a_family() -> None:
    assert set(CORRUPTION_FAMILIES) == set(NAMES)
    assert set(CORRUPTION_FAMILIES.values()) == {"noise", "blur", "digital", "weather", "extra"}


@pytest.mark.parametrize("name", NAMES)
def test_shape_range_device_on_photos_and_garments(name: str, photos: torch.Tensor, garments: torch.Tensor, device: torch.device) -> None:
    for images in (photos[:3].to(device), garments[:8].to(device)):
        out = corrupt(images, name, 3, generator=torch.Generator().manual_seed(0))
        assert out.shape == images.shape and out.device == images.device and out.dtype == images.dtype
        assert bool(torch.isfinite(out).all()) and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_seeded_generator_is_deterministic(name: str, garments: torch.Tensor) -> None:
    first = corrupt(garments, name, 4, generator=torch.Generator().manual_seed(7))
    again = corrupt(garments, name, 4, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(first, again, rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "saturate"])
def test_corruption_changes_the_image_more_at_severity_5_than_1(name: str, garments: torch.Tensor, photos: torch.Tensor) -> None:
    for images in (garments, photos):
        mild = (corrupt(images, name, 1, torch.Generator().manual_seed(0)) - images).abs().mean()
        strong = (corrupt(images, name, 5, torch.Generator().manual_seed(0)) - images).abs().mean()
        assert strong > mild > 0


def test_most_corruptions_are_monotone_in_severity(garments: torch.Tensor) -> None:
    monotone = []
    for name in NAMES:
        distances = [float((corrupt(garments, name, s, torch.Generator().manual_seed(0)) - garments).abs().mean()) for s in range(1, 6)]
        if all(b >= a for a, b in itertools.pairwise(distances)):
            monotone.append(name)
    assert len(monotone) >= 13, monotone


@pytest.mark.parametrize("name", [n for n, family in CORRUPTION_FAMILIES.items() if family in ("noise", "blur")])
def test_noise_adds_and_blur_removes_high_frequencies(name: str, photos: torch.Tensor) -> None:
    corrupted = corrupt(photos, name, 3, generator=torch.Generator().manual_seed(0))
    if CORRUPTION_FAMILIES[name] == "noise":
        assert _high_frequency_energy(corrupted) > _high_frequency_energy(photos)
    else:
        assert _high_frequency_energy(corrupted) < _high_frequency_energy(photos)


def test_saturate_changes_colour_photos_and_leaves_grey_images(photos: torch.Tensor, garments: torch.Tensor) -> None:
    assert (corrupt(photos, "saturate", 5) - photos).abs().mean() > 0.01
    torch.testing.assert_close(corrupt(garments, "saturate", 5), garments)


def test_uint8_input_matches_float_input(garments: torch.Tensor) -> None:
    as_uint8 = (garments * 255).round().to(torch.uint8)
    torch.testing.assert_close(corrupt(as_uint8, "contrast", 2), corrupt(as_uint8.float() / 255, "contrast", 2))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "fros"}, ValueError, "name should be one of"),
        ({"name": 3}, TypeError, "name should be"),
        ({"severity": 0}, ValueError, "severity should be an int in 1..5"),
        ({"severity": 6}, ValueError, "severity should be an int in 1..5"),
        ({"severity": 2.0}, TypeError, "severity should be an int in 1..5"),
        ({"images": torch.rand(3, 8, 8)}, ValueError, r"images should have shape \(B, C, H, W\)"),
        ({"images": torch.full((1, 1, 8, 8), float("nan"))}, ValueError, "images should be finite"),
        ({"generator": 0}, TypeError, "generator should be"),
    ],
)
def test_bad_input(kwargs: dict, error: type[Exception], match: str) -> None:
    arguments = {"images": torch.rand(2, 1, 8, 8), "name": "gaussian_noise", "severity": 1, "generator": None} | kwargs
    with pytest.raises(error, match=match):
        corrupt(**arguments)
