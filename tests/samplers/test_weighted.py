"""Quality-weighted sampler: draws follow the weights, beyond 2**24 samples too."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
from sampler_contract import (
    assert_deterministic,
    assert_distributed_contract,
    assert_resumes,
    draws,
)
from scipy import stats

from qualoader.samplers import OnlineDifficulty, QualityWeightedSampler, draw_weighted, softmax_weights
from qualoader.samplers import weighted as weighted_module


def test_draws_with_replacement_follow_the_weights():
    weights = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 10.0], dtype=torch.float64)
    sampler = QualityWeightedSampler(torch.zeros(6), weight_fn=lambda s: weights, num_samples=20_000, seed=0)
    counts = torch.bincount(torch.tensor(list(sampler)), minlength=6)
    assert counts[0] == 0, "zero weight is never drawn"
    expected = weights[1:] / weights.sum() * 20_000
    assert stats.chisquare(counts[1:].numpy(), expected.numpy()).pvalue > 1e-3


def test_draws_without_replacement_are_distinct_and_first_draws_follow_the_weights():
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0], dtype=torch.float64)
    sampler = QualityWeightedSampler(
        torch.zeros(5),
        weight_fn=lambda s: weights,
        replacement=False,
        num_samples=4,
        seed=0,
    )
    firsts = []
    for epoch in range(4000):
        sampler.set_epoch(epoch)
        drawn = list(sampler)
        assert sorted(drawn) == [0, 1, 2, 3], "all positive weights drawn once, the zero weight never"
        firsts.append(drawn[0])
    counts = torch.bincount(torch.tensor(firsts), minlength=4)
    assert stats.chisquare(counts.numpy(), (weights[:4] / 10 * 4000).numpy()).pvalue > 1e-3


def test_temperature_weights_favour_easy_or_hard_samples():
    scores = torch.linspace(0, 1, 101, dtype=torch.float64)
    easy = softmax_weights(scores, 0.5, higher_is_better=True)
    hard = softmax_weights(scores, 0.5, favour="hard", higher_is_better=True)
    assert bool((easy.diff() > 0).all()) and bool((hard.diff() < 0).all())
    torch.testing.assert_close(hard, softmax_weights(scores, 0.5, higher_is_better=False))
    z_one_std = (scores - scores.mean()) / scores.std()
    torch.testing.assert_close(easy, torch.softmax(z_one_std / 0.5, 0))
    hot = softmax_weights(scores, 1e6, higher_is_better=True)
    torch.testing.assert_close(hot, torch.full_like(hot, 1 / 101), rtol=1e-4, atol=0)
    constant = softmax_weights(torch.ones(4, dtype=torch.float64), 1.0, higher_is_better=True)
    torch.testing.assert_close(constant, torch.full((4,), 0.25, dtype=torch.float64))


def test_temperature_weights_use_ranks_so_outliers_and_ties_do_not_dominate():
    skewed = torch.tensor([0.01, 0.02, 0.02, 0.03, 0.04, 100.0], dtype=torch.float64)
    weights = softmax_weights(skewed, 1.0, favour="easy", higher_is_better=True)
    torch.testing.assert_close(weights, softmax_weights(torch.tensor([1, 2, 2, 4, 5, 6], dtype=torch.float64), 1.0, higher_is_better=True))
    assert weights[1] == weights[2], "tied scores share their weight"
    ranks = torch.tensor([0.0, 1.5, 1.5, 3.0, 4.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(weights, torch.softmax((ranks - ranks.mean()) / ranks.std(), 0))


def test_drawn_quality_moves_with_the_favoured_side(scores):
    easy = torch.tensor(list(QualityWeightedSampler(scores, higher_is_better=True, temperature=0.5)))
    hard = torch.tensor(list(QualityWeightedSampler(scores, higher_is_better=True, temperature=0.5, favour="hard")))
    assert scores[easy].mean() > scores.mean() + 0.1 > scores[hard].mean() + 0.2


def test_set_weights_takes_effect_from_the_next_epoch(scores):
    sampler = QualityWeightedSampler(scores, higher_is_better=True, num_samples=200)
    only_last = torch.zeros(len(scores))
    only_last[-1] = 1.0
    sampler.set_weights(only_last)
    assert set(sampler) == {len(scores) - 1}


def test_draws_beyond_torch_multinomial_limit():
    size = 2**24 + 16
    with pytest.raises(RuntimeError):
        torch.multinomial(torch.ones(size), 1)
    weights = torch.zeros(size, dtype=torch.float64)
    weights[2**24 :] = 1.0
    drawn = draw_weighted(weights, 4000, True, torch.Generator().manual_seed(0))
    assert int(drawn.min()) >= 2**24 and drawn.unique().numel() == 16
    unique = draw_weighted(weights, 16, False, torch.Generator().manual_seed(0))
    assert sorted(unique.tolist()) == list(range(2**24, size))


@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("num_replicas", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_weighted_follows_the_distributed_sampler_contract(scores, replacement, num_replicas, drop_last):
    make = functools.partial(QualityWeightedSampler, scores, higher_is_better=True, replacement=replacement, num_samples=997, seed=2)
    assert_distributed_contract(make, num_replicas, drop_last)


def test_determinism_and_resume(scores):
    make = functools.partial(QualityWeightedSampler, scores, higher_is_better=True, temperature=2.0, seed=11)
    assert_deterministic(make)
    assert_resumes(make, epoch=4, stop_after=500)
    without = functools.partial(
        QualityWeightedSampler,
        scores,
        higher_is_better=True,
        replacement=False,
        num_samples=300,
        seed=11,
        num_replicas=3,
        rank=2,
    )
    assert_resumes(without, epoch=0, stop_after=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"weight_fn": lambda s: s - 0.5},
            ValueError,
            "weights should be non-negative, but got weights\\[\\d+\\]=-0.\\d+",
        ),
        (
            {"weight_fn": lambda s: s * 0},
            ValueError,
            "weights should have a positive sum, but got weights all zero",
        ),
        (
            {"weight_fn": lambda s: s[:10]},
            ValueError,
            "weights should have one entry per sample \\(1000\\), but got weights.shape=\\(10,\\)",
        ),
        (
            {"weight_fn": lambda s: s * float("nan")},
            ValueError,
            "weights should be finite",
        ),
        ({"weight_fn": 3}, TypeError, "weight_fn should be callable or None"),
        (
            {"temperature": -0.5},
            ValueError,
            "temperature should be a finite float >= 0, but got temperature=-0.5",
        ),
        ({"temperature": "hot"}, TypeError, "temperature should be a real number, but got temperature of type str"),
        (
            {"favour": "medium"},
            ValueError,
            "favour should be one of \\{'easy', 'hard'\\}",
        ),
        (
            {"replacement": False, "num_samples": 1001},
            ValueError,
            "weights should have at least num_samples=1001 positive entries without replacement, but got 1000",
        ),
        (
            {"higher_is_better": "yes"},
            TypeError,
            "higher_is_better should be a bool or None",
        ),
    ],
)
def test_bad_arguments_are_refused(scores, kwargs, error, match):
    with pytest.raises(error, match=match):
        QualityWeightedSampler(scores, **{"higher_is_better": True, **kwargs})


def test_plain_scores_need_a_direction_for_temperature_weights_only(scores):
    with pytest.raises(TypeError, match="higher_is_better should be given \\(True or False\\) when scores is a plain array"):
        QualityWeightedSampler(scores, temperature=0.5)
    custom = QualityWeightedSampler(scores, weight_fn=lambda s: s, seed=0)  # raw scores: no direction to assume
    assert custom.higher_is_better is None
    torch.testing.assert_close(custom.weights, scores / scores.sum())


@pytest.mark.parametrize(("favour", "higher_is_better", "expected"), [("easy", True, 9), ("hard", True, 0), ("easy", False, 0)])
def test_zero_temperature_draws_only_the_extreme_score(favour, higher_is_better, expected):
    sampler = QualityWeightedSampler(torch.arange(10.0), temperature=0, favour=favour, higher_is_better=higher_is_better, seed=0)
    assert set(sampler) == {expected}


def test_a_trillion_draws_per_epoch_cost_no_more_memory_than_a_million():
    # Drawn at once, 10**12 draws would need 16 TB (variates plus indices); lazily, one chunk at a time.
    scores = torch.linspace(0, 1, 1000, dtype=torch.float64)
    sampler = QualityWeightedSampler(scores, higher_is_better=True, num_samples=10**12, temperature=0.5, seed=0, num_replicas=3, rank=1)
    assert sampler.lazy and len(sampler) == -(-(10**12) // 3)
    head = list(itertools.islice(sampler, 30_000))
    counts = torch.bincount(torch.tensor(head), minlength=1000).double()
    expected = sampler.weights * 30_000
    assert stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3
    with pytest.raises(ValueError, match=r"num_samples should be at most 16777216 to build an epoch's draw at once"):
        sampler.rank_indices()


@pytest.fixture
def small_chunks(monkeypatch):
    """Lazy drawing from 1,000 draws on, in chunks of 128: the chunk logic at a size the contract checks can list."""
    monkeypatch.setattr(weighted_module, "_EAGER_DRAWS", 1000)
    monkeypatch.setattr(weighted_module, "_LAZY_CHUNK", 128)


@pytest.mark.parametrize(("num_replicas", "drop_last"), [(1, False), (3, False), (3, True), (7, False)])
def test_lazy_draws_shard_and_resume_like_eager_ones(small_chunks, num_replicas, drop_last):
    scores = torch.rand(50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def make(**kw):
        return QualityWeightedSampler(scores, higher_is_better=True, num_samples=1001, seed=4, **kw)

    assert make().lazy
    assert_distributed_contract(make, num_replicas=num_replicas, drop_last=drop_last)
    assert_resumes(functools.partial(make, num_replicas=num_replicas, rank=num_replicas - 1, drop_last=drop_last), epoch=2, stop_after=130)
    assert draws(make, 3) == draws(make, 3) and draws(make, 3) != draws(make, 4)
    single = draws(make, 0)
    assert len(single) == 1001 and len(set(single)) == 50


def test_lazy_online_sampler_accepts_every_index_of_positive_weight(small_chunks):
    weights = torch.ones(50, dtype=torch.float64)
    weights[7] = 0
    sampler = QualityWeightedSampler(torch.arange(50.0), weight_fn=lambda s: weights, higher_is_better=True, num_samples=2000,
                                     online=OnlineDifficulty())
    next(iter(sampler))
    sampler.update([3, 49], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"indices should be drawn by this rank"):
        sampler.update([7], [1.0])
