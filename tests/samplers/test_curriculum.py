"""Curriculum sampler: the admitted pool follows the pacing function, from easy to hard."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from sampler_contract import (
    assert_deterministic,
    assert_distributed_contract,
    assert_resumes,
)

from qualoader.samplers import PACINGS, CurriculumSampler, pacing_fraction


def _rank_of(sampler: CurriculumSampler) -> torch.Tensor:
    rank = torch.empty_like(sampler.ranking)
    rank[sampler.ranking] = torch.arange(sampler.ranking.numel())
    return rank


@pytest.mark.parametrize("pacing", sorted(PACINGS))
def test_named_pacings_rise_from_the_start_fraction_to_one(pacing):
    progress = torch.linspace(0, 1, 101, dtype=torch.float64)
    fraction = pacing_fraction(pacing, progress, 0.2)
    assert float(fraction[0]) == pytest.approx(0.2) and float(fraction[-1]) == pytest.approx(1.0)
    assert bool((fraction.diff() >= 0).all())
    assert bool((pacing_fraction(pacing, torch.tensor([1.5], dtype=torch.float64), 0.2) == 1).all())


@pytest.mark.parametrize("pacing", sorted(PACINGS))
def test_each_epoch_is_one_pass_over_exactly_the_easiest_k(scores, pacing):
    sampler = CurriculumSampler(scores, higher_is_better=True, pacing=pacing, start_fraction=0.1, full_at=5, seed=0)
    easiest_first = torch.argsort(-scores, stable=True)
    sizes = []
    for epoch in range(7):
        sampler.set_epoch(epoch)
        k = math.ceil(float(pacing_fraction(pacing, torch.tensor([epoch / 5], dtype=torch.float64), 0.1)[0]) * 1000 - 1e-9)
        drawn = list(sampler)
        assert len(drawn) == len(sampler) == k
        assert sorted(drawn) == sorted(easiest_first[:k].tolist())
        sizes.append(k)
    assert sizes[0] == 100 and sizes[5:] == [1000, 1000], "everything admitted by full_at"
    assert sizes == sorted(sizes)


def test_hard_to_easy_and_lower_is_better_orders(scores):
    anti = CurriculumSampler(scores, higher_is_better=True, order="hard-to-easy", start_fraction=0.3, seed=0)
    assert sorted(anti) == sorted(torch.argsort(scores, stable=True)[:300].tolist())
    lower_better = CurriculumSampler(scores, higher_is_better=False, start_fraction=0.3, seed=0)
    assert sorted(lower_better) == sorted(anti)


def test_pace_by_sample_admits_only_the_easiest_k_at_each_draw(scores):
    sampler = CurriculumSampler(
        scores,
        higher_is_better=True,
        pace_by="sample",
        pacing="linear",
        start_fraction=0.05,
        full_at=1500,
        seed=3,
    )
    rank = _rank_of(sampler)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        drawn = torch.tensor(list(sampler))
        steps = epoch * 1000 + torch.arange(1000, dtype=torch.float64)
        limits = sampler.pool_size(steps / 1500)
        assert bool((rank[drawn] < limits).all())
    assert int(limits[-1]) == 1000
    late = drawn[600:]
    assert int(rank[late].max()) > 900, "the hardest samples appear once admitted"


def test_fixed_num_samples_cycles_the_pool(scores):
    sampler = CurriculumSampler(scores, higher_is_better=True, start_fraction=0.1, num_samples=250, seed=0)
    drawn = torch.tensor(list(sampler))
    assert drawn.numel() == 250 and bool(torch.bincount(drawn).max() <= 3)
    assert set(drawn.tolist()) == set(sampler.admitted().tolist())


def test_callable_pacing_is_used_and_forced_to_one_at_full_at(scores):
    sampler = CurriculumSampler(scores, higher_is_better=True, pacing=lambda t: 0.5 + 0.25 * t, full_at=4)
    assert [sampler.pool_size(e / 4) for e in range(5)] == [500, 563, 625, 688, 1000]
    broken = CurriculumSampler(scores, higher_is_better=True, pacing=lambda t: 2.0)
    with pytest.raises(
        ValueError,
        match="pacing should return fractions in \\(0, 1\\], but got values in \\[2, 2\\]",
    ):
        len(broken)


@pytest.mark.parametrize("pace_by", ["epoch", "sample"])
@pytest.mark.parametrize("num_replicas", [2, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_curriculum_follows_the_distributed_sampler_contract(scores, pace_by, num_replicas, drop_last):
    make = functools.partial(
        CurriculumSampler,
        scores,
        higher_is_better=True,
        pace_by=pace_by,
        start_fraction=0.333,
        full_at=3000,
        seed=4,
    )
    assert_distributed_contract(make, num_replicas, drop_last)


@pytest.mark.parametrize("pace_by", ["epoch", "sample"])
def test_determinism_and_resume(scores, pace_by):
    make = functools.partial(CurriculumSampler, scores, higher_is_better=True, pace_by=pace_by, full_at=5, seed=9)
    assert_deterministic(make)
    assert_resumes(make, epoch=2, stop_after=77)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"pacing": "cosine"},
            ValueError,
            "pacing should be one of \\{'exp', 'linear', 'root', 'step'\\}, but got pacing='cosine'",
        ),
        (
            {"start_fraction": 0.0},
            ValueError,
            "start_fraction should be in \\(0, 1\\], but got start_fraction=0.0",
        ),
        (
            {"full_at": 0},
            ValueError,
            "full_at should be a positive int, but got full_at=0",
        ),
        (
            {"pace_by": "step"},
            ValueError,
            "pace_by should be one of \\{'epoch', 'sample'\\}",
        ),
        (
            {"order": "random"},
            ValueError,
            "order should be one of \\{'easy-to-hard', 'hard-to-easy'\\}",
        ),
        (
            {"num_samples": -5},
            ValueError,
            "num_samples should be a positive int, but got num_samples=-5",
        ),
    ],
)
def test_bad_arguments_are_refused(scores, kwargs, error, match):
    with pytest.raises(error, match=match):
        CurriculumSampler(scores, higher_is_better=True, **kwargs)


def test_nan_scores_are_refused():
    with pytest.raises(
        ValueError,
        match="scores should be finite, but got scores with 1 NaN/Inf values \\(first at index 2\\)",
    ):
        CurriculumSampler([0.3, 0.1, float("inf")], higher_is_better=True)
