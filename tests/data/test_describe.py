"""describe: count, quantiles, histogram and difficulty buckets of a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from qualoader.data import ScoreStore, describe, precompute
from qualoader.metrics import QualityMetric


def test_summary_matches_numpy(
    tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric, calibrated_brightness: QualityMetric
) -> None:
    store = ScoreStore(tmp_path / "s", 96)
    precompute(fmnist_small, calibrated_brightness, store, progress=False)
    table = store.table(sharpness, create=True)
    table.write(torch.arange(60), sharpness(fmnist_small.tensors[0][:60]))
    summary = describe(store, bins=8)
    by_name = {m.metric: m for m in summary.metrics}
    sharp = by_name["sharpness"]
    values = table.scores()[:60]
    assert sharp.count == 60 and sharp.length == 96
    assert sharp.quantiles[0.5] == pytest.approx(float(np.median(values)))
    assert sharp.quantiles[0.0] == values.min() and sharp.quantiles[1.0] == values.max()
    counts, edges = sharp.histogram
    assert sum(counts) == 60 and len(edges) == 9
    assert sharp.difficulty is None
    bright = by_name["brightness"]
    assert bright.count == 96 and bright.difficulty is not None
    assert sum(bright.difficulty.values()) == pytest.approx(1.0)
    prior = calibrated_brightness.difficulty(torch.from_numpy(store.table(calibrated_brightness).scores())).numpy()
    assert bright.difficulty["[0, 0.25)"] == pytest.approx(float(np.mean(prior < 0.25)))
    text = str(summary)
    assert "sharpness" in text and "60/96" in text and "difficulty" in text


def test_single_table_path_and_empty(tmp_path: Path, sharpness: QualityMetric) -> None:
    table = ScoreStore(tmp_path / "s", 5).table(sharpness, create=True)
    summary = describe(table)
    assert summary.metrics[0].count == 0 and np.isnan(summary.metrics[0].quantiles[0.5])
    assert describe(str(tmp_path / "s")).metrics[0].fingerprint == sharpness.fingerprint()
    assert "0/5" in str(summary)


def test_calibration_override(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    store = ScoreStore(tmp_path / "s", 96)
    precompute(fmnist_small, sharpness, store, progress=False)
    summary = describe(store, calibrations={"sharpness": lambda s: (s > 0.2).double()}, difficulty_edges=(0.0, 0.5, 1.0))
    scores = store.table(sharpness).scores()
    assert summary.metrics[0].difficulty == {
        "[0, 0.5)": pytest.approx(float(np.mean(scores <= 0.2))),
        "[0.5, 1]": pytest.approx(float(np.mean(scores > 0.2))),
    }


def test_bad_arguments(tmp_path: Path) -> None:
    store = ScoreStore(tmp_path / "s", 5)
    with pytest.raises(ValueError, match="bins should be a positive int"):
        describe(store, bins=0)
    with pytest.raises(ValueError, match=r"quantiles should be a non-empty sequence in \[0, 1\]"):
        describe(store, quantiles=(0.5, 2.0))
    with pytest.raises(ValueError, match="difficulty_edges should be at least 2 increasing values"):
        describe(store, difficulty_edges=(0.5, 0.2))
    with pytest.raises(TypeError, match="store should be a ScoreStore"):
        describe(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="length should be given to create a new store"):
        describe(tmp_path / "missing")


# -- input domain and current calibration ---------------------------------------------------------
def test_domain_fraction_of_fashion_mnist_and_photos(tmp_path: Path, fmnist_small: TensorDataset, photos_224: torch.Tensor) -> None:
    from qualoader.metrics import create_metric
    from qualoader.profiles import DomainWarning

    metric = create_metric("bn-shift")
    fashion = fmnist_small.tensors[0][:20]
    images = [*fashion, *photos_224]  # mixed sizes: a plain list of (C, H, W) tensors
    store = ScoreStore(tmp_path / "s", len(images))
    table = store.table(metric, create=True)
    table.write(torch.arange(20), metric(fashion))
    with pytest.warns(DomainWarning):
        table.write(torch.arange(20, 25), metric(photos_224))
    summary = describe(store, metrics=[metric], dataset=images).metrics[0]
    assert summary.domain is not None and summary.domain["n_images"] == 25
    assert summary.domain["out_of_domain"] == pytest.approx(5 / 25) and summary.domain["size"] == pytest.approx(5 / 25)
    colour = sum(float((p.amax(0) - p.amin(0)).mean()) > metric.input_domain.chroma_tolerance for p in photos_224)
    assert colour >= 3 and summary.domain["channels"] == pytest.approx(colour / 25)
    assert "20.0% of 25 images out of the reference's domain" in str(summary)
    # only the Fashion-MNIST part (as precompute sees it: (image, label) tuples): in domain
    in_domain = describe(store, metrics=[metric], dataset=fmnist_small).metrics[0].domain
    assert in_domain is not None and in_domain["out_of_domain"] == 0.0 and in_domain["n_images"] == 96
    assert describe(store, metrics=[metric], dataset=images, max_domain_images=20).metrics[0].domain["out_of_domain"] == 0.0  # type: ignore[index]
    # no images, no domain figure; a classical metric has no reference network, so none either
    assert describe(store, metrics=[metric]).metrics[0].domain is None
    sharp = create_metric("sharpness")
    store.table(sharp, create=True)
    by_name = {m.metric: m for m in describe(store, metrics=[metric, sharp], dataset=images).metrics}
    assert by_name["sharpness"].domain is None and by_name["bn-shift"].domain is not None


def test_domain_needs_metrics_and_tensors(tmp_path: Path, fmnist_small: TensorDataset) -> None:
    from qualoader.metrics import create_metric

    store = ScoreStore(tmp_path / "s", 4)
    metric = create_metric("bn-shift")
    store.table(metric, create=True)
    with pytest.raises(ValueError, match="metrics should name the aligned metrics"):
        describe(store, dataset=fmnist_small)
    with pytest.raises(TypeError, match="metrics\\[i\\] should be a QualityMetric"):
        describe(store, metrics=["bn-shift"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_domain_images should be a positive int"):
        describe(store, metrics=[metric], dataset=fmnist_small, max_domain_images=0)
    with pytest.raises(TypeError, match="source items should be image tensors"):
        describe(store, metrics=[metric], dataset=[["not an image"]])


def test_recalibration_changes_difficulty_without_rescoring(tmp_path: Path, fmnist_small: TensorDataset) -> None:
    from qualoader.calibration import DifficultyCalibration
    from qualoader.metrics import create_metric

    metric = create_metric("bn-shift")
    assert metric.calibration is not None  # the shipped Fashion-MNIST calibration
    store = ScoreStore(tmp_path / "s", 96)
    table = precompute(fmnist_small, metric, store, progress=False)
    scores = table.scores()
    scores_file = table.path / "scores.npy"
    written = scores_file.stat().st_mtime_ns
    before = describe(store, metrics=[metric]).metrics[0]
    assert before.calibration_source == "metric"
    # re-calibrate: a different (real, fitted) mapping; the fingerprint leaves calibrations out
    fingerprint = metric.fingerprint()
    errors = torch.from_numpy((scores > np.median(scores)).astype(np.float64))
    metric.calibration = DifficultyCalibration.fit(torch.from_numpy(scores), errors, metric.higher_is_better)
    assert metric.fingerprint() == fingerprint
    again = precompute(fmnist_small, metric, store, progress=False)
    assert again.path == table.path and scores_file.stat().st_mtime_ns == written  # same table, nothing rescored
    after = describe(store, metrics=[metric], difficulty_edges=(0.0, 0.5, 1.0)).metrics[0]
    expected = metric.difficulty(torch.from_numpy(scores)).numpy()
    assert after.calibration_source == "metric"
    assert after.difficulty == {
        "[0, 0.5)": pytest.approx(float(np.mean(expected < 0.5))),
        "[0.5, 1]": pytest.approx(float(np.mean(expected >= 0.5))),
    }
    stale = describe(store, difficulty_edges=(0.0, 0.5, 1.0)).metrics[0]  # no metric: the header's calibration, from table creation
    assert stale.calibration_source == "table" and stale.difficulty != after.difficulty
