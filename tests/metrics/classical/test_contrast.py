from __future__ import annotations

import torch

from qualoader.metrics import create_metric
from qualoader.metrics.classical.contrast import rms_contrast


def test_module_matches_function(photos):
    metric = create_metric("contrast")
    torch.testing.assert_close(metric(photos), rms_contrast(photos))
    assert metric.higher_is_better


def test_falls_with_contrast_reduction(photos, degrade, scores_over_severity):
    scores = scores_over_severity(create_metric("contrast"), photos, degrade.contrast)
    assert bool((scores.diff(dim=1) < 0).all()), scores


def test_half_black_half_white_has_contrast_one_half():
    images = torch.zeros(1, 1, 4, 4)
    images[..., :2] = 1.0
    torch.testing.assert_close(rms_contrast(images), torch.tensor([0.5]))


def test_grey_rgb_equals_single_channel(photos):
    grey = photos.mean(dim=1, keepdim=True)
    torch.testing.assert_close(rms_contrast(grey.expand(-1, 3, -1, -1)), rms_contrast(grey), rtol=1e-5, atol=1e-6)
