from __future__ import annotations

import torch

from qualoader.metrics import create_metric
from qualoader.metrics.classical.colorfulness import colorfulness


def test_module_matches_function(photos):
    metric = create_metric("colorfulness")
    torch.testing.assert_close(metric(photos), colorfulness(photos))
    assert metric.higher_is_better


def test_falls_with_desaturation(photos, degrade, scores_over_severity):
    scores = scores_over_severity(create_metric("colorfulness"), photos, degrade.desaturate)
    colourful = scores[:, 0] > 0.01
    assert int(colourful.sum()) >= 5  # the fixture holds colour photos
    assert bool((scores[colourful].diff(dim=1) < 0).all()), scores
    assert bool((scores.diff(dim=1) <= 1e-6).all())
    torch.testing.assert_close(scores[:, -1], torch.zeros(len(photos)), atol=1e-6, rtol=0)


def test_single_channel_is_zero():
    torch.testing.assert_close(colorfulness(torch.rand(3, 1, 8, 8)), torch.zeros(3))


def test_uniform_pure_red_follows_the_formula():
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    # rg = 1 and yb = 0.5 everywhere: no spread, mean term 0.3 * sqrt(1 + 0.25)
    torch.testing.assert_close(colorfulness(red), torch.tensor([0.3 * 1.25**0.5]))
