"""The one check helper: every message follows "<arg> should be <expectation>, but got <arg>=<value>"."""

from __future__ import annotations

import re

import pytest
import torch

from qualoader._validation import (
    check_choice,
    check_images,
    check_positive_int,
    check_probability,
    check_same_shape,
    check_severity,
    check_type,
)


def test_valid_images_pass_through_and_uint8_is_scaled():
    images = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert check_images(images) is images
    converted = check_images(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8))
    assert converted.dtype == torch.float32 and bool((converted == 1).all())


@pytest.mark.parametrize(
    ("shape", "fix"),
    [
        ((2, 32, 32, 3), "pass images.permute(0, 3, 1, 2)"),
        ((2, 32, 24, 1), "pass images.permute(0, 3, 1, 2)"),
        ((2, 32, 32, 4), "pass images[..., :3].permute(0, 3, 1, 2)"),
        ((32, 32, 3), "pass images.permute(2, 0, 1).unsqueeze(0)"),
    ],
)
def test_channels_last_input_names_the_permute(shape, fix):
    with pytest.raises(ValueError, match=re.escape(f"but got images.shape={shape}; it looks") + ".*" + re.escape(fix)):
        check_images(torch.zeros(shape))


def test_one_chw_image_suggests_unsqueeze_and_ambiguous_layouts_are_not_guessed():
    with pytest.raises(ValueError, match=re.escape("for one image (C, H, W) pass images.unsqueeze(0)")):
        check_images(torch.zeros(3, 16, 16))
    # (B, 3, H, 3) is a valid NCHW batch of 3-px-wide images: accepted, not second-guessed.
    assert check_images(torch.zeros(2, 3, 16, 3)).shape == (2, 3, 16, 3)
    # Channel dim 4 is not a layout question: the plain channel error, no permute hint.
    with pytest.raises(ValueError, match=r"C in \{1, 3\} channels, but got images.shape=\(2, 4, 16, 3\)$"):
        check_images(torch.zeros(2, 4, 16, 3))


def test_min_size_is_named_with_its_owner():
    images = torch.zeros(2, 3, 10, 12)
    assert check_images(images, min_size=10) is images
    with pytest.raises(
        ValueError,
        match=re.escape("images should be at least 11x11 pixels (H, W >= 11) for metric 'ssim', but got images.shape=(2, 3, 10, 12)"),
    ):
        check_images(images, min_size=11, owner="metric 'ssim'")
    with pytest.raises(ValueError, match=re.escape("x should be at least 13x13 pixels (H, W >= 13), but got x.shape=(2, 3, 10, 12)")):
        check_images(images, "x", min_size=13)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([[0.0]], TypeError, "images should be a torch.Tensor of shape (B, C, H, W), but got images of type list"),
        (torch.zeros(1, 3, 4), ValueError, "images should have shape (B, C, H, W), but got images.shape=(1, 3, 4)"),
        (torch.zeros(0, 3, 4, 4), ValueError, "images should be non-empty in B, H and W"),
        (
            torch.zeros(1, 3, 4, 4, dtype=torch.int32),
            TypeError,
            "images should have dtype uint8 or floating, but got images.dtype=torch.int32",
        ),
        (torch.full((1, 1, 2, 2), float("nan")), ValueError, "images should be finite, but got images with 4 NaN/Inf values"),
        (torch.full((1, 1, 2, 2), 2.0), ValueError, "images should have float values in [0, 1], but got images in [2, 2]"),
    ],
)
def test_bad_images_follow_the_template(value, error, match):
    with pytest.raises(error, match=re.escape(match)):
        check_images(value)


def test_values_are_not_read_when_not_asked():
    out_of_range = torch.full((1, 1, 2, 2), 2.0)
    assert check_images(out_of_range, check_values=False) is out_of_range


def test_same_shape_reference():
    images = torch.zeros(2, 1, 8, 8)
    assert check_same_shape(torch.ones(2, 1, 8, 8, dtype=torch.float64), images).dtype == torch.float32
    with pytest.raises(
        ValueError, match=re.escape("reference should have the shape of images (2, 1, 8, 8), but got reference.shape=(1, 1, 8, 8)")
    ):
        check_same_shape(torch.zeros(1, 1, 8, 8), images)
    with pytest.raises(ValueError, match=re.escape("reference.permute(0, 3, 1, 2)")):
        check_same_shape(torch.zeros(2, 8, 8, 1), images)


def test_scalar_checks():
    check_type(1, "n", int, "an int")
    with pytest.raises(TypeError, match="n should be an int, but got n of type str"):
        check_type("1", "n", int, "an int")
    check_choice("b", "mode", {"a", "b"})
    with pytest.raises(ValueError, match=re.escape("mode should be one of {'a', 'b'}, but got mode='c'")):
        check_choice("c", "mode", {"b", "a"})
    assert check_positive_int(3, "k") == 3 and check_positive_int(0, "k", allow_zero=True) == 0
    with pytest.raises(TypeError, match="k should be an int, but got k of type bool"):
        check_positive_int(True, "k")
    with pytest.raises(ValueError, match="k should be a positive int, but got k=0"):
        check_positive_int(0, "k")
    assert check_probability(1, "p") == 1.0
    with pytest.raises(ValueError, match=re.escape("p should be in (0, 1], but got p=0")):
        check_probability(0, "p", open_low=True)
    assert check_severity(5) == 5
    with pytest.raises(ValueError, match="severity should be an int in 1..5, but got severity=6"):
        check_severity(6)


def test_normalised_images_are_told_to_normalise_after_scoring() -> None:
    """Values below 0 are what transforms.Normalize leaves: the error says where Normalize goes."""
    normalised = (torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) - 0.485) / 0.229
    with pytest.raises(ValueError, match=r"should have float values in \[0, 1\].*normalise after scoring"):
        check_images(normalised)
    with pytest.raises(ValueError) as raised:
        check_images(torch.full((1, 1, 2, 2), 2.0))
    assert "Normalize" not in str(raised.value)  # above 1 only: a scale problem, not a normalisation
