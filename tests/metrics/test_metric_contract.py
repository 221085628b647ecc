"""The contract every registered metric keeps, whatever its family.

Scores have shape (B,), dtype float64 for float64 input and float32 for any other input, and no
autograd graph; input smaller than the metric's declared ``min_size`` and channels-last input
are refused with a message that says what to do. Parametrised over :func:`list_metrics`, so a
newly registered metric is held to the contract without a new test.
"""

from __future__ import annotations

import re

import pytest
import torch

from qualoader.datasets import load_photos
from qualoader.metrics import QualityMetric, create_metric, list_metrics
from qualoader.metrics.base import score_dtype

INPUT_DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _build(name: str) -> QualityMetric:
    """The metric with its default arguments; skipped where it needs files this machine cannot have offline."""
    try:
        return create_metric(name)
    except FileNotFoundError as error:  # e.g. zeroshot's CLIP checkpoint, never downloaded
        pytest.skip(f"{name} needs a local checkpoint that is unavailable offline: {str(error)[:120]}")


def _call(metric: QualityMetric, images: torch.Tensor) -> torch.Tensor:
    """Score ``images`` against a seeded noisy copy as reference (full-reference metrics)."""
    if not metric.requires_reference:
        return metric(images)
    generator = torch.Generator().manual_seed(1)
    as_float = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    noisy = (as_float + 0.05 * torch.randn(as_float.shape, generator=generator)).clamp(0, 1)
    reference = (noisy * 255).round().to(torch.uint8) if images.dtype == torch.uint8 else noisy.to(images.dtype)
    return metric(images, reference)


def _photos(size: int) -> torch.Tensor:
    """Two real photos (scikit-image) at ``size`` px, float32 in [0, 1]."""
    return load_photos(size, names=("astronaut", "coffee"))


def test_every_metric_is_covered():
    assert len(list_metrics()) >= 15, "the registry lost metrics: the contract would hold vacuously"


@pytest.mark.parametrize("name", list_metrics())
def test_scores_follow_the_dtype_policy_without_graph(name):
    metric = _build(name)
    base = _photos(max(metric.min_size, 32))
    for dtype in INPUT_DTYPES:
        images = (base * 255).round().to(torch.uint8) if dtype == torch.uint8 else base.to(dtype).requires_grad_(True)
        scores = _call(metric, images)
        expected = torch.float64 if dtype == torch.float64 else torch.float32
        assert scores.dtype == expected == score_dtype(dtype), f"{name}: {dtype} input gave {scores.dtype} scores"
        assert scores.shape == (2,)
        assert scores.requires_grad is False and scores.grad_fn is None, f"{name}: {dtype} scores carry an autograd graph"
        assert bool(torch.isfinite(scores).all())


@pytest.mark.parametrize("name", list_metrics())
def test_declared_min_size_is_exact(name):
    """The declared minimum works, and one pixel less (in H or in W) is refused with it named."""
    metric = _build(name)
    size = metric.min_size
    assert isinstance(size, int) and size >= 1
    square = _photos(max(size, 1))
    assert _call(metric, square).shape == (2,)
    if size == 1:
        return
    expected = re.escape(f"images should be at least {size}x{size} pixels (H, W >= {size}) for metric {name!r}")
    for smaller in (square[..., : size - 1, :], square[..., :, : size - 1]):
        with pytest.raises(ValueError, match=expected):
            _call(metric, smaller.contiguous())


@pytest.mark.parametrize("name", list_metrics())
def test_channels_last_input_suggests_permute(name):
    metric = _build(name)
    images = _photos(max(metric.min_size, 32))
    channels_last = images.permute(0, 2, 3, 1)
    with pytest.raises(ValueError, match=re.escape("pass images.permute(0, 3, 1, 2)")):
        metric(channels_last, channels_last) if metric.requires_reference else metric(channels_last)
    scores = _call(metric, channels_last.permute(0, 3, 1, 2))  # the suggested fix scores
    assert scores.shape == (2,)


@pytest.mark.parametrize("name", list_metrics("FR"))
def test_reference_is_held_to_the_same_checks(name):
    metric = _build(name)
    images = _photos(max(metric.min_size, 32))
    with pytest.raises(ValueError, match=re.escape("reference should have C in {1, 3} channels")):
        metric(images, images.permute(0, 2, 3, 1))
