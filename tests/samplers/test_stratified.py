"""Quality-stratified samplers: exact epoch mix, per-batch mix, sharding, state and bad input."""

from __future__ import annotations

import functools

import pytest
import torch
from sampler_contract import (
    assert_deterministic,
    assert_distributed_contract,
    assert_resumes,
)
from scipy import stats

from qualoader.samplers import (
    QualityStratifiedBatchSampler,
    QualityStratifiedSampler,
    apportion,
    assign_strata,
)


def test_quantile_strata_have_equal_sizes_and_ordered_scores(scores):
    strata = assign_strata(scores, num_strata=3)
    assert torch.bincount(strata).tolist() == [334, 333, 333]
    for low, high in ((0, 1), (1, 2)):
        assert scores[strata == low].max() <= scores[strata == high].min()


def test_edges_define_half_open_strata():
    values = torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0], dtype=torch.float64)
    assert assign_strata(values, edges=[0.2, 0.7]).tolist() == [0, 1, 1, 2, 2]


def test_apportion_matches_largest_remainder():
    assert apportion(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), 7).tolist() == [4, 2, 1]
    assert apportion(torch.tensor([1 / 3] * 3, dtype=torch.float64), 10).sum() == 10


@pytest.mark.parametrize("proportions", ["uniform", "natural", [0.1, 0.2, 0.3, 0.4]])
def test_every_epoch_holds_the_target_mix(scores, proportions):
    sampler = QualityStratifiedSampler(scores, 4, proportions=proportions, num_samples=600, seed=0)
    expected = {
        "uniform": [0.25] * 4,
        "natural": [0.25] * 4,
        "list": [0.1, 0.2, 0.3, 0.4],
    }[proportions if isinstance(proportions, str) else "list"]
    for epoch in range(5):
        sampler.set_epoch(epoch)
        drawn = torch.tensor(list(sampler))
        counts = torch.bincount(sampler.strata[drawn], minlength=4)
        assert counts.tolist() == [round(600 * p) for p in expected]


def test_natural_proportions_over_the_whole_dataset_give_a_permutation(scores):
    sampler = QualityStratifiedSampler(scores, edges=[0.2, 0.9], proportions="natural", seed=1)
    assert sorted(sampler) == list(range(len(scores)))


def test_a_small_stratum_is_cycled_when_oversampled():
    values = torch.cat([torch.zeros(10), torch.ones(90)]).double()
    sampler = QualityStratifiedSampler(values, edges=[0.5], proportions=[0.5, 0.5], seed=0)
    drawn = torch.tensor(list(sampler))
    low = drawn[values[drawn] == 0]
    assert low.numel() == 50 and torch.bincount(low, minlength=10).tolist() == [5] * 10, "each pass is a full permutation"
    high = drawn[values[drawn] == 1]
    assert high.unique().numel() == 50, "no repeats while a stratum suffices"


@pytest.mark.parametrize("proportions", [[0.5, 0.3, 0.2], [0.15, 0.35, 0.5]])
def test_every_batch_holds_the_target_mix_and_batches_pass_a_chi_square_test(scores, proportions):
    sampler = QualityStratifiedBatchSampler(scores, 16, 3, proportions=proportions, seed=0)
    totals = torch.zeros(3, dtype=torch.int64)
    quotas = torch.tensor(proportions, dtype=torch.float64) * 16
    for epoch in range(20):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert len(batch) == 16
            counts = torch.bincount(sampler.strata[torch.tensor(batch)], minlength=3)
            assert bool(((counts >= quotas.floor()) & (counts <= quotas.ceil())).all()), counts
            totals += counts
    expected = quotas * 20 * len(sampler)
    assert stats.chisquare(totals.numpy(), expected.numpy()).pvalue > 1e-3


def test_batches_repeat_no_sample_while_no_stratum_is_oversampled(scores):
    sampler = QualityStratifiedBatchSampler(scores, 16, 3, proportions="natural", num_batches=50, seed=0)
    drawn = [index for batch in sampler for index in batch]
    assert len(drawn) == len(set(drawn)) == 16 * 50


def test_batch_counts_rows_sum_to_the_batch_size(scores):
    sampler = QualityStratifiedBatchSampler(scores, 10, 3, proportions=[0.33, 0.33, 0.34], num_batches=500)
    counts = sampler.batch_counts(torch.Generator().manual_seed(0))
    assert counts.shape == (500, 3) and bool((counts.sum(1) == 10).all())
    torch.testing.assert_close(
        counts.double().mean(0),
        torch.tensor([3.3, 3.3, 3.4], dtype=torch.float64),
        atol=0.06,
        rtol=0,
    )


@pytest.mark.parametrize("num_replicas", [2, 3, 7])
@pytest.mark.parametrize("drop_last", [False, True])
def test_stratified_follows_the_distributed_sampler_contract(scores, num_replicas, drop_last):
    make = functools.partial(
        QualityStratifiedSampler,
        scores,
        4,
        proportions="natural",
        num_samples=998,
        seed=5,
    )
    assert_distributed_contract(make, num_replicas, drop_last)


@pytest.mark.parametrize("num_replicas", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_variant_shards_whole_batches(scores, num_replicas, drop_last):
    make = functools.partial(QualityStratifiedBatchSampler, scores, 32, 4, num_batches=31, seed=5)
    assert_distributed_contract(make, num_replicas, drop_last)


def test_determinism_and_resume(scores):
    make = functools.partial(QualityStratifiedSampler, scores, 4, seed=7)
    assert_deterministic(make)
    assert_resumes(make, epoch=2, stop_after=123)
    make_batches = functools.partial(QualityStratifiedBatchSampler, scores, 20, 4, seed=7, num_replicas=2, rank=1)
    assert_deterministic(make_batches)
    assert_resumes(make_batches, epoch=1, stop_after=9)


def test_different_seeds_give_different_orders(scores):
    assert list(QualityStratifiedSampler(scores, 4, seed=0)) != list(QualityStratifiedSampler(scores, 4, seed=1))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"proportions": [0.5, 0.3, 0.3, 0.1]},
            ValueError,
            "proportions should sum to 1, but got proportions=\\[0.5, 0.3, 0.3, 0.1\\] summing to 1.2",
        ),
        (
            {"proportions": [0.5, 0.5]},
            ValueError,
            "proportions should have one entry per stratum \\(4\\), but got proportions=\\[0.5, 0.5\\]",
        ),
        (
            {"proportions": [1.5, -0.5, 0, 0]},
            ValueError,
            "proportions should be non-negative and finite",
        ),
        (
            {"proportions": "balanced"},
            ValueError,
            "proportions should be one of \\{'natural', 'uniform'\\}",
        ),
        (
            {"num_samples": 0},
            ValueError,
            "num_samples should be a positive int, but got num_samples=0",
        ),
        (
            {"num_strata": 1001},
            ValueError,
            "num_strata should be at most the number of scores 1000, but got num_strata=1001",
        ),
        (
            {"edges": [0.5]},
            ValueError,
            "num_strata and edges should be given one at a time",
        ),
    ],
)
def test_bad_arguments_are_refused(scores, kwargs, error, match):
    kwargs = {"num_strata": 4, **kwargs}
    with pytest.raises(error, match=match):
        QualityStratifiedSampler(scores, **kwargs)


def test_empty_strata_with_a_positive_target_are_refused(scores):
    with pytest.raises(
        ValueError,
        match="every stratum with a positive proportion should hold samples, but got empty strata \\[2\\]",
    ):
        QualityStratifiedSampler(scores, edges=[0.5, 2.0])
    with pytest.raises(
        ValueError,
        match="edges should be finite and strictly increasing, but got edges=\\[0.5, 0.5\\]",
    ):
        QualityStratifiedSampler(scores, edges=[0.5, 0.5])
    sampler = QualityStratifiedSampler(scores, edges=[0.5, 2.0], proportions=[0.5, 0.5, 0.0])
    assert len(list(sampler)) == 1000


def test_a_list_of_proportions_fixes_the_number_of_strata(scores):
    sampler = QualityStratifiedSampler(scores, proportions=[0.6, 0.3, 0.1], seed=0)
    assert sampler.num_strata == 3
    drawn = torch.tensor(list(sampler))
    counts = torch.bincount(sampler.strata[drawn], minlength=3)
    assert counts.tolist() == [600, 300, 100]


def test_nan_and_empty_scores_are_refused():
    with pytest.raises(ValueError, match="scores should be finite"):
        QualityStratifiedSampler([0.1, float("nan")], 2)
    with pytest.raises(ValueError, match="scores should be a non-empty 1-D array"):
        QualityStratifiedBatchSampler([], 4, 2)


def test_samplers_drive_a_data_loader(scores):
    from torch.utils.data import DataLoader, TensorDataset

    dataset = TensorDataset(torch.arange(len(scores)))
    sampler = QualityStratifiedSampler(scores, 4, seed=0)
    seen = torch.cat([batch for (batch,) in DataLoader(dataset, batch_size=64, sampler=sampler)])
    assert seen.tolist() == list(sampler)
    batches = QualityStratifiedBatchSampler(scores, 50, 4, seed=0)
    loaded = [batch.tolist() for (batch,) in DataLoader(dataset, batch_sampler=batches)]
    assert loaded == list(batches)
