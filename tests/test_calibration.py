"""Tests of qualoader.calibration: monotone difficulty priors, persistence, sweeps, bad input."""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch
from torch import nn

from qualoader.calibration import (
    DifficultyCalibration,
    calibrate_metric,
    calibration_report,
    corruption_sweep,
    default_calibration,
    default_calibration_path,
)
from qualoader.metrics.base import QualityMetric

METHODS = ("isotonic", "logistic")


def _synthetic(higher_is_better: bool, n: int = 4000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores, Bernoulli errors and the true error probability of a known monotone relationship."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, generator=generator, dtype=torch.float64) * 4 - 2
    probability = torch.sigmoid((-3.0 if higher_is_better else 3.0) * scores)
    errors = (torch.rand(n, generator=generator, dtype=torch.float64) < probability).double()
    return scores, errors, probability


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_mapping_is_monotone_into_unit_interval(method: str, higher_is_better: bool) -> None:
    scores, errors, _ = _synthetic(higher_is_better)
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
def test_fit_recovers_known_relationship(method: str, higher_is_better: bool) -> None:
    scores, errors, probability = _synthetic(higher_is_better, n=20000, seed=1)
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


def test_wrong_direction_data_gives_flat_logistic_and_pooled_isotonic() -> None:
    scores, errors, _ = _synthetic(higher_is_better=False)
    logistic = DifficultyCalibration.fit(scores, errors, True, "logistic")  # data contradicts the direction
    assert logistic.params["slope"] == 0.0
    assert torch.allclose(logistic(scores), torch.full_like(scores, float(errors.mean())), atol=1e-6)
    isotonic = DifficultyCalibration.fit(scores, errors, True, "isotonic")
    assert len(isotonic.params["x"]) <= 3


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_is_identical(method: str, tmp_path) -> None:
    scores, errors, _ = _synthetic(True)
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


def test_call_keeps_shape_dtype_device_and_nan(device: torch.device, dtype: torch.dtype) -> None:
    scores, errors, _ = _synthetic(True)
    calibration = DifficultyCalibration.fit(scores, errors, True)
    probe = torch.tensor([-1.0, 0.0, float("nan"), 1.0], device=device, dtype=dtype)
    prior = calibration(probe)
    assert prior.shape == (4,) and prior.dtype == dtype and prior.device == probe.device
    assert bool(prior[2].isnan()) and bool(prior[[0, 1, 3]].isfinite().all())
    assert float(prior[0]) >= float(prior[1]) >= float(prior[3])


def test_single_knot_is_constant() -> None:
    calibration = DifficultyCalibration.fit([0.3, 0.3, 0.3], [0.0, 1.0, 1.0], True)
    assert torch.allclose(calibration(torch.tensor([-1.0, 5.0])), torch.tensor([2 / 3, 2 / 3]))


def test_attached_to_metric_gives_difficulty_and_changes_fingerprint() -> None:
    class Brightness(QualityMetric):
        name = "toy-brightness"

        def score(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
            return images.mean(dim=(1, 2, 3))

    metric = Brightness()
    before = metric.fingerprint()
    metric.calibration = DifficultyCalibration.fit([0.0, 0.5, 1.0], [1.0, 0.5, 0.0], True)
    assert metric.fingerprint() != before
    difficulty = metric.difficulty(metric(torch.full((2, 1, 4, 4), 0.25)))
    assert torch.allclose(difficulty, torch.tensor([0.75, 0.75]))


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


def test_default_calibration_lookup() -> None:
    assert default_calibration("no-such-metric") is None
    assert default_calibration_path("bn-shift").name == "calibration_bn-shift.json"
    with pytest.raises(TypeError, match="metric_name should be"):
        default_calibration(3)  # type: ignore[arg-type]


def test_calibration_report_auroc_and_brier() -> None:
    report = calibration_report(torch.tensor([0.9, 0.8, 0.2, 0.1]), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert report["auroc"] == 1.0 and math.isclose(report["brier"], (0.01 + 0.04 + 0.04 + 0.01) / 4, rel_tol=1e-6)
    flipped = calibration_report(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert flipped["auroc"] == 0.0
    tied = calibration_report(torch.full((4,), 0.5), torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert tied["auroc"] == 0.5
    assert math.isnan(calibration_report(torch.zeros(3), torch.zeros(3))["auroc"])
    with pytest.raises(ValueError, match="shape of predicted"):
        calibration_report(torch.zeros(3), torch.zeros(4))


# -- corruption sweeps (need qualoader.corruptions) ---------------------------------------------------
class _Classifier(nn.Module):
    """A small fixed classifier: class = which quarter of the intensity range the image mean falls in."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mean = images.float().mean(dim=(1, 2, 3))
        centres = torch.tensor([0.125, 0.375, 0.625, 0.875], device=images.device)
        return -(mean[:, None] - centres).abs()


class _Sharpness(QualityMetric):
    name = "toy-sharpness"

    def score(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        return (images[..., 1:] - images[..., :-1]).abs().mean(dim=(1, 2, 3))


def test_sweep_and_calibrate_metric(fashion_mnist_test) -> None:
    corruptions = pytest.importorskip("qualoader.corruptions")
    images, _ = fashion_mnist_test
    images = images[:40]
    reference = _Classifier()
    labels = reference(images.float() / 255).argmax(dim=1)  # the reference is right on clean images
    names = corruptions.list_corruptions()[:3]
    sweep = corruption_sweep(_Sharpness(), images, labels, reference, names, (0, 2, 5), torch.Generator().manual_seed(0), batch_size=16)
    assert sweep.scores.shape == sweep.errors.shape == (40 * (1 + 3 * 2),)
    assert float(sweep.errors[sweep.severity == 0].sum()) == 0.0
    calibration = calibrate_metric(_Sharpness(), images, labels, reference, names, (0, 2, 5), torch.Generator().manual_seed(0), batch_size=16)
    assert calibration.higher_is_better and calibration.info["metric"] == "toy-sharpness"
    assert torch.equal(calibration(sweep.scores), DifficultyCalibration.fit(sweep.scores, sweep.errors, True)(sweep.scores))
    with pytest.raises(ValueError, match="severities should be ints in 0..5"):
        corruption_sweep(_Sharpness(), images, labels, reference, names, (0, 6))
    with pytest.raises(ValueError, match="corruptions"):
        corruption_sweep(_Sharpness(), images, labels, reference, ["no-such-corruption"])
    with pytest.raises(ValueError, match="labels should have shape"):
        corruption_sweep(_Sharpness(), images, labels[:3], reference, names)
    with pytest.raises(TypeError, match="reference should be"):
        corruption_sweep(_Sharpness(), images, labels, "default", names)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["bn-shift", "feature-distance", "task-guided"])
def test_shipped_aligned_metrics_yield_a_difficulty_that_rises_with_corruption(name, fashion_mnist_test) -> None:
    from qualoader.corruptions import corrupt
    from qualoader.metrics import create_metric

    metric = create_metric(name)
    assert metric.calibration is not None, f"{name} should ship a default calibration"
    clean = fashion_mnist_test[0][:200].float() / 255
    difficulties = []
    for severity in (1, 3, 5):
        noisy = corrupt(clean, "gaussian_noise", severity, generator=torch.Generator().manual_seed(severity))
        scores = metric(noisy, clean) if metric.requires_reference else metric(noisy)
        difficulty = metric.difficulty(scores)
        assert difficulty.shape == (200,) and bool(((difficulty >= 0) & (difficulty <= 1)).all())
        difficulties.append(float(difficulty.mean()))
    assert difficulties == sorted(difficulties) and difficulties[-1] > difficulties[0], difficulties
