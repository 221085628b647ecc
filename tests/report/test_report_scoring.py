"""``score_source`` through the engine: many metrics per decode, mixed sizes, tags read instead of recomputed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qualoader.decoding import load_image
from qualoader.metrics import create_metric
from qualoader.report import load_source, score_source


def test_mixed_folder_scored_by_every_metric_in_one_pass(image_folder: Path) -> None:
    names = ["sharpness", "colorfulness", "bn-shift"]
    metrics = {name: create_metric(name) for name in names}
    source = load_source(image_folder)
    table = score_source(source, metrics, batch_size=5)
    assert len(table.samples) == 26 and table.problems == []
    images = [load_image(sample.locator) for sample in table.samples]
    assert {tuple(image.shape) for image in images} == {(3, 64, 64), (1, 28, 28)}  # two sizes, two channel counts
    for name, metric in metrics.items():
        expected = np.array([float(metric(image[None])[0]) for image in images])
        np.testing.assert_allclose(table.scores[name], expected, rtol=1e-4, atol=1e-6, err_msg=name)
    assert set(table.difficulty) == {"bn-shift"}  # the only calibrated metric
    np.testing.assert_allclose(
        table.difficulty["bn-shift"], metrics["bn-shift"].difficulty(torch.from_numpy(table.scores["bn-shift"])).numpy()
    )


def test_tagged_samples_only_score_missing_metrics(shards: list[Path]) -> None:
    metric = create_metric("contrast")
    calls = []
    original = metric.score_features

    def counted(features):  # noqa: ANN001, ANN202 - the test spy
        calls.append(features.batch)
        return original(features)

    metric.score_features = counted  # type: ignore[method-assign]
    table = score_source(load_source(shards), {"sharpness": create_metric("sharpness"), "contrast": metric}, batch_size=64)
    assert table.from_tags == {"sharpness": 40, "contrast": 0}
    np.testing.assert_allclose(table.scores["sharpness"][:40], np.arange(40.0))  # tags, not recomputed
    assert sum(calls) == 60  # contrast decoded and computed once per image


def test_full_reference_metric_is_refused_once(image_folder: Path) -> None:
    with pytest.raises(ValueError, match="should be no-reference metrics, but got the full-reference metric 'psnr'"):
        score_source(load_source(image_folder, max_images=2), {"psnr": create_metric("psnr")})
