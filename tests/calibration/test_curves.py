"""The scipy-based monotone fits against an independent pool-adjacent-violators oracle and the logistic optimum."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from qualoader.calibration.curves import fit_isotonic, fit_monotone_logistic


def _pava_oracle(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Textbook non-decreasing PAVA on values merged by equal x; knots at the blocks' weighted mean x."""
    blocks: list[list[float]] = []  # [weight, weighted x sum, weighted y sum]
    for value in np.unique(x):
        chosen = x == value
        blocks.append([float(chosen.sum()), float(value * chosen.sum()), float(y[chosen].sum())])
        while len(blocks) > 1 and blocks[-2][2] / blocks[-2][0] >= blocks[-1][2] / blocks[-1][0]:
            last = blocks.pop()
            blocks[-1] = [a + b for a, b in zip(blocks[-1], last)]
    table = np.asarray(blocks)
    return table[:, 1] / table[:, 0], table[:, 2] / table[:, 0]


@pytest.mark.parametrize("seed", range(3))
def test_isotonic_matches_oracle_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=3000), 2)  # many repeated scores
    y = (rng.random(3000) < expit(x)).astype(np.float64)
    knots_x, knots_y = fit_isotonic(x, y, increasing=True)
    oracle_x, oracle_y = _pava_oracle(x, y)
    np.testing.assert_allclose(knots_x, oracle_x, atol=1e-12)
    np.testing.assert_allclose(knots_y, oracle_y, atol=1e-12)
    assert np.all(np.diff(knots_x) > 0) and np.all(np.diff(knots_y) > 0)


def test_isotonic_decreasing_is_the_mirror_of_increasing() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=500)
    y = (rng.random(500) < expit(-2 * x)).astype(np.float64)
    knots_x, knots_y = fit_isotonic(x, y, increasing=False)
    mirror_x, mirror_y = fit_isotonic(-x, y, increasing=True)
    np.testing.assert_allclose(knots_x, -mirror_x[::-1], atol=1e-12)
    np.testing.assert_allclose(knots_y, mirror_y[::-1], atol=1e-12)


def test_logistic_reaches_the_unconstrained_optimum() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=5000)
    y = (rng.random(5000) < expit(1.5 * z - 0.5)).astype(np.float64)
    slope, bias = fit_monotone_logistic(z, y, increasing=True)
    residual = expit(slope * z + bias) - y
    assert abs(np.mean(residual)) < 1e-6 and abs(np.mean(residual * z)) < 1e-6  # score equations of the MLE
    assert slope == pytest.approx(1.5, abs=0.15) and bias == pytest.approx(-0.5, abs=0.1)


def test_logistic_against_the_direction_is_flat_at_the_base_rate() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=2000)
    y = (rng.random(2000) < expit(2 * z)).astype(np.float64)
    slope, bias = fit_monotone_logistic(z, y, increasing=False)
    assert slope == 0.0 and expit(bias) == pytest.approx(y.mean(), abs=1e-9)
