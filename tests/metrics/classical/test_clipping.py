from __future__ import annotations

import pytest
import torch

from qualoader.metrics import create_metric
from qualoader.metrics.classical.clipping import ClippedFraction, clipped_fraction


def test_module_matches_function(photos):
    metric = create_metric("clipping")
    torch.testing.assert_close(metric(photos), clipped_fraction(photos))
    assert not metric.higher_is_better


def test_rises_with_overexposure(photos, degrade, scores_over_severity):
    scores = scores_over_severity(create_metric("clipping"), photos, degrade.overexpose)
    assert bool((scores.diff(dim=1) >= 0).all()), scores
    assert bool((scores.mean(dim=0).diff() > 0).all()), scores.mean(dim=0)


def test_counts_values_that_round_to_0_or_255():
    values = torch.tensor([0.0, 0.4 / 255, 1 / 255, 0.5, 254 / 255, 254.6 / 255, 1.0, 0.2]).view(1, 1, 2, 4)
    torch.testing.assert_close(clipped_fraction(values), torch.tensor([4 / 8]))


@pytest.mark.parametrize(("low", "high"), [(0.5, 0.4), (0.2, 0.2), (-0.1, 0.9), (0.1, 1.5)])
def test_bad_bounds_raise(low, high):
    with pytest.raises(ValueError):
        ClippedFraction(low=low, high=high)
    with pytest.raises(ValueError):
        clipped_fraction(torch.rand(1, 1, 4, 4), low=low, high=high)


def test_bound_type_raises():
    with pytest.raises(TypeError, match="low should be a float"):
        ClippedFraction(low="0")  # type: ignore[arg-type]
