"""Exports map stored scores to difficulty by the current calibration, as every store reader given the metric does.

A table keeps the calibration its metric had when the table was created; re-calibrating the metric,
or refitting the quality profile it was built from, keeps the table (same fingerprint) and must
change the exported difficulties without rescoring.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from qualoader.calibration import DifficultyCalibration
from qualoader.data import ScoreStore, describe
from qualoader.data.dataset import difficulty_of
from qualoader.data.export import store_columns, store_to_arrow, store_to_pandas, table_calibration
from qualoader.metrics import create_metric, metric_from_profile
from qualoader.profiles import load_profile, save_profile

SCORES = np.array([0.1, 0.3, 0.5, 0.7, 0.9])


def _calibration(errors: list[float]) -> DifficultyCalibration:
    return DifficultyCalibration.fit(torch.tensor(SCORES), torch.tensor(errors), higher_is_better=True)


AT_CREATION = _calibration([0.9, 0.9, 0.5, 0.1, 0.1])
HEADER = AT_CREATION(torch.from_numpy(SCORES)).numpy()  # the difficulties of the calibration saved in the table's header


@pytest.fixture
def brightness_store(tmp_path: Path) -> tuple[ScoreStore, torch.nn.Module]:
    """A store whose brightness table was created while the metric had the calibration ``at_creation``; unscored sample 5."""
    metric = create_metric("brightness")
    metric.calibration = AT_CREATION
    store = ScoreStore(tmp_path / "store", length=6)
    store.table(metric, create=True).write(range(5), SCORES)
    metric.calibration = _calibration([0.6, 0.4, 0.4, 0.2, 0.0])  # re-calibrated since: the table is kept
    return store, metric


def test_the_metrics_current_calibration_wins_over_the_header(brightness_store) -> None:
    store, metric = brightness_store
    current = store_columns(store, metrics=[metric])["brightness_difficulty"]
    expected = difficulty_of(metric, torch.from_numpy(SCORES)).numpy()  # what QualityDataset / QualityLoader serve
    assert np.array_equal(current[:5], expected) and np.isnan(current[5])
    header = store_columns(store)["brightness_difficulty"]  # no metric given: only the header is known
    assert np.allclose(header[:5], HEADER) and not np.allclose(header[:5], current[:5])
    assert table_calibration(store.tables()[0], [metric])[1] == "metric"
    assert table_calibration(store.tables()[0])[1] == "table"


def test_export_and_describe_agree_on_the_calibration(brightness_store) -> None:
    store, metric = brightness_store
    difficulty = store_columns(store, metrics=[metric])["brightness_difficulty"][:5]
    summary = describe(store, metrics=[metric]).metrics[0]
    assert summary.calibration_source == "metric"
    counts, _ = np.histogram(difficulty, bins=[0.0, 0.25, 0.5, 0.75, 1.0])
    assert list(summary.difficulty.values()) == pytest.approx((counts / 5).tolist())


def test_override_then_metric_then_header(brightness_store) -> None:
    store, metric = brightness_store
    columns = store_columns(store, metrics=[metric], calibrations={"brightness": lambda scores: 1.0 - scores})
    assert np.allclose(columns["brightness_difficulty"][:5], 1.0 - SCORES)
    other = create_metric("brightness")
    other.calibration = None  # a matching metric without a calibration leaves the header's in place
    assert np.allclose(store_columns(store, metrics=[other])["brightness_difficulty"][:5], HEADER)
    sharpness = create_metric("sharpness")
    sharpness.calibration = _calibration([0.0, 0.0, 0.0, 0.0, 1.0])  # another fingerprint: not this table's
    assert np.allclose(store_columns(store, metrics=[sharpness])["brightness_difficulty"][:5], HEADER)


def test_pandas_and_arrow_take_the_metrics_too(brightness_store) -> None:
    store, metric = brightness_store
    expected = store_columns(store, metrics=[metric])["brightness_difficulty"]
    assert np.array_equal(store_to_pandas(store, metrics=[metric])["brightness_difficulty"].to_numpy()[:5], expected[:5])
    arrow = store_to_arrow(store, metrics=[metric])["brightness_difficulty"].to_pylist()
    assert arrow[:5] == expected[:5].tolist() and arrow[5] is None


def test_bad_metrics_argument(brightness_store) -> None:
    store, _ = brightness_store
    with pytest.raises(TypeError, match="metrics should be a list of QualityMetric"):
        store_columns(store, metrics="brightness")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"metrics\[i\] should be a QualityMetric"):
        store_columns(store, metrics=["brightness"])  # type: ignore[list-item]


def test_a_refitted_profile_maps_the_same_stored_scores_anew(copied_default: Path, tmp_path: Path) -> None:
    from qualoader.datasets import load_fashion_mnist

    images = load_fashion_mnist("test")[0][:16]
    first = metric_from_profile(copied_default)
    store = ScoreStore(tmp_path / "store", length=16)
    scores = first(images).double()
    store.table(first, create=True).write(range(16), scores.numpy())
    profile = load_profile(copied_default)
    refit_calibration = DifficultyCalibration.fit(scores, (scores > scores.median()).double(), higher_is_better=False)
    refit = save_profile(replace(profile, calibration=refit_calibration, path=None), tmp_path / "refit.json")
    second = metric_from_profile(refit)
    assert second.fingerprint() == first.fingerprint()  # calibration is not part of the score's identity: same table
    exported = store_columns(store, metrics=[second])["bn-shift_difficulty"]
    assert np.allclose(exported, refit_calibration(scores).numpy())
    assert not np.allclose(exported, store_columns(store)["bn-shift_difficulty"])  # the header still holds the first profile's
