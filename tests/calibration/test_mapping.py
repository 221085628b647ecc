"""DifficultyCalibration: monotone difficulty priors, persistence, the Calibration protocol, bad input."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from qualoader.calibration import Calibration, DifficultyCalibration, calibration_report
from qualoader.metrics.base import QualityMetric

METHODS = ("isotonic", "logistic")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_mapping_is_monotone_into_unit_interval(synthetic, method: str, higher_is_better: bool) -> None:
    scores, errors, _ = synthetic(higher_is_better)
    calibration = DifficultyCalibration.fit(scores, errors, higher_is_better, method)
    grid = torch.linspace(-5, 5, 2001, dtype=torch.float64)
    prior = calibration(grid)
    assert prior.shape == grid.shape
    assert float(prior.min()) >= 0.0 and float(prior.max()) <= 1.0
    steps = prior.diff()
    if higher_is_better:
        assert bool((steps <= 1e-12).all())
    else:
        assert bool((steps >= -1e-12).all())
    assert float(prior[0] - prior[-1]) * (1 if higher_is_better else -1) > 0.8  # it really moves


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_fit_recovers_known_relationship(synthetic, method: str, higher_is_better: bool) -> None:
    scores, errors, probability = synthetic(higher_is_better, n=20000, seed=1)
    calibration = DifficultyCalibration.fit(scores, errors, higher_is_better, method)
    gap = (calibration(scores) - probability).abs().mean()
    assert float(gap) < 0.03
    report = calibration_report(calibration(scores).float(), errors.float())
    oracle = calibration_report(probability.float(), errors.float())
    assert report["brier"] < oracle["brier"] + 0.005
    assert report["brier"] < report["brier_base"]


def test_isotonic_matches_pool_adjacent_violators_by_hand() -> None:
    # Targets 1, 0, 1, 1 on increasing scores: the first two pool to 0.5 (non-decreasing fit).
    calibration = DifficultyCalibration.fit([0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 1.0], False)
    assert calibration.params == {"x": [0.5, 2.5], "y": [0.5, 1.0]}
    assert torch.allclose(calibration(torch.tensor([0.0, 1.5, 2.5, 9.0])), torch.tensor([0.5, 0.75, 1.0, 1.0]))


def test_wrong_direction_data_gives_flat_logistic_and_pooled_isotonic(synthetic) -> None:
    scores, errors, _ = synthetic(higher_is_better=False)
    logistic = DifficultyCalibration.fit(scores, errors, True, "logistic")  # data contradicts the direction
    assert logistic.params["slope"] == 0.0
    assert torch.allclose(logistic(scores), torch.full_like(scores, float(errors.mean())), atol=1e-6)
    isotonic = DifficultyCalibration.fit(scores, errors, True, "isotonic")
    assert len(isotonic.params["x"]) <= 3


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_is_identical(synthetic, method: str, tmp_path) -> None:
    scores, errors, _ = synthetic(True)
    calibration = DifficultyCalibration.fit(scores, errors, True, method, info={"metric": "toy"})
    path = tmp_path / "cal.json"
    calibration.save(path)
    loaded = DifficultyCalibration.load(path)
    probe = torch.cat([scores, torch.linspace(-10, 10, 101, dtype=torch.float64)])
    assert loaded == calibration
    assert torch.equal(loaded(probe), calibration(probe))
    assert torch.equal(loaded(probe.float()), calibration(probe.float()))
    other = DifficultyCalibration.fit([0.0, 1.0], [0.0, 1.0], False)
    other.load_state_dict(json.loads(path.read_text()))
    assert torch.equal(other(probe), calibration(probe))
    assert torch.equal(pickle.loads(pickle.dumps(calibration))(probe), calibration(probe))
    assert [p.name for p in tmp_path.iterdir()] == ["cal.json"]  # the atomic write leaves no temporary file


def test_undefined_statistic_is_saved_as_strict_json_null(tmp_path) -> None:
    calibration = DifficultyCalibration.fit([0.0, 1.0], [0.0, 0.0], True, info={"fit": {"auroc": float("nan")}})
    calibration.save(tmp_path / "cal.json")
    text = (tmp_path / "cal.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["info"]["fit"]["auroc"] is None


def test_call_keeps_shape_dtype_device_and_nan(synthetic, device: torch.device, dtype: torch.dtype) -> None:
    scores, errors, _ = synthetic(True)
    calibration = DifficultyCalibration.fit(scores, errors, True)
    probe = torch.tensor([-1.0, 0.0, float("nan"), 1.0], device=device, dtype=dtype)
    prior = calibration(probe)
    assert prior.shape == (4,) and prior.dtype == dtype and prior.device == probe.device
    assert bool(prior[2].isnan()) and bool(prior[[0, 1, 3]].isfinite().all())
    assert float(prior[0]) >= float(prior[1]) >= float(prior[3])


def test_single_knot_is_constant() -> None:
    calibration = DifficultyCalibration.fit([0.3, 0.3, 0.3], [0.0, 1.0, 1.0], True)
    assert torch.allclose(calibration(torch.tensor([-1.0, 5.0])), torch.tensor([2 / 3, 2 / 3]))


def test_difficulty_calibration_follows_the_protocol() -> None:
    calibration = DifficultyCalibration.fit([0.0, 1.0], [1.0, 0.0], True)
    assert isinstance(calibration, Calibration)
    assert not isinstance(lambda scores: scores, Calibration)  # a bare callable has no state_dict


class _Brightness(QualityMetric):
    name = "toy-brightness"

    def score(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        return images.mean(dim=(1, 2, 3))


def test_recalibrating_keeps_the_fingerprint_and_changes_the_difficulty() -> None:
    metric = _Brightness()
    before = metric.fingerprint()
    images = torch.full((2, 1, 4, 4), 0.25)
    metric.calibration = DifficultyCalibration.fit([0.0, 0.5, 1.0], [1.0, 0.5, 0.0], True)
    first = metric.difficulty(metric(images))
    assert torch.allclose(first, torch.tensor([0.75, 0.75]))
    metric.calibration = DifficultyCalibration.fit([0.0, 0.5, 1.0], [0.5, 0.2, 0.0], True, method="logistic")
    second = metric.difficulty(metric(images))
    assert metric.fingerprint() == before  # the stored scores stay valid: same identity
    assert not torch.allclose(first, second)


@pytest.mark.parametrize(
    ("scores", "errors", "error", "match"),
    [
        ([0.0, float("nan")], [0.0, 1.0], ValueError, "scores should be finite"),
        ([0.0, 1.0], [0.0, float("nan")], ValueError, "errors should be finite"),
        ([0.0, 1.0, 2.0], [0.0, 1.0], ValueError, "length of scores"),
        ([0.0, 1.0], [0.0, 1.5], ValueError, r"errors should be in \[0, 1\]"),
        ([0.0, 1.0], [-0.1, 1.0], ValueError, r"errors should be in \[0, 1\]"),
        ([], [], ValueError, "non-empty 1-D"),
        ([[0.0, 1.0]], [[0.0, 1.0]], ValueError, "non-empty 1-D"),
        ("abc", [0.0], TypeError, "scores should be"),
        (None, [0.0], TypeError, "scores should be"),
    ],
)
def test_fit_rejects_bad_input(scores, errors, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        DifficultyCalibration.fit(scores, errors, True)


def test_fit_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="method should be one of"):
        DifficultyCalibration.fit([0.0, 1.0], [0.0, 1.0], True, method="spline")
    with pytest.raises(TypeError, match="higher_is_better should be a bool"):
        DifficultyCalibration.fit([0.0, 1.0], [0.0, 1.0], 1)  # type: ignore[arg-type]


def test_call_rejects_non_tensor() -> None:
    calibration = DifficultyCalibration.fit([0.0, 1.0], [1.0, 0.0], True)
    with pytest.raises(TypeError, match="scores should be a torch.Tensor"):
        calibration([0.5])  # type: ignore[arg-type]


def test_constructor_rejects_non_monotone_or_bad_params() -> None:
    with pytest.raises(ValueError, match="monotone"):
        DifficultyCalibration("isotonic", True, {"x": [0.0, 1.0], "y": [0.1, 0.9]})
    with pytest.raises(ValueError, match="strictly increasing"):
        DifficultyCalibration("isotonic", True, {"x": [1.0, 0.0], "y": [0.9, 0.1]})
    with pytest.raises(ValueError, match="keys"):
        DifficultyCalibration("logistic", True, {"x": [0.0], "y": [0.0]})
    with pytest.raises(ValueError, match="sign"):
        DifficultyCalibration("logistic", True, {"mean": 0.0, "std": 1.0, "slope": 2.0, "bias": 0.0})


def test_load_rejects_missing_and_invalid_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DifficultyCalibration.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        DifficultyCalibration.load(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"method": "isotonic"}))
    with pytest.raises(ValueError, match="state should have the keys"):
        DifficultyCalibration.load(wrong)
    future = DifficultyCalibration.fit([0.0, 1.0], [1.0, 0.0], True).state_dict() | {"format_version": 99}
    with pytest.raises(ValueError, match="format_version"):
        DifficultyCalibration.from_state_dict(future)
