from __future__ import annotations

import kornia
import pytest
import torch

from qualoader.datasets import load_photos
from qualoader.metrics import create_metric
from qualoader.metrics.full_reference import MSSSIM, PSNR, SSIM, ms_ssim, psnr, ssim


@pytest.fixture(scope="module")
def photos192() -> torch.Tensor:
    """Five real photos (colour and grey), 192 px: big enough for five MS-SSIM scales."""
    return load_photos(192, names=("astronaut", "camera", "chelsea", "coffee", "rocket"))


def _distortions(clean: torch.Tensor) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return {
        "noise": (clean + 0.06 * torch.randn(clean.shape, generator=generator)).clamp(0, 1),
        "blur": kornia.filters.gaussian_blur2d(clean, (9, 9), (2.0, 2.0)),
        "contrast": 0.5 * clean + 0.25,
    }


# (pyiqa name, pyiqa options, our function, our options)
AGREEMENT = [
    ("psnr", {}, psnr, {}),
    ("psnry", {}, psnr, {"y_channel": True}),
    ("ssim", {}, ssim, {}),
    ("ssimc", {}, ssim, {"y_channel": False}),
    ("ssim", {"downsample": True}, ssim, {"downsample": True}),
    ("ms_ssim", {}, ms_ssim, {}),
]


@pytest.mark.parametrize(
    ("pyiqa_name", "pyiqa_options", "function", "options"), AGREEMENT, ids=lambda v: str(v) if isinstance(v, str) else None
)
def test_agrees_with_pyiqa_on_real_photos(pyiqa_name, pyiqa_options, function, options, photos192):
    pyiqa = pytest.importorskip("pyiqa")
    clean = photos192
    if options.get("downsample"):
        clean = load_photos(384, names=("astronaut", "coffee", "chelsea"))  # big enough for MATLAB's pre-filter
    theirs_metric = pyiqa.create_metric(pyiqa_name, device="cpu", **pyiqa_options)
    for distorted in _distortions(clean).values():
        ours = function(distorted, clean, **options)
        theirs = theirs_metric(distorted, clean).reshape(-1).to(ours.dtype)
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=0)


@pytest.mark.parametrize(("name", "function"), [("psnr", psnr), ("ssim", ssim), ("ms-ssim", ms_ssim)])
def test_module_matches_function_and_is_full_reference(name, function, photos192):
    metric = create_metric(name)
    distorted = _distortions(photos192)["noise"]
    torch.testing.assert_close(metric(distorted, photos192), function(distorted, photos192))
    assert metric.requires_reference and metric.higher_is_better


def test_identical_images_score_perfectly(photos192):
    torch.testing.assert_close(ssim(photos192, photos192), torch.ones(len(photos192)))
    torch.testing.assert_close(ms_ssim(photos192, photos192), torch.ones(len(photos192)))
    torch.testing.assert_close(psnr(photos192, photos192), torch.full((len(photos192),), 80.0))


def test_psnr_of_a_constant_offset():
    clean = torch.full((1, 3, 8, 8), 0.5)
    # MSE = 0.1^2 -> PSNR = 20 dB (up to the 1e-8 stabiliser)
    torch.testing.assert_close(psnr(clean + 0.1, clean), torch.tensor([20.0]), rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", ["psnr", "ssim", "ms-ssim"])
def test_falls_as_noise_rises(name, photos192):
    metric = create_metric(name)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(photos192.shape, generator=generator)
    scores = torch.stack([metric((photos192 + s * noise).clamp(0, 1), photos192) for s in (0.01, 0.03, 0.06, 0.1, 0.2)], 1)
    assert bool((scores.diff(dim=1) < 0).all()), scores


def test_ssim_is_symmetric(photos192):
    distorted = _distortions(photos192)["blur"]
    torch.testing.assert_close(ssim(distorted, photos192), ssim(photos192, distorted))


def test_ycbcr_luma_differs_from_yiq_luma(photos192):
    distorted = _distortions(photos192)["noise"]
    assert not torch.allclose(ssim(distorted, photos192, color_space="ycbcr"), ssim(distorted, photos192))


def test_grey_images_skip_the_colour_transform(photos192):
    grey, distorted = photos192[:, :1], _distortions(photos192)["noise"][:, :1]
    torch.testing.assert_close(ssim(distorted, grey), ssim(distorted, grey, y_channel=False))


def test_ms_ssim_rejects_small_images():
    images = torch.rand(1, 3, 128, 128)
    with pytest.raises(ValueError, match="at least 161 px"):
        ms_ssim(images, images)
    with pytest.raises(ValueError, match=r"at least 161x161 pixels .* for metric 'ms-ssim'"):
        create_metric("ms-ssim")(images, images)


@pytest.mark.parametrize(("name", "window_size", "minimum"), [("ssim", 7, 7), ("ms-ssim", 7, 97), ("ms-ssim", 3, 33)])
def test_min_size_follows_the_window(name, window_size, minimum):
    metric = create_metric(name, window_size=window_size)
    assert metric.min_size == minimum
    images = torch.rand(1, 3, minimum, minimum, generator=torch.Generator().manual_seed(0))
    assert metric(images, images).shape == (1,)
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum} pixels"):
        metric(images[..., 1:, :], images[..., 1:, :])


def test_ssim_rejects_images_smaller_than_the_window():
    images = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="window_size=11"):
        ssim(images, images)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"window_size": 10}, ValueError, "window_size should be an odd int"),
        ({"window_size": 0}, ValueError, "window_size should be a positive int"),
        ({"window_size": 11.0}, TypeError, "window_size should be an int"),
        ({"sigma": 0.0}, ValueError, "sigma should be positive"),
        ({"sigma": "1"}, TypeError, "sigma should be a float"),
        ({"color_space": "lab"}, ValueError, "color_space should be one of"),
        ({"y_channel": 1}, TypeError, "y_channel should be a bool"),
        ({"quantize": "yes"}, TypeError, "quantize should be a bool"),
    ],
)
def test_bad_options_raise(kwargs, error, match):
    images = torch.rand(1, 3, 192, 192)
    for metric_class in (SSIM, MSSSIM):
        with pytest.raises(error, match=match):
            metric_class(**kwargs)
    if "quantize" not in kwargs:
        with pytest.raises(error, match=match):
            ssim(images, images, **kwargs)


def test_bad_psnr_options_raise():
    with pytest.raises(ValueError, match="eps should be positive"):
        PSNR(eps=0.0)
    with pytest.raises(TypeError, match="eps should be a float"):
        PSNR(eps=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="color_space should be one of"):
        psnr(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), color_space="hsv")


@pytest.mark.parametrize("function", [psnr, ssim, ms_ssim])
def test_functions_reject_mismatched_pairs(function):
    with pytest.raises(ValueError, match="reference should have the"):
        function(torch.rand(1, 3, 192, 192), torch.rand(1, 3, 190, 192))
    with pytest.raises(TypeError, match="reference should be a torch.Tensor"):
        function(torch.rand(1, 3, 192, 192), None)


def test_config_round_trips_through_constructor():
    metric = SSIM(window_size=7, sigma=1.0, y_channel=False)
    rebuilt = SSIM(**metric.get_config())
    assert rebuilt.fingerprint() == metric.fingerprint()
