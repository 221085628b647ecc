"""Fixtures of the calibration tests: synthetic scores with a known monotone error probability."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

Synthetic = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _synthetic(higher_is_better: bool, n: int = 4000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores, Bernoulli errors and the true error probability ``sigmoid(-+3 s)`` of scores in [-2, 2]."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, generator=generator, dtype=torch.float64) * 4 - 2
    probability = torch.sigmoid((-3.0 if higher_is_better else 3.0) * scores)
    errors = (torch.rand(n, generator=generator, dtype=torch.float64) < probability).double()
    return scores, errors, probability


@pytest.fixture
def synthetic() -> Synthetic:
    """``synthetic(higher_is_better, n=4000, seed=0) -> (scores, errors, probability)``, each :math:`(n,)` float64."""
    return _synthetic


class IntensityClassifier(torch.nn.Module):
    """A small fixed classifier: class = which quarter of the intensity range the image mean falls in."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mean = images.float().mean(dim=(1, 2, 3))
        centres = torch.tensor([0.125, 0.375, 0.625, 0.875], device=images.device)
        return -(mean[:, None] - centres).abs()


@pytest.fixture
def intensity_classifier() -> IntensityClassifier:
    """Reference network of the sweep tests: logits :math:`(B, 4)` from the mean intensity."""
    return IntensityClassifier()


@pytest.fixture
def toy_sharpness() -> torch.nn.Module:
    """A no-reference metric: mean absolute horizontal difference, higher is better."""
    from qualoader.metrics.base import QualityMetric

    class ToySharpness(QualityMetric):
        name = "toy-sharpness"

        def score(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
            return (images[..., 1:] - images[..., :-1]).abs().mean(dim=(1, 2, 3))

    return ToySharpness()
