"""The domain guard: real photos into the Fashion-MNIST default warn once (strict: raise); in-domain input is silent."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from qualoader.metrics import create_metric
from qualoader.profiles import (
    DomainError,
    DomainWarning,
    InputDomain,
    domain_mismatch,
    out_of_domain,
    out_of_domain_fraction,
)

GREY_28 = InputDomain(channels=1, size=(28, 28), mean=(0.286,), std=(0.353,), image_mean_range=(0.04, 0.66), image_std_range=(0.1, 0.46))


@pytest.mark.parametrize("name", ["bn-shift", "feature-distance"])
def test_photos_into_the_default_warn_once_naming_the_mismatch(name: str, photos_224: torch.Tensor) -> None:
    metric = create_metric(name)
    arguments = (photos_224, photos_224) if metric.requires_reference else (photos_224,)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # so a second warning would be recorded, not deduplicated by Python
        for _ in range(3):
            metric(*arguments)
    domain_warnings = [w for w in caught if issubclass(w.category, DomainWarning)]
    assert len(domain_warnings) == 1
    message = str(domain_warnings[0].message)
    assert "15 of 15 images" in message and "colour (RGB) input for a grey network" in message
    assert "size 224x224 against the native 28x28" in message and "qualoader calibrate --reference" in message


def test_strict_raises_for_every_batch(photos_224: torch.Tensor) -> None:
    metric = create_metric("bn-shift", strict=True)
    for _ in range(2):
        with pytest.raises(DomainError, match="outside the input domain"):
            metric(photos_224)


def test_fashion_mnist_clean_and_corrupted_stay_silent(fashion_mnist_test) -> None:
    from qualoader.corruptions import corrupt

    clean = fashion_mnist_test[0][:64]
    metric = create_metric("bn-shift", strict=True)
    for name in ("contrast", "brightness", "gaussian_noise", "fog"):  # degradations move intensity statistics, not the domain
        metric(corrupt(clean.float() / 255, name, 5, generator=torch.Generator().manual_seed(0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DomainWarning)
        create_metric("bn-shift")(clean)
        create_metric("bn-shift")(torch.nn.functional.interpolate(clean.float() / 255, size=32))  # 32 px is close enough


def test_grey_photo_in_three_channels_is_grey(photos: torch.Tensor) -> None:
    grey = photos.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    small = torch.nn.functional.interpolate(grey, size=(28, 28), mode="area")
    masks = domain_mismatch(small, GREY_28)
    assert not masks["channels"].any() and not masks["size"].any()
    assert masks["channels"].dtype == torch.bool and masks["size"].shape == (15,)
    colour = torch.nn.functional.interpolate(photos, size=(28, 28), mode="area")
    array = colour.numpy().astype(np.float64)
    chroma = (array.max(axis=1) - array.min(axis=1)).mean(axis=(1, 2))  # half of skimage's photos are grey scenes stored as RGB
    assert domain_mismatch(colour, GREY_28)["channels"].tolist() == (chroma > GREY_28.chroma_tolerance).tolist()
    assert 3 <= int((chroma > GREY_28.chroma_tolerance).sum()) < 15


def test_intensity_flag_follows_the_measured_ranges() -> None:
    flat = torch.full((2, 1, 28, 28), 0.3)  # std 0 < 0.1 - margin
    varied = torch.zeros(2, 1, 28, 28)
    varied[:, :, :, :14] = 0.8  # mean 0.4, std 0.4: typical
    masks = domain_mismatch(torch.cat([flat, varied]), GREY_28)
    assert masks["intensity"].tolist() == [True, True, False, False]
    assert not out_of_domain(torch.cat([flat, varied]), GREY_28).any()  # reported, not out of domain


def test_out_of_domain_fraction_over_a_dataset(photos: torch.Tensor, fashion_mnist_test) -> None:
    images = fashion_mnist_test[0][:30]
    dataset = [(image, 0) for image in images] + [(photo, 1) for photo in photos[:10]]
    summary = out_of_domain_fraction(dataset, GREY_28)
    assert summary["n_images"] == 40 and summary["out_of_domain"] == pytest.approx(10 / 40)
    colourful = int(domain_mismatch(photos[:10], GREY_28)["channels"].sum())  # grey scenes among the photos pass the channel check
    assert summary["size"] == pytest.approx(10 / 40) and summary["channels"] == pytest.approx(colourful / 40) and colourful > 0
    assert out_of_domain_fraction(images, GREY_28)["out_of_domain"] == 0.0
    assert out_of_domain_fraction([{"image": photos[:4]}], GREY_28, max_images=3)["n_images"] == 3
    assert out_of_domain_fraction([], GREY_28) == {"channels": 0.0, "size": 0.0, "intensity": 0.0, "out_of_domain": 0.0, "n_images": 0}


def test_measure_matches_numpy() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(50, 1, 8, 8, generator=generator) * torch.linspace(0.2, 1.0, 50).view(50, 1, 1, 1)
    domain = InputDomain.measure([images[:20], images[20:]], channels=1, size=8, quantile=0.0)
    array = images.numpy().astype(np.float64)
    assert domain.mean[0] == pytest.approx(array.mean(), abs=1e-6) and domain.std[0] == pytest.approx(array.std(), abs=1e-6)
    per_image = array.reshape(50, -1)
    assert domain.image_mean_range == pytest.approx((per_image.mean(1).min(), per_image.mean(1).max()), abs=1e-6)
    assert domain.image_std_range == pytest.approx((per_image.std(1).min(), per_image.std(1).max()), abs=1e-6)
    assert InputDomain.from_dict(domain.to_dict()) == domain


def test_metric_domain_survives_pickling(photos_224: torch.Tensor) -> None:
    metric = create_metric("bn-shift")
    assert metric.input_domain.image_mean_range is not None  # the shipped profile's measured domain
    copy = pickle.loads(pickle.dumps(metric))
    with pytest.warns(DomainWarning):
        copy(photos_224[:2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 2}, "channels should be 1 or 3"),
        ({"size": (0, 28)}, "size should be"),
        ({"mean": (0.1, 0.2)}, "mean should be 1 or 1 numbers"),
        ({"image_mean_range": (0.9, 0.1)}, "low <= high"),
        ({"max_size_ratio": 0.5}, "max_size_ratio should be a number >= 1"),
    ],
)
def test_domain_rejects_bad_values(kwargs: dict, match: str) -> None:
    base = {"channels": 1, "size": (28, 28), "mean": (0.3,), "std": (0.3,)}
    with pytest.raises(ValueError, match=match):
        InputDomain(**{**base, **kwargs})


def test_bad_batches() -> None:
    with pytest.raises(TypeError, match="images should be a torch.Tensor"):
        out_of_domain([[0.0]], GREY_28)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="C in"):
        out_of_domain(torch.zeros(1, 2, 28, 28), GREY_28)
    with pytest.raises(ValueError, match="max_images should be None or a positive int"):
        out_of_domain_fraction(torch.zeros(1, 1, 28, 28), GREY_28, max_images=0)


def test_guard_leaves_invalid_input_to_the_metric_checks(photos_224: torch.Tensor) -> None:
    metric = create_metric("bn-shift", strict=True)
    with pytest.raises(TypeError, match="dtype"):
        metric((photos_224 * 255).to(torch.int32))  # not a domain error: the input itself is invalid
    with pytest.raises(DomainError):
        metric((photos_224 * 255).round().to(torch.uint8))  # uint8 photos are valid input, out of domain


def _resizing_profile(domain: InputDomain):
    """The shipped bn-shift profile with another measured domain (its transform resizes every image to 28 px)."""
    from dataclasses import replace

    from qualoader.profiles import default_profile_path, load_profile

    profile = load_profile(default_profile_path("bn-shift"))
    return replace(profile, name="mine/bn-shift", reference=replace(profile.reference, domain=domain))


def test_the_guard_checks_sizes_against_the_profiles_calibration_images(fashion_mnist_test) -> None:
    """Calibrated on images of 28 to 70 px that its transform resized to 28 px, a profile does not flag a 70 px image."""
    from qualoader.metrics import metric_from_profile

    images = fashion_mnist_test[0][:40].float() / 255
    sizes = [(28 + index, 28 + index) for index in range(43)][:40]
    sizes[-1] = (70, 70)
    measured = InputDomain.measure(images, channels=1, size=28, source_sizes=sizes)
    assert measured.source_size_range == ((28, 28), (70, 70))
    assert InputDomain.from_dict(measured.to_dict()) == measured
    large = torch.nn.functional.interpolate(images[:4], size=(70, 70), mode="bilinear", antialias=True).clamp(0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DomainWarning)
        metric_from_profile(_resizing_profile(measured))(large)  # inside the calibration sizes: silent
    unmeasured = InputDomain.measure(images, channels=1, size=28)  # all at 28 px: no range, the native size rules
    assert unmeasured.source_size_range is None and "source_size_range" not in unmeasured.to_dict()
    with pytest.warns(DomainWarning, match="size 70x70 against the native 28x28") as caught:
        metric_from_profile(_resizing_profile(unmeasured))(large)
    message = str(caught[0].message)
    # the user's own profile is in use: the message does not tell them to build one
    assert "qualoader calibrate --reference" not in message and "rebuild the profile on data like these" in message
    huge = torch.nn.functional.interpolate(images[:2], size=(150, 150), mode="bilinear").clamp(0, 1)
    with pytest.raises(DomainError, match="size 150x150 against the 28x28 to 70x70 of the profile's calibration images"):
        metric_from_profile(_resizing_profile(measured), strict=True)(huge)
