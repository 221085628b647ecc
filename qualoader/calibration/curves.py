"""The two monotone curve fits behind :class:`~qualoader.calibration.DifficultyCalibration`, on scipy.

Both take finite float64 arrays and fit the expected error ``y`` in [0, 1] as a function of the
score ``x`` whose direction is fixed in advance: with ``increasing=False`` the fit never rises.
"""

from __future__ import annotations

import math

import numpy as np

# scipy.optimize is imported where a fit runs: it costs ~0.5 s, and every command that only applies a
# calibration (precompute, report) loads this module through the calibration package.

__all__ = ["fit_isotonic", "fit_monotone_logistic"]


def fit_isotonic(x: np.ndarray, y: np.ndarray, *, increasing: bool) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares monotone fit of ``y`` on ``x``, as knots for piecewise-linear interpolation.

    Equal ``x`` values are merged first (mean target, weighted by count), because
    ``scipy.optimize.isotonic_regression`` orders by position, not by value; each pooled block
    then becomes one knot at its weighted mean ``x``, so the curve is linear between block centres.

    Args:
        x: scores :math:`(N,)`.
        y: targets :math:`(N,)`.
        increasing: direction of the fit.

    Returns:
        ``(knots_x, knots_y)``: strictly increasing ``knots_x`` and their fitted values.

    Example:
        >>> fit_isotonic(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 0.0, 1.0, 1.0]), increasing=True)
        (array([0.5, 2.5]), array([0.5, 1. ]))
    """
    from scipy.optimize import isotonic_regression

    unique, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / counts
    result = isotonic_regression(means, weights=counts.astype(np.float64), increasing=increasing)
    # scipy pools equal neighbours into one block, so every block is one knot and knots_x is strictly increasing.
    starts = result.blocks[:-1]
    weighted_x = np.add.reduceat(unique * counts, starts) / np.add.reduceat(counts.astype(np.float64), starts)
    return weighted_x, result.x[starts]


def fit_monotone_logistic(z: np.ndarray, y: np.ndarray, *, increasing: bool) -> tuple[float, float]:
    """Fit ``y ~ sigmoid(slope * z + bias)`` by log-loss with the slope's sign fixed by ``increasing``.

    The sign constraint is a bound of L-BFGS-B, so data that contradict the direction give
    ``slope = 0`` and the base-rate curve (the constrained optimum) rather than a reversed prior.
    ``z`` should be standardised (the caller divides by the score's std) so one tolerance fits all.

    Args:
        z: standardised scores :math:`(N,)`.
        y: targets :math:`(N,)` in [0, 1].
        increasing: ``True`` for ``slope >= 0``, ``False`` for ``slope <= 0``.

    Returns:
        ``(slope, bias)``.
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    # Clipped so all-0 or all-1 targets still give a finite logit.
    mean = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    base = math.log(mean / (1 - mean))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        logits = theta[0] * z + theta[1]
        # log(1 + e^t) - y t, written with logaddexp so large |t| neither overflows nor loses precision
        value = float(np.mean(np.logaddexp(0.0, logits) - y * logits))
        residual = expit(logits) - y
        return value, np.array([np.mean(residual * z), np.mean(residual)])

    # Starting flat at the base rate is feasible for either sign and is the answer when the data contradict
    # the direction. Tolerances are tight because two parameters make it cheap, and the stored curve should
    # not depend on where the optimiser happened to stop.
    bounds = [(0.0, None) if increasing else (None, 0.0), (None, None)]
    result = minimize(
        loss, np.array([0.0, base]), jac=True, method="L-BFGS-B", bounds=bounds, options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 500}
    )
    slope, bias = float(result.x[0]), float(result.x[1])
    if slope == 0.0:  # the bound is active: the best curve is flat at the base rate
        bias = base
    return slope, bias
