from __future__ import annotations

import torch

from qualoader.metrics import create_metric
from qualoader.metrics.classical.brightness import mean_brightness


def test_module_matches_function(photos):
    metric = create_metric("brightness")
    torch.testing.assert_close(metric(photos), mean_brightness(photos))


def test_rises_with_brightness(photos, degrade, scores_over_severity):
    scores = scores_over_severity(create_metric("brightness"), photos, degrade.brightness)
    assert bool((scores.diff(dim=1) > 0).all()), scores


def test_luma_weights_of_pure_primaries():
    primaries = torch.eye(3).view(3, 3, 1, 1).expand(3, 3, 4, 4)
    torch.testing.assert_close(mean_brightness(primaries), torch.tensor([0.299, 0.587, 0.114]))
