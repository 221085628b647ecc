"""Rank and linear correlations, bootstrap confidence intervals and AUROC, in plain numpy.

Every statistic accepts 1-D data, and the correlations also accept a 2-D stack of rows
(``(R, n)``), computing one value per row; this is what makes the bootstrap fast: all the
resamples are ranked and correlated at once. Ties are handled exactly (average ranks,
Kendall's tau-b, AUROC counting a tie as one half).

Example:
    >>> x = np.array([1.0, 2.0, 3.0, 4.0])
    >>> float(spearman(x, x ** 2))
    1.0
    >>> interval = bootstrap_ci(spearman, x, x ** 2, generator=torch.Generator().manual_seed(0))
    >>> interval.low <= interval.estimate <= interval.high
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from qualoader._validation import check_positive_int, check_probability, check_type

__all__ = [
    "ConfidenceInterval",
    "auroc",
    "bootstrap_auroc",
    "bootstrap_ci",
    "bootstrap_ci_difference",
    "kendall_tau_b",
    "pearson",
    "rankdata",
    "spearman",
]

Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


class ConfidenceInterval(NamedTuple):
    """A point estimate and its percentile-bootstrap interval ``[low, high]``."""

    estimate: float
    low: float
    high: float


def _as_array(values: Any, name: str, *, allow_2d: bool = False) -> np.ndarray:
    """Return ``values`` (numpy array, tensor or sequence of reals) as finite float64 numpy."""
    if isinstance(values, Tensor):
        # float64 throughout: rank sums and centred products over 10^5 values lose digits in float32.
        array = values.detach().to("cpu", torch.float64).numpy()
    elif isinstance(values, (np.ndarray, list, tuple)):
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} should be an array of real numbers, but got {name} that numpy cannot read as floats") from error
    else:
        raise TypeError(
            f"{name} should be a numpy array, tensor or sequence of real numbers, but got {name} of type {type(values).__name__}"
        )
    dims = "1-D or 2-D (R, n)" if allow_2d else "1-D"
    if array.ndim not in ((1, 2) if allow_2d else (1,)) or array.shape[-1] == 0:
        raise ValueError(f"{name} should be a non-empty {dims} array, but got {name}.shape={array.shape}")
    # Rejected rather than dropped: NaN sorts last and never equals itself, so it would get a rank of its own
    # and silently shift every correlation; dropping would unpair x and y.
    if not np.isfinite(array).all():
        raise ValueError(f"{name} should be finite, but got {name} with {int((~np.isfinite(array)).sum())} NaN/Inf values")
    return array


def _pair(x: Any, y: Any, *, minimum: int = 2) -> tuple[np.ndarray, np.ndarray]:
    x = _as_array(x, "x", allow_2d=True)
    y = _as_array(y, "y", allow_2d=True)
    if x.shape != y.shape:
        raise ValueError(f"y should have the shape of x {x.shape}, but got y.shape={y.shape}")
    if x.shape[-1] < minimum:
        raise ValueError(f"x should have at least {minimum} values per row, but got x.shape={x.shape}")
    return x, y


def _rank_rows(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the last axis of a float array of shape ``(..., n)``."""
    n = values.shape[-1]
    order = np.argsort(values, axis=-1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=-1)
    positions = np.broadcast_to(np.arange(n), values.shape)
    starts_group = np.ones(values.shape, dtype=bool)
    starts_group[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    ends_group = np.ones(values.shape, dtype=bool)
    ends_group[..., :-1] = starts_group[..., 1:]
    # A tie group spans sorted positions [first, last]: a forward running max carries each group's start to its
    # members and a backward running min carries its end, so all rows are averaged at once without a Python loop.
    first = np.maximum.accumulate(np.where(starts_group, positions, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends_group, positions, n - 1), axis=-1), axis=-1), axis=-1)
    ranks = np.empty(values.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    return ranks


def rankdata(values: Any) -> np.ndarray:
    """Average ranks (1-based; ties share the mean of their ranks) along the last axis.

    Args:
        values: shape :math:`(n,)` or :math:`(R, n)`, real and finite.

    Returns:
        float64 array of the same shape.

    Example:
        >>> rankdata([10.0, 20.0, 10.0]).tolist()
        [1.5, 3.0, 1.5]
    """
    return _rank_rows(_as_array(values, "values", allow_2d=True))


def _correlation(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` clipped to [-1, 1], NaN where the denominator is 0 (a constant row)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        value = numerator / denominator
    # rounding can push a perfect correlation a few ulps past 1
    return np.where(denominator > 0, np.clip(value, -1.0, 1.0), np.nan)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Centre first (two-pass): sum(xy) - n*mean(x)*mean(y) cancels catastrophically for large, nearly constant scores.
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    return _correlation((xc * yc).sum(axis=-1), denominator)


def pearson(x: Any, y: Any) -> np.ndarray:
    """Pearson's linear correlation of ``x`` and ``y`` along the last axis.

    Args:
        x: shape :math:`(n,)` or :math:`(R, n)`, with ``n >= 2``.
        y: same shape as ``x``.

    Returns:
        A 0-d array (1-D input) or shape :math:`(R,)`; NaN where a row is constant.
    """
    x, y = _pair(x, y)
    return _pearson_rows(x, y)


def spearman(x: Any, y: Any) -> np.ndarray:
    """Spearman's rank correlation (Pearson's on average ranks) along the last axis.

    Args:
        x: shape :math:`(n,)` or :math:`(R, n)`, with ``n >= 2``.
        y: same shape as ``x``.

    Returns:
        A 0-d array (1-D input) or shape :math:`(R,)`; NaN where a row is constant.
    """
    x, y = _pair(x, y)
    return _pearson_rows(_rank_rows(x), _rank_rows(y))


def kendall_tau_b(x: Any, y: Any) -> np.ndarray:
    """Kendall's tau-b (tie-corrected) along the last axis, from all :math:`n(n-1)/2` pairs.

    ``tau_b = (concordant - discordant) / sqrt(pairs untied in x * pairs untied in y)``. Memory is
    :math:`O(R n^2)`, meant for the per-condition correlations (n of a few hundred at most).

    Args:
        x: shape :math:`(n,)` or :math:`(R, n)`, with ``n >= 2``.
        y: same shape as ``x``.

    Returns:
        A 0-d array (1-D input) or shape :math:`(R,)`; NaN where a row is constant.
    """
    x, y = _pair(x, y)
    n = x.shape[-1]
    # Upper triangle: each unordered pair once. A sign product is +1 (concordant), -1 (discordant) or 0 (tied in
    # either), so its sum is concordant - discordant, and the non-zero signs count the untied pairs.
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    sign_x = np.sign(x[..., :, None] - x[..., None, :])[..., upper]
    sign_y = np.sign(y[..., :, None] - y[..., None, :])[..., upper]
    untied_x = np.count_nonzero(sign_x, axis=-1).astype(np.float64)
    untied_y = np.count_nonzero(sign_y, axis=-1).astype(np.float64)
    return _correlation((sign_x * sign_y).sum(axis=-1), np.sqrt(untied_x * untied_y))


def _check_labels(labels: Any, size: int) -> np.ndarray:
    array = _as_array(labels, "labels")
    if array.size != size:
        raise ValueError(f"labels should have one value per score ({size}), but got labels.shape={array.shape}")
    if not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(f"labels should be 0/1 (or bool), but got labels with values {np.unique(array)[:5].tolist()}")
    return array.astype(bool)


def _mann_whitney_auroc(rank_sum: Any, n_pos: Any, n_neg: Any) -> Any:
    """AUROC from the sum of the positives' average ranks: the Mann-Whitney U over ``n_pos * n_neg``."""
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _auroc_from_ranks(ranks: np.ndarray, positive: np.ndarray) -> np.ndarray:
    n_pos = positive.sum(axis=-1).astype(np.float64)
    n_neg = positive.shape[-1] - n_pos
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = _mann_whitney_auroc(rank_sum, n_pos, n_neg)
    # With one class absent the ranking question is undefined (0/0), so NaN rather than a misleading 0 or 1.
    return np.where((n_pos > 0) & (n_neg > 0), value, np.nan)


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve of ``scores`` for predicting ``labels`` (rank-based, ties count 1/2).

    Equals the probability that a random positive scores higher than a random negative (the
    Mann-Whitney U statistic divided by ``n_pos * n_neg``).

    Args:
        scores: shape :math:`(n,)`, higher = more likely positive.
        labels: shape :math:`(n,)`, bool or 0/1.

    Returns:
        AUROC in [0, 1]; NaN when only one class is present.

    Example:
        >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        0.75
    """
    scores = _as_array(scores, "scores")
    positive = _check_labels(labels, scores.size)
    return float(_auroc_from_ranks(_rank_rows(scores), positive))


def _check_statistic(statistic: Any) -> None:
    if not callable(statistic):
        raise TypeError(f"statistic should be a callable like spearman, but got statistic of type {type(statistic).__name__}")


def _check_bootstrap(n_boot: Any, level: Any, generator: Any) -> None:
    check_positive_int(n_boot, "n_boot")
    check_probability(level, "level", open_low=True)
    # check_probability accepts 1.0, but a 100% percentile interval is just the min/max of the resamples.
    if level >= 1.0:
        raise ValueError(f"level should be in (0, 1), but got level={level}")
    check_type(generator, "generator", torch.Generator, "a torch.Generator (e.g. torch.Generator().manual_seed(seed))")


def _interval(estimate: float, replicates: np.ndarray, level: float) -> ConfidenceInterval:
    # A resample can be constant (undefined correlation); np.quantile would turn one NaN into a NaN interval.
    finite = replicates[np.isfinite(replicates)]
    if not np.isfinite(estimate) or finite.size == 0:
        return ConfidenceInterval(float(estimate), float("nan"), float("nan"))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return ConfidenceInterval(float(estimate), float(low), float(high))


def bootstrap_ci(
    statistic: Statistic,
    x: Any,
    y: Any,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    generator: torch.Generator,
) -> ConfidenceInterval:
    """Percentile-bootstrap interval of a paired statistic, resampling the pairs ``(x_i, y_i)``.

    Args:
        statistic: a row-wise statistic such as :func:`spearman`, :func:`pearson` or
            :func:`kendall_tau_b` (called once on all resamples, shape :math:`(n_boot, n)`).
        x: shape :math:`(n,)`, ``n >= 2``.
        y: shape :math:`(n,)`.
        n_boot: number of resamples.
        level: coverage of the interval, in (0, 1).
        generator: seeded CPU ``torch.Generator`` (the only source of randomness).

    Returns:
        ``ConfidenceInterval(estimate, low, high)``; resamples whose statistic is undefined
        (e.g. a constant resample) are dropped; all NaN when the estimate itself is undefined.
    """
    _check_statistic(statistic)
    x, y = _pair(x, y)
    if x.ndim != 1:
        raise ValueError(f"x should be 1-D, but got x.shape={x.shape}")
    _check_bootstrap(n_boot, level, generator)
    estimate = float(statistic(x, y))
    # Indices from the caller's torch.Generator (not numpy's global RNG) so one seed reproduces the whole run;
    # one (n_boot, n) draw lets the row-wise statistic rank and correlate every resample in a single call.
    index = torch.randint(0, x.size, (n_boot, x.size), generator=generator).numpy()
    return _interval(estimate, np.asarray(statistic(x[index], y[index]), dtype=np.float64), level)


def bootstrap_auroc(
    scores: Any,
    labels: Any,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    generator: torch.Generator,
) -> ConfidenceInterval:
    """AUROC (see :func:`auroc`) with a percentile-bootstrap interval, resampling the images.

    A resample only repeats original values, so its average ranks follow from per-value counts
    (``O(n)`` per resample, no sorting): large pooled sets (10^5 images) bootstrap in seconds.

    Args:
        scores: shape :math:`(n,)`.
        labels: shape :math:`(n,)`, bool or 0/1.
        n_boot: number of resamples.
        level: coverage of the interval, in (0, 1).
        generator: seeded CPU ``torch.Generator``.
    """
    scores = _as_array(scores, "scores")
    positive = _check_labels(labels, scores.size)
    _check_bootstrap(n_boot, level, generator)
    estimate = float(_auroc_from_ranks(_rank_rows(scores), positive))
    values, ids = np.unique(scores, return_inverse=True)
    replicates = np.empty(n_boot, dtype=np.float64)
    # One resample at a time keeps memory O(n): a single (n_boot, n) draw for 10^5 images would be 160 MB of
    # int64 indices before any gathering.
    for rep in range(n_boot):
        index = torch.randint(0, scores.size, (scores.size,), generator=generator).numpy()
        drawn, drawn_positive = ids[index], positive[index]
        count_all = np.bincount(drawn, minlength=values.size).astype(np.float64)
        count_pos = np.bincount(drawn[drawn_positive], minlength=values.size).astype(np.float64)
        # np.unique sorted the values, so value v's copies fill ranks after the smaller values' cumulative
        # count: their average rank is (copies before v) + (count_v + 1) / 2.
        average_rank = np.cumsum(count_all) - count_all + (count_all + 1.0) / 2.0
        n_pos = count_pos.sum()
        n_neg = scores.size - n_pos
        if n_pos == 0 or n_neg == 0:
            replicates[rep] = np.nan
            continue
        replicates[rep] = _mann_whitney_auroc((count_pos * average_rank).sum(), n_pos, n_neg)
    return _interval(estimate, replicates, level)


def bootstrap_ci_difference(
    statistic: Statistic,
    first: Any,
    second: Any,
    y: Any,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    generator: torch.Generator,
) -> ConfidenceInterval:
    """Paired-bootstrap interval of ``statistic(first, y) - statistic(second, y)``.

    The same resampled indices serve both terms, so the interval accounts for their correlation
    (e.g. "how much better does metric A track accuracy than metric B on the same conditions").

    Args:
        statistic: a row-wise statistic such as :func:`spearman`.
        first: shape :math:`(n,)`, ``n >= 2``.
        second: shape :math:`(n,)`.
        y: shape :math:`(n,)`.
        n_boot: number of resamples.
        level: coverage of the interval, in (0, 1).
        generator: seeded CPU ``torch.Generator``.
    """
    _check_statistic(statistic)
    first, y = _pair(first, y)
    second, _ = _pair(second, y)
    if y.ndim != 1:
        raise ValueError(f"y should be 1-D, but got y.shape={y.shape}")
    _check_bootstrap(n_boot, level, generator)
    estimate = float(statistic(first, y)) - float(statistic(second, y))
    index = torch.randint(0, y.size, (n_boot, y.size), generator=generator).numpy()
    replicates = np.asarray(statistic(first[index], y[index]), dtype=np.float64) - np.asarray(
        statistic(second[index], y[index]), dtype=np.float64
    )
    return _interval(estimate, replicates, level)
