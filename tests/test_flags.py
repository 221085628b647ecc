"""Tests of qualoader.flags: robust fitted thresholds, directions, user thresholds, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qualoader.flags import FLAG_RULES, FlagRule, compute_flags, fit_threshold, parse_flag_spec, worst_indices


def _normal(n: int = 400, mean: float = 0.5, std: float = 0.05, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, std, n)


def test_fitted_threshold_matches_median_and_mad_of_a_normal_sample() -> None:
    values = _normal(20000)
    # linear scale, k=3: about mean - 3 std for a normal sample (the MAD is scaled to a standard deviation)
    assert fit_threshold(values, FLAG_RULES["dark"]) == pytest.approx(0.5 - 3 * 0.05, abs=0.004)
    assert fit_threshold(values, FLAG_RULES["light"]) == pytest.approx(0.5 + 3 * 0.05, abs=0.004)
    assert fit_threshold(values, FLAG_RULES["dark"], k=2.0) == pytest.approx(0.5 - 2 * 0.05, abs=0.004)


def test_log_scale_threshold_is_a_factor_of_the_median() -> None:
    values = np.exp(_normal(20000, mean=math.log(0.01), std=0.2))
    threshold = fit_threshold(values, FLAG_RULES["blurry"])
    assert threshold == pytest.approx(0.01 * math.exp(-3 * 0.2), rel=0.03)


def test_a_few_extreme_values_hardly_move_the_threshold() -> None:
    clean = _normal(200)
    hostile = np.concatenate([clean, [1e6, -1e6, 1e9, 50.0, -50.0]])
    before, after = fit_threshold(clean, FLAG_RULES["dark"]), fit_threshold(hostile, FLAG_RULES["dark"])
    assert abs(after - before) < 0.01
    # mean and std would be ruined by the same five values
    assert abs((hostile.mean() - 3 * hostile.std()) - (clean.mean() - 3 * clean.std())) > 1e3


def test_directions_per_flag() -> None:
    n = 60
    columns = {
        "sharpness": np.full(n, 0.01), "noise": np.full(n, 0.01), "blockiness": np.full(n, 1.0), "brightness": np.full(n, 0.5),
        "contrast": np.full(n, 0.2), "clipping": np.full(n, 0.0),
    }
    columns = {name: values * np.random.default_rng(1).uniform(0.95, 1.05, n) for name, values in columns.items()}
    columns["sharpness"][3] = 1e-5  # blurry
    columns["noise"][4] = 0.5  # noisy
    columns["blockiness"][5] = 3.0  # jpeg
    columns["brightness"][6] = 0.05  # dark
    columns["brightness"][7] = 0.98  # light
    columns["contrast"][8] = 0.01  # low contrast
    columns["clipping"][9] = 0.4  # clipped
    result = compute_flags(columns)
    expected = {"blurry": 3, "noisy": 4, "jpeg": 5, "dark": 6, "light": 7, "low-contrast": 8, "clipped": 9}
    for flag, index in expected.items():
        assert np.flatnonzero(result.flags[flag]).tolist() == [index], flag
    # the good direction is never flagged: very sharp, very clean, very contrasted images are fine
    columns["sharpness"][10], columns["noise"][11], columns["contrast"][12] = 10.0, 1e-6, 0.5
    result = compute_flags(columns)
    assert not result.flags["blurry"][10] and not result.flags["noisy"][11] and not result.flags["low-contrast"][12]
    assert "hard" in result.skipped


def test_constant_measure_flags_nothing_but_a_real_outlier() -> None:
    clipping = np.zeros(100)
    clipping[:10] = 0.001  # a handful of nearly unclipped images: within min_spread, not flagged
    clipping[50] = 0.3
    result = compute_flags({"clipping": clipping}, flags=["clipped"])
    assert np.flatnonzero(result.flags["clipped"]).tolist() == [50]


def test_user_thresholds_override_the_fit() -> None:
    brightness = np.linspace(0.0, 1.0, 11)
    fitted = compute_flags({"brightness": brightness}, flags=["dark"])
    user = compute_flags({"brightness": brightness}, flags=["dark"], thresholds={"dark": 0.35})
    assert user.thresholds["dark"].source == "user" and user.thresholds["dark"].k is None
    assert np.flatnonzero(user.flags["dark"]).tolist() == [0, 1, 2, 3]
    assert fitted.thresholds["dark"].source == "fitted"
    assert fitted.flags["dark"].sum() != user.flags["dark"].sum()


def test_hard_reads_aligned_difficulty_only_and_names_each_metric() -> None:
    rng = np.random.default_rng(2)
    difficulty = rng.uniform(0.1, 0.2, 50)
    difficulty[7] = 0.9
    columns = {"sharpness": rng.uniform(0.01, 0.02, 50), "sharpness_difficulty": np.full(50, 0.99), "task-guided_difficulty": difficulty}
    result = compute_flags(columns, flags=["hard"])
    assert list(result.flags) == ["hard"] and np.flatnonzero(result.flags["hard"]).tolist() == [7]
    columns["confidence_difficulty"] = difficulty[::-1].copy()
    result = compute_flags(columns, flags=["hard"])
    assert sorted(result.flags) == ["hard-confidence", "hard-task-guided"]
    assert np.flatnonzero(result.flags["hard-confidence"]).tolist() == [42]


def test_non_finite_is_never_flagged_nor_fitted() -> None:
    values = _normal(100)
    values[::10] = np.nan
    values[20], values[30] = -np.inf, np.inf
    values[1] = 0.0
    result = compute_flags({"brightness": values}, flags=["dark"])
    assert np.flatnonzero(result.flags["dark"]).tolist() == [1]
    assert not compute_flags({"brightness": values}, flags=["light"]).flags["light"][30]
    assert result.thresholds["dark"].finite == 90
    assert result.thresholds["dark"].threshold == pytest.approx(fit_threshold(values[np.isfinite(values)], FLAG_RULES["dark"]))


def test_torch_and_numpy_agree_and_runs_are_deterministic() -> None:
    values = _normal(300, seed=3)
    a = compute_flags({"brightness": values})
    b = compute_flags({"brightness": torch.from_numpy(values).float()})
    assert a.thresholds["dark"].threshold == pytest.approx(b.thresholds["dark"].threshold, rel=1e-6)
    assert (a.flags["light"] == compute_flags({"brightness": values}).flags["light"]).all()


def test_worst_indices_orders_by_the_bad_side() -> None:
    sharpness = np.full(40, 0.01) * np.random.default_rng(4).uniform(0.95, 1.05, 40)
    sharpness[[5, 9, 20]] = [1e-4, 1e-6, 1e-5]
    result = compute_flags({"sharpness": sharpness}, flags=["blurry"])
    assert worst_indices({"sharpness": sharpness}, result, "blurry", 2) == [9, 20]
    with pytest.raises(KeyError, match="flag should be one of"):
        worst_indices({"sharpness": sharpness}, result, "noisy", 2)


def test_parse_flag_spec() -> None:
    assert parse_flag_spec("all") == (None, {})
    assert parse_flag_spec("blurry, noisy=0.02") == (["blurry", "noisy"], {"noisy": 0.02})
    assert parse_flag_spec("hard-task-guided=0.4") == (["hard-task-guided"], {"hard-task-guided": 0.4})


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("blury", r"flags should be among .*did you mean 'blurry'"),
        ("blurry=nan", r"flags should give thresholds as finite numbers"),
        ("blurry=inf", r"flags should give thresholds as finite numbers"),
        ("blurry=abc", r"flags should give thresholds as finite numbers"),
        ("blurry,,noisy", r"flags should be comma-separated"),
    ],
)
def test_parse_flag_spec_bad_input(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_flag_spec(spec)


def test_compute_flags_bad_input() -> None:
    values = _normal(20)
    with pytest.raises(ValueError, match="flags should be among"):
        compute_flags({"brightness": values}, flags=["shiny"])
    with pytest.raises(ValueError, match=r"thresholds\['dark'\] should be a finite number"):
        compute_flags({"brightness": values}, thresholds={"dark": math.inf})
    with pytest.raises(TypeError, match=r"thresholds\['dark'\] should be a real number"):
        compute_flags({"brightness": values}, thresholds={"dark": "0.1"})
    with pytest.raises(ValueError, match=r"k\['dark'\] should be a positive finite number"):
        compute_flags({"brightness": values}, flags=["dark"], k={"dark": -1.0})
    with pytest.raises(KeyError, match="no column sharpness"):
        compute_flags({"brightness": values}, flags=["blurry"])
    with pytest.raises(ValueError, match="at least 5 finite values"):
        compute_flags({"brightness": values[:3]}, flags=["dark"])
    with pytest.raises(ValueError, match="1-D array"):
        compute_flags({"brightness": values.reshape(4, 5)}, flags=["dark"])
    with pytest.raises(TypeError, match="rule should be a FlagRule"):
        fit_threshold(values, "dark")  # type: ignore[arg-type]
    # too few values without naming the flag: skipped with the reason, not an error
    assert "dark" in compute_flags({"brightness": values[:3]}).skipped
    assert isinstance(FLAG_RULES["dark"], FlagRule)


def test_a_fitted_fence_past_every_possible_value_says_it_cannot_fire() -> None:
    """Brightness spread so wide that median - 3 robust SD is below 0 (as on Fashion-MNIST): 'dark' can flag nothing, and says so."""
    brightness = np.array([0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.1, 0.5, 0.02])
    result = compute_flags({"brightness": brightness}, flags=["dark", "light"])
    dark, light = result.thresholds["dark"], result.thresholds["light"]
    assert dark.threshold < 0 and not dark.reachable and dark.count == 0
    assert "CANNOT FIRE: no brightness is below it; give a threshold" in dark.describe() and dark.to_dict()["reachable"] is False
    assert light.threshold > 1 and not light.reachable
    assert compute_flags({"brightness": brightness}, thresholds={"dark": 0.1}).thresholds["dark"].reachable  # a user threshold inside
    narrow = compute_flags({"brightness": np.array([0.5, 0.52, 0.49, 0.51, 0.5, 0.1])}, flags=["dark"]).thresholds["dark"]
    assert narrow.reachable and narrow.count == 1 and "CANNOT" not in narrow.describe()
