from __future__ import annotations

import pytest
import torch

from qualoader.metrics import create_metric
from qualoader.metrics.classical.entropy import HistogramEntropy, histogram_entropy


def test_module_matches_function(photos):
    metric = create_metric("entropy")
    torch.testing.assert_close(metric(photos), histogram_entropy(photos))
    assert metric.higher_is_better


@pytest.mark.parametrize("degradation", ["contrast", "quantise"])
def test_falls_with_contrast_loss_and_quantisation(degradation, photos, degrade, scores_over_severity):
    scores = scores_over_severity(create_metric("entropy"), photos, getattr(degrade, degradation))
    assert bool((scores.mean(dim=0).diff() < 0).all()), scores.mean(dim=0)
    assert bool((scores[:, -1] < scores[:, 0]).all()), scores


def test_closed_form_values():
    constant = torch.full((1, 1, 16, 16), 0.5)
    two_levels = torch.zeros(1, 1, 16, 16)
    two_levels[..., :8] = 1.0
    all_levels = (torch.arange(256.0) / 255).view(1, 1, 16, 16)
    scores = histogram_entropy(torch.cat([constant, two_levels, all_levels]))
    torch.testing.assert_close(scores, torch.tensor([0.0, 1.0, 8.0]))


def test_agrees_with_pyiqa(photos):
    pyiqa = pytest.importorskip("pyiqa")
    theirs = pyiqa.create_metric("entropy", device="cpu")(photos).flatten()
    torch.testing.assert_close(histogram_entropy(photos), theirs.float(), rtol=1e-3, atol=0)


@pytest.mark.parametrize("bins", [0, -1])
def test_bad_bins_raise(bins):
    with pytest.raises(ValueError, match="bins should be a positive int"):
        HistogramEntropy(bins=bins)
    with pytest.raises(ValueError, match="bins should be a positive int"):
        histogram_entropy(torch.rand(1, 1, 4, 4), bins=bins)
