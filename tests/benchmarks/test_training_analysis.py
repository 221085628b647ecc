"""Statistics of the training benchmark: the paired interval and the choice on validation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmarks.training.analysis import choose, paired_difference
from benchmarks.training.train import Job, run_id


def test_paired_difference_matches_the_paired_t_test() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.normal(0.8, 0.02, 5)
    values = baseline + rng.normal(0.01, 0.005, 5)  # a consistent gain, much smaller than the seed-to-seed spread
    result = paired_difference(values, baseline)
    reference = stats.ttest_rel(values, baseline).confidence_interval(0.95)
    assert result["estimate"] == pytest.approx(float(np.mean(values - baseline)))
    assert (result["low"], result["high"]) == pytest.approx((reference.low, reference.high))
    assert result["low"] > 0  # pairing removes the seed spread: the gain is significant
    unpaired = stats.ttest_ind(values, baseline).pvalue
    assert unpaired > 0.05  # while an unpaired comparison of the same numbers would not see it


def test_paired_difference_of_one_pair_has_no_interval() -> None:
    assert paired_difference([0.9], [0.8]) == {"estimate": pytest.approx(0.1), "low": None, "high": None, "n": 1}


def _record(arm: str, setting: dict, accuracies: list[float]) -> dict:
    steps = [10 * (i + 1) for i in range(len(accuracies))]
    return {
        "id": run_id(Job(arm, tuple(setting.items()), "mlp", 0)),
        "curve": [{"step": s, "val_acc": a, "seconds": 0.0} for s, a in zip(steps, accuracies)],
        "budgets": {str(i + 1): {"step": s, "state": ""} for i, s in enumerate(steps)},
    }


def test_choose_takes_the_best_mean_over_the_budgets() -> None:
    grid = [{"fraction": 0.1}, {"fraction": 0.3}, {"fraction": 0.5}]
    curves = [[0.70, 0.80], [0.74, 0.79], [0.60, 0.85]]  # means 0.750, 0.765, 0.725: the second, not the best final
    records = {record["id"]: record for record in (_record("prune-easy", s, c) for s, c in zip(grid, curves))}
    assert choose(records, "prune-easy", grid, "mlp", [0]) == {"fraction": 0.3}
