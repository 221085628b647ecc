"""Tests of the training-free ``confidence`` metric: registration, measures, meaning on real images, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from qualoader.corruptions import corrupt
from qualoader.metrics import create_metric, list_metrics, metric_info
from qualoader.metrics.aligned.confidence import MEASURES, confidence


@pytest.fixture(scope="module")
def garments(fashion_mnist_test) -> torch.Tensor:
    return fashion_mnist_test[0][:200].float() / 255


def test_registered_as_no_reference_higher_is_better() -> None:
    assert "confidence" in list_metrics("NR")
    info = metric_info("confidence")
    assert info.higher_is_better and info.mode == "NR" and not info.requires_weights


@pytest.mark.parametrize("measure", sorted(MEASURES))
def test_function_and_module_agree_and_fall_with_degradation(measure: str, garments: torch.Tensor) -> None:
    metric = create_metric("confidence", measure=measure)
    scores = metric(garments)
    assert scores.shape == (200,) and torch.equal(scores, confidence(metric.network, garments, measure))
    assert not scores.requires_grad
    for name in ("gaussian_noise", "low_light", "occlusion"):  # one ImageNet-C type, two outside it
        degraded = corrupt(garments, name, 5, generator=torch.Generator().manual_seed(0))
        assert metric(degraded).mean() < scores.mean(), name


def test_ranges(garments: torch.Tensor) -> None:
    probability = create_metric("confidence")(garments)
    assert bool(((probability >= 0.1 - 1e-6) & (probability <= 1 + 1e-6)).all())  # 10 classes
    entropy = create_metric("confidence", measure="entropy")(garments)
    assert bool(((entropy <= 1e-6) & (entropy >= -math.log(10) - 1e-4)).all())
    assert create_metric("confidence").fingerprint() != create_metric("confidence", measure="energy").fingerprint()


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="measure should be one of"):
        create_metric("confidence", measure="temperature")
    with pytest.raises(TypeError, match="network should be a ReferenceNetwork"):
        confidence("default", torch.rand(1, 1, 28, 28))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="images should have shape"):
        create_metric("confidence")(torch.rand(1, 28, 28))


def test_shipped_confidence_is_a_calibrated_profile_like_the_others() -> None:
    from qualoader.calibration.strength import weak_fit_reason
    from qualoader.datasets import load_fashion_mnist
    from qualoader.engine import ScoringEngine

    metric = create_metric("confidence")
    assert metric.calibration is not None and metric.profile is not None and metric.profile.metric.name == "confidence"
    assert weak_fit_reason(metric.profile.provenance["held_out"]) is None  # a fit that clears chance, CI included
    images, labels = load_fashion_mnist("test")
    scores = metric(images[:200])
    difficulty = metric.difficulty(scores)
    assert difficulty.shape == (200,) and bool(((difficulty >= 0) & (difficulty <= 1)).all())
    # more confident, never harder: the map is monotone in the score
    ordered = difficulty[scores.argsort()]
    assert bool((ordered[1:] <= ordered[:-1] + 1e-6).all())
    # the network's own mistakes get a higher expected error than its right answers
    wrong = metric.network(images[:200].float() / 255).argmax(1) != labels[:200]
    assert float(difficulty[wrong].mean()) > float(difficulty[~wrong].mean())
    # the engine no longer drops the key
    assert "confidence" in ScoringEngine(metric).score(images[:8]).difficulty
    # another measure is another score: the shipped calibration does not fit it
    assert create_metric("confidence", measure="entropy").calibration is None
