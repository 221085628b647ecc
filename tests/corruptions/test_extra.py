"""The degradations outside ImageNet-C (``qualoader.corruptions.extra``) on real images: what each one does."""

from __future__ import annotations

import pytest
import torch

from qualoader.corruptions import CORRUPTION_FAMILIES, CORRUPTIONS, corrupt, list_corruptions
from qualoader.reference import default_reference

EXTRA = list_corruptions("extra")


@pytest.fixture(scope="module")
def garments(fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 500 real Fashion-MNIST test images (float in [0, 1]) and labels: the same with the full copy or the bundled sample."""
    images, labels = fashion_mnist_test
    return images[:500].float() / 255.0, labels[:500]


def test_registered_as_the_extra_family() -> None:
    assert EXTRA == ["low_light", "occlusion", "oversharpen", "posterize", "scanline", "vignette"]
    assert all(name in CORRUPTIONS and CORRUPTION_FAMILIES[name] == "extra" for name in EXTRA)
    assert not set(EXTRA) & set(
        list_corruptions("noise") + list_corruptions("blur") + list_corruptions("digital") + list_corruptions("weather")
    )
    with pytest.raises(ValueError, match="family should be one of"):
        list_corruptions("snow")


@pytest.mark.parametrize("name", EXTRA)
def test_shape_range_determinism_on_photos_and_garments(name: str, photos: torch.Tensor, garments, device: torch.device) -> None:
    for images in (photos[:3].to(device), garments[0][:8].to(device)):
        out = corrupt(images, name, 4, generator=torch.Generator().manual_seed(1))
        again = corrupt(images, name, 4, generator=torch.Generator().manual_seed(1))
        assert out.shape == images.shape and out.device == images.device and out.dtype == images.dtype
        assert bool(torch.isfinite(out).all()) and out.min() >= 0 and out.max() <= 1
        torch.testing.assert_close(out, again, rtol=0, atol=0)


@pytest.mark.parametrize("name", EXTRA)
def test_changes_grow_with_severity_on_photos_and_garments(name: str, photos: torch.Tensor, garments) -> None:
    for images in (photos, garments[0]):
        distances = [float((corrupt(images, name, s, torch.Generator().manual_seed(0)) - images).abs().mean()) for s in range(1, 6)]
        assert distances[0] > 0 and all(b > a for a, b in zip(distances, distances[1:])), distances


def test_strongest_severity_hurts_the_reference_network_except_vignette(garments) -> None:
    # Vignetting darkens the (already black) borders of centred garments: it barely matters to a classifier.
    images, labels = garments
    network = default_reference()
    with torch.no_grad():
        clean = float((network(images).argmax(1) == labels).float().mean())
        accuracy = {
            name: float((network(corrupt(images, name, 5, torch.Generator().manual_seed(0))).argmax(1) == labels).float().mean())
            for name in EXTRA
        }
    assert all(accuracy[name] < clean - 0.05 for name in EXTRA if name != "vignette"), (clean, accuracy)
    assert accuracy["vignette"] > clean - 0.1


def test_each_degradation_does_what_it_says(photos: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(0)
    dark = corrupt(photos, "low_light", 5, generator=generator)
    assert dark.mean() < 0.5 * photos.mean()
    levels = corrupt(photos, "posterize", 5).unique()
    assert set(levels.tolist()) <= {0.0, 1.0}
    hidden = corrupt(photos, "occlusion", 3, generator=generator) != photos
    fraction = hidden.any(dim=1).float().mean(dim=(1, 2))
    assert bool((fraction > 0.1).all() and (fraction <= 0.2 + 1e-6).all()), fraction  # one patch of 20% of the area
    faded = corrupt(photos, "vignette", 5, generator=generator)
    assert bool((faded <= photos + 1e-6).all()) and faded[..., :8, :8].mean() < 0.5 * photos[..., :8, :8].mean()
    lost_rows = (corrupt(photos, "scanline", 5, generator=generator) == 0).all(dim=(1, 3)).float().mean()
    assert 0.3 < float(lost_rows) < 0.55
    sharp = corrupt(photos, "oversharpen", 5)
    assert sharp.std() > photos.std()  # ringing and clipping spread the intensities


def test_uint8_input_and_generator_device(garments) -> None:
    images = garments[0][:4]
    as_uint8 = (images * 255).round().to(torch.uint8)
    torch.testing.assert_close(corrupt(as_uint8, "posterize", 3), corrupt(as_uint8.float() / 255, "posterize", 3))
    with pytest.raises(TypeError, match="generator should be"):
        corrupt(images, "occlusion", 2, generator=3)  # type: ignore[arg-type]
