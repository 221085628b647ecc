"""Statistics against scipy (the oracle) on random data with and without ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from qualoader.stats import (
    ConfidenceInterval,
    auroc,
    bootstrap_auroc,
    bootstrap_ci,
    bootstrap_ci_difference,
    kendall_tau_b,
    pearson,
    rankdata,
    spearman,
)


def _data(seed: int, n: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    if ties:
        x, y = np.round(x * 2) / 2, np.round(y)
    return x, y


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("seed", range(4))
def test_correlations_match_scipy(seed: int, ties: bool) -> None:
    x, y = _data(seed, 57, ties)
    assert float(spearman(x, y)) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)
    assert float(pearson(x, y)) == pytest.approx(scipy_stats.pearsonr(x, y).statistic, abs=1e-12)
    assert float(kendall_tau_b(x, y)) == pytest.approx(scipy_stats.kendalltau(x, y, variant="b").statistic, abs=1e-12)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_rankdata_matches_scipy_rowwise(ties: bool) -> None:
    x, _ = _data(7, 300, ties)
    rows = x.reshape(6, 50)
    np.testing.assert_allclose(rankdata(rows), scipy_stats.rankdata(rows, axis=-1))
    np.testing.assert_allclose(rankdata(x), scipy_stats.rankdata(x))


def test_rowwise_statistics_equal_per_row_calls() -> None:
    x, y = _data(3, 200, True)
    x, y = x.reshape(5, 40), y.reshape(5, 40)
    for statistic in (spearman, pearson, kendall_tau_b):
        rows = statistic(x, y)
        assert rows.shape == (5,)
        np.testing.assert_allclose(rows, [float(statistic(a, b)) for a, b in zip(x, y)])


def test_inputs_accept_tensors_and_lists() -> None:
    x, y = _data(1, 20, False)
    expected = float(spearman(x, y))
    assert float(spearman(torch.from_numpy(x), torch.from_numpy(y).float())) == pytest.approx(expected, abs=1e-6)
    assert float(spearman(x.tolist(), y.tolist())) == pytest.approx(expected)


def test_constant_input_gives_nan() -> None:
    x = np.ones(10)
    y = np.arange(10.0)
    assert np.isnan(spearman(x, y)) and np.isnan(pearson(x, y)) and np.isnan(kendall_tau_b(x, y))


def test_perfect_monotone_relation() -> None:
    x = np.arange(12.0)
    assert float(spearman(x, np.exp(x))) == pytest.approx(1.0)
    assert float(kendall_tau_b(x, -(x**3))) == pytest.approx(-1.0)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("seed", range(3))
def test_auroc_matches_mann_whitney(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(400) < 0.3
    scores = rng.normal(size=400) + labels
    if ties:
        scores = np.round(scores)
    u = scipy_stats.mannwhitneyu(scores[labels], scores[~labels]).statistic
    assert auroc(scores, labels) == pytest.approx(u / (labels.sum() * (~labels).sum()), abs=1e-12)


def test_auroc_edge_values() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auroc([0.0, 1.0, 2.0, 3.0], labels) == 1.0
    assert auroc([3.0, 2.0, 1.0, 0.0], labels) == 0.0
    assert auroc([1.0, 1.0, 1.0, 1.0], labels) == 0.5
    assert np.isnan(auroc([0.0, 1.0], [1, 1]))


@pytest.mark.parametrize("statistic", [spearman, pearson, kendall_tau_b])
def test_bootstrap_ci_contains_estimate_and_is_seeded(statistic) -> None:
    x, y = _data(11, 60, True)
    first = bootstrap_ci(statistic, x, y, n_boot=300, generator=torch.Generator().manual_seed(5))
    again = bootstrap_ci(statistic, x, y, n_boot=300, generator=torch.Generator().manual_seed(5))
    other = bootstrap_ci(statistic, x, y, n_boot=300, generator=torch.Generator().manual_seed(6))
    assert isinstance(first, ConfidenceInterval)
    assert first == again and first != other
    assert first.low <= first.estimate <= first.high
    assert first.estimate == pytest.approx(float(statistic(x, y)))
    narrow = bootstrap_ci(statistic, x, y, n_boot=300, level=0.5, generator=torch.Generator().manual_seed(5))
    assert first.low <= narrow.low <= narrow.high <= first.high


def test_bootstrap_ci_covers_true_correlation_usually() -> None:
    # 40 independent data sets with true Pearson rho = 0.6: a 95% interval should cover it ~95% of the time.
    rho, covered = 0.6, 0
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    for _ in range(40):
        x = rng.normal(size=80)
        y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=80)
        interval = bootstrap_ci(pearson, x, y, n_boot=400, generator=generator)
        covered += interval.low <= rho <= interval.high
    assert covered >= 33


def test_bootstrap_auroc() -> None:
    rng = np.random.default_rng(2)
    labels = rng.random(500) < 0.5
    scores = rng.normal(size=500) + 0.8 * labels
    interval = bootstrap_auroc(scores, labels, n_boot=100, generator=torch.Generator().manual_seed(0))
    assert interval.estimate == pytest.approx(auroc(scores, labels))
    assert interval.low < interval.estimate < interval.high
    assert interval == bootstrap_auroc(scores, labels, n_boot=100, generator=torch.Generator().manual_seed(0))


def test_bootstrap_auroc_replicates_equal_direct_auroc_of_resamples() -> None:
    # The count-based fast path must equal ranking each resample from scratch (ties included).
    rng = np.random.default_rng(8)
    labels = rng.random(60) < 0.4
    scores = np.round(rng.normal(size=60) + labels, 1)
    fast = bootstrap_auroc(scores, labels, n_boot=30, level=0.5, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    direct = []
    for _ in range(30):
        index = torch.randint(0, 60, (60,), generator=generator).numpy()
        direct.append(auroc(scores[index], labels[index]))
    assert fast.low == pytest.approx(np.quantile(direct, 0.25))
    assert fast.high == pytest.approx(np.quantile(direct, 0.75))


def test_bootstrap_of_undefined_statistic_is_nan() -> None:
    interval = bootstrap_ci(spearman, np.ones(8), np.arange(8.0), n_boot=20, generator=torch.Generator().manual_seed(0))
    assert all(np.isnan(value) for value in interval)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: spearman("abc", [1.0, 2.0]), TypeError),
        (lambda: spearman([1.0, 2.0], [1.0, 2.0, 3.0]), ValueError),
        (lambda: spearman([1.0], [2.0]), ValueError),
        (lambda: pearson([1.0, float("nan")], [1.0, 2.0]), ValueError),
        (lambda: kendall_tau_b(np.zeros((2, 2, 2)), np.zeros((2, 2, 2))), ValueError),
        (lambda: rankdata([]), ValueError),
        (lambda: auroc([0.1, 0.2], [0, 2]), ValueError),
        (lambda: auroc([0.1, 0.2], [0, 1, 1]), ValueError),
        (lambda: auroc({"a": 1}, [0]), TypeError),
        (lambda: bootstrap_ci(spearman, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], generator=np.random.default_rng(0)), TypeError),
        (lambda: bootstrap_ci(spearman, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], n_boot=0, generator=torch.Generator()), ValueError),
        (lambda: bootstrap_ci(spearman, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], level=1.0, generator=torch.Generator()), ValueError),
        (lambda: bootstrap_ci("spearman", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], generator=torch.Generator()), TypeError),
        (lambda: bootstrap_ci(spearman, np.zeros((2, 3)), np.zeros((2, 3)), generator=torch.Generator()), ValueError),
        (lambda: bootstrap_auroc([0.1, 0.2], [0, 1], n_boot=-1, generator=torch.Generator()), ValueError),
    ],
)
def test_bad_input(call, error) -> None:
    with pytest.raises(error):
        call()


def test_bootstrap_ci_difference() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(size=70)
    good = y + 0.2 * rng.normal(size=70)
    bad = y + 2.0 * rng.normal(size=70)
    interval = bootstrap_ci_difference(spearman, good, bad, y, n_boot=400, generator=torch.Generator().manual_seed(0))
    assert interval.estimate == pytest.approx(float(spearman(good, y)) - float(spearman(bad, y)))
    assert 0.0 < interval.low <= interval.estimate <= interval.high
    same = bootstrap_ci_difference(spearman, good, good, y, n_boot=50, generator=torch.Generator().manual_seed(0))
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        bootstrap_ci_difference(spearman, good, bad[:-1], y, generator=torch.Generator())
    with pytest.raises(TypeError):
        bootstrap_ci_difference(None, good, bad, y, generator=torch.Generator())
