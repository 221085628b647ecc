"""Protocol, validation and registry tests, parametrised over every registered metric."""

from __future__ import annotations

import pytest
import torch

from qualoader.datasets import load_photos
from qualoader.metrics import (
    QualityMetric,
    create_metric,
    list_metrics,
    metric_info,
    register_metric,
)
from qualoader.metrics.registry import register_metric_prefix

OFFLINE_METRICS = [name for name in list_metrics() if not metric_info(name).requires_weights]
BUILTIN = {
    "blockiness", "brightness", "clipping", "colorfulness", "contrast", "entropy", "gradient-energy",
    "ms-ssim", "noise", "psnr", "sharpness", "ssim",
}


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Three real 192-px photos as uint8-exact floats and a seeded noisy copy (MS-SSIM needs >= 161 px)."""
    clean = (load_photos(192, names=("astronaut", "coffee", "camera")) * 255).round() / 255
    generator = torch.Generator().manual_seed(0)
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    return (noisy * 255).round() / 255, clean


def _call(metric: QualityMetric, images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return metric(images, reference) if metric.requires_reference else metric(images)


def test_builtins_are_registered_with_documented_mode():
    assert BUILTIN <= set(list_metrics())
    assert {"psnr", "ssim", "ms-ssim"} <= set(list_metrics("FR"))
    assert not {"psnr", "ssim", "ms-ssim"} & set(list_metrics("NR"))
    for name in BUILTIN:
        info = metric_info(name)
        assert info.summary and info.name == name and not info.requires_weights


@pytest.mark.parametrize("name", OFFLINE_METRICS)
def test_scores_have_batch_shape_and_are_finite(name, pair, device):
    images, reference = (tensor.to(device) for tensor in pair)
    metric = create_metric(name, device=device)
    scores = _call(metric, images, reference)
    assert scores.shape == (len(images),)
    assert scores.device.type == device.type
    assert bool(torch.isfinite(scores).all())


@pytest.mark.parametrize("name", OFFLINE_METRICS)
def test_batched_equals_per_image(name, pair):
    images, reference = pair
    metric = create_metric(name)
    batched = _call(metric, images, reference)
    single = torch.cat([_call(metric, images[i : i + 1], reference[i : i + 1]) for i in range(len(images))])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", OFFLINE_METRICS)
def test_uint8_input_equals_float_input(name, pair):
    images, reference = pair
    metric = create_metric(name)
    as_uint8 = _call(metric, (images * 255).round().to(torch.uint8), (reference * 255).round().to(torch.uint8))
    # entropy bins float input itself: a pixel that sits half-way between two byte levels may land in the
    # neighbouring bin, which moves the entropy of a 192x192 image by a few 1e-5 bits
    tolerance = {"atol": 1e-4, "rtol": 1e-5} if name == "entropy" else {}
    torch.testing.assert_close(as_uint8, _call(metric, images, reference), **tolerance)


@pytest.mark.parametrize("name", OFFLINE_METRICS)
def test_float64_reference_agrees_with_float32(name, pair):
    images, reference = pair
    metric = create_metric(name)
    single = _call(metric, images, reference)
    double = _call(metric, images.double(), reference.double())
    assert double.dtype == torch.float64
    torch.testing.assert_close(single.double(), double, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", OFFLINE_METRICS)
def test_bad_inputs_raise(name, pair):
    images, reference = pair
    metric = create_metric(name)
    other = reference if metric.requires_reference else None
    with pytest.raises(TypeError, match="images should be a torch.Tensor"):
        metric(images.numpy(), other)
    with pytest.raises(ValueError, match=r"images should have shape \(B, C, H, W\)"):
        metric(images[0], other)
    with pytest.raises(ValueError, match="C in"):
        metric(images[:, :2], None if other is None else other[:, :2])
    with pytest.raises(TypeError, match="dtype"):
        metric(images.to(torch.int32), other)
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        metric(bad, other)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        metric(images * 2, other)
    if metric.requires_reference:
        with pytest.raises(ValueError, match="reference should be a tensor"):
            metric(images)
        with pytest.raises(ValueError, match="reference should have the shape"):
            metric(images, reference[:1])
    else:
        with pytest.raises(ValueError, match="reference should be None"):
            metric(images, reference)


@pytest.mark.parametrize("name", OFFLINE_METRICS)
def test_fingerprint_is_stable_and_depends_on_config(name):
    first, second = create_metric(name), create_metric(name)
    assert first.fingerprint() == second.fingerprint()
    assert len(first.fingerprint()) == 16


def test_fingerprint_changes_with_config():
    assert create_metric("blockiness", block=8).fingerprint() != create_metric("blockiness", block=16).fingerprint()
    assert create_metric("ssim").fingerprint() != create_metric("ssim", y_channel=False).fingerprint()


def test_difficulty_without_calibration_raises(pair):
    metric = create_metric("sharpness")
    with pytest.raises(RuntimeError, match="no calibration"):
        metric.difficulty(metric(pair[0]))


def test_difficulty_uses_attached_calibration(pair):
    metric = create_metric("sharpness")
    metric.calibration = lambda scores: 1 - scores.clamp(0, 1)
    scores = metric(pair[0])
    torch.testing.assert_close(metric.difficulty(scores), 1 - scores.clamp(0, 1))


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="did you mean 'sharpness'"):
        create_metric("sharpnes")
    with pytest.raises(KeyError, match="registered:"):
        create_metric("zzzzzz")
    with pytest.raises(KeyError, match="did you mean 'ms-ssim'"):
        metric_info("ms_ssim")


def test_unknown_prefix_and_bad_name_type():
    with pytest.raises(KeyError, match="known prefix"):
        create_metric("nosuchlib:fsim")
    with pytest.raises(TypeError, match="name should be a metric name"):
        create_metric(3)  # type: ignore[arg-type]


def test_list_metrics_bad_mode():
    with pytest.raises(ValueError, match="mode should be one of"):
        list_metrics("XR")


def test_register_rejects_duplicates_and_non_metrics():
    class Duplicate(QualityMetric):
        name = "sharpness"

    with pytest.raises(ValueError, match="already registered"):
        register_metric(Duplicate)
    with pytest.raises(TypeError, match="QualityMetric subclass"):
        register_metric(int)  # type: ignore[arg-type]

    class Nameless(QualityMetric):
        pass

    with pytest.raises(ValueError, match="non-empty name"):
        register_metric(Nameless)
    with pytest.raises(ValueError, match="already registered"):
        register_metric_prefix("pyiqa", lambda rest, **kwargs: None)


def test_unknown_constructor_argument_raises():
    with pytest.raises(TypeError):
        create_metric("sharpness", window=3)


class _MeanMetric(QualityMetric):
    """A differentiable toy metric (unregistered) to check what forward() adds around score()."""

    name = "toy-mean"
    min_size = 4

    def score(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        return images.mean(dim=(1, 2, 3)).to(torch.float16)  # a sloppy dtype, on purpose


def test_forward_applies_the_score_policy_to_any_subclass():
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    scores = _MeanMetric()(images)
    assert scores.dtype == torch.float32 and scores.shape == (3,)
    assert not scores.requires_grad, "score() ran under no_grad"
    assert _MeanMetric()(images.detach().double()).dtype == torch.float64
    with pytest.raises(ValueError, match=r"at least 4x4 pixels \(H, W >= 4\) for metric 'toy-mean'"):
        _MeanMetric()(images[:, :, :3])


def test_forward_refuses_a_score_of_the_wrong_shape():
    class Broken(_MeanMetric):
        def score(self, images, reference=None):
            return images.mean(dim=(2, 3))  # (B, C): forgot the channel mean

    with pytest.raises(RuntimeError, match=r"Broken.score should return shape \(2,\), but got shape \(2, 3\)"):
        Broken()(torch.rand(2, 3, 4, 4))


def test_metrics_base_does_not_import_the_calibration_package() -> None:
    # the calibration package's sweeps import metrics.base; the reverse edge would close a circle
    import ast
    from pathlib import Path

    import qualoader.metrics.base as base

    tree = ast.parse(Path(base.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not any(name == "qualoader.calibration" or name.startswith("qualoader.calibration.") for name in imported if name)
    from qualoader.calibration import Calibration, DifficultyCalibration

    assert base.Calibration is Calibration  # one protocol, importable from both sides
    assert isinstance(DifficultyCalibration.fit([0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 1.0, 1.0], False), Calibration)
