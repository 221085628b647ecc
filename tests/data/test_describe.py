"""describe: count, quantiles, histogram and difficulty buckets of a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from qualoader.data import ScoreStore, describe, precompute
from qualoader.metrics import QualityMetric


def test_summary_matches_numpy(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric, calibrated_brightness: QualityMetric) -> None:
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
    assert summary.metrics[0].difficulty == {"[0, 0.5)": pytest.approx(float(np.mean(scores <= 0.2))), "[0.5, 1]": pytest.approx(float(np.mean(scores > 0.2)))}


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
