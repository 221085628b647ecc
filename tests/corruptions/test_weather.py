"""The procedural weather corruptions (frost, snow) on real images: family, what each does, size independence, harm."""

from __future__ import annotations

import pytest
import torch

from qualoader.corruptions import corrupt, list_corruptions
from qualoader.reference import default_reference


def test_weather_family_is_imagenet_c_weather_plus_spatter() -> None:
    assert list_corruptions("weather") == ["brightness", "fog", "frost", "snow", "spatter"]


def test_snow_adds_bright_streaks_whose_cover_does_not_depend_on_image_size() -> None:
    covers = []
    for side in (32, 256):
        night = torch.zeros(4, 3, side, side)
        snowy = corrupt(night, "snow", 3, generator=torch.Generator().manual_seed(0))
        covers.append(float((snowy.amax(dim=1) > 0.15).float().mean()))
    # On a black scene only the flakes show: between a tenth and a half of the pixels, alike at both sizes.
    assert 0.1 < covers[0] < 0.5 and 0.1 < covers[1] < 0.5, covers
    assert abs(covers[0] - covers[1]) < 0.35 * max(covers), covers


def test_frost_hides_detail_in_ice_not_uniformly(photos: torch.Tensor) -> None:
    frosty = corrupt(photos, "frost", 5, generator=torch.Generator().manual_seed(0))
    added = frosty - 0.75 * photos  # severity 5 keeps 0.75 of the image: the rest is the ice (cut where the sum passes 1)
    per_pixel = added.mean(dim=1).flatten(1)
    # Thin bright crests over a dim background: the layer's spread is a good share of its mean (a uniform veil has none).
    assert bool((per_pixel.std(dim=1) > 0.3 * per_pixel.mean(dim=1)).all())
    assert float(frosty.mean()) > float(photos.mean())


@pytest.mark.parametrize("name", ["frost", "snow"])
def test_harm_to_the_reference_network_grows_with_severity(name: str, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, labels = fashion_mnist_test[0][:1000].float() / 255.0, fashion_mnist_test[1][:1000]
    network = default_reference()
    with torch.no_grad():
        accuracy = [
            float((network(corrupt(images, name, severity, torch.Generator().manual_seed(0))).argmax(1) == labels).float().mean())
            for severity in (1, 3, 5)
        ]
        clean = float((network(images).argmax(1) == labels).float().mean())
    assert clean > accuracy[0] > accuracy[1] > accuracy[2], (clean, accuracy)
