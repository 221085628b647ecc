"""mixed_quality: one line from stored scores to a configured sampler, defaults from one table."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from qualoader.data import ScoreStore
from qualoader.metrics import create_metric
from qualoader.recipes import MIXED_QUALITY, STRATEGIES, mixed_quality
from qualoader.samplers import CurriculumSampler, QualityStratifiedSampler, QualityWeightedSampler

N = 400


def _scores() -> torch.Tensor:
    return torch.rand(N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _hardest_quartile(scores: torch.Tensor, higher_is_better: bool) -> set[int]:
    order = torch.argsort(scores if higher_is_better else -scores, stable=True)
    return set(order[: N // 4].tolist())


def test_defaults_are_the_table_and_nothing_else():
    signature = inspect.signature(mixed_quality)
    for field in MIXED_QUALITY.__dataclass_fields__:
        assert signature.parameters[field].default == getattr(MIXED_QUALITY, field), field
    assert MIXED_QUALITY.strategy in STRATEGIES


def test_default_recipe_on_a_score_table_favours_the_hard_samples(tmp_path):
    table = ScoreStore(tmp_path, length=N).table(create_metric("sharpness"), create=True)  # higher is better
    table.write(list(range(N)), _scores().tolist())
    sampler = mixed_quality(table)
    assert isinstance(sampler, QualityWeightedSampler) and sampler.favour == "hard" and sampler.temperature == 1.0
    drawn = torch.tensor(list(sampler))
    assert len(drawn) == N, "an epoch costs what a RandomSampler epoch costs"
    # Rank-softmax at T = 1: the hardest quarter gets far more than its 25% of the draws.
    assert sum(int(i) in _hardest_quartile(_scores(), True) for i in drawn) / N > 0.4
    assert float(_scores()[drawn].mean()) < 0.4


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_stratified_proportions_are_hardest_first_whatever_the_direction(higher_is_better):
    scores = _scores() if higher_is_better else -_scores()
    sampler = mixed_quality(scores, higher_is_better=higher_is_better, strategy="stratified", proportions=(0.7, 0.1, 0.1, 0.1))
    assert isinstance(sampler, QualityStratifiedSampler)
    drawn = list(sampler)
    share = sum(i in _hardest_quartile(scores, higher_is_better) for i in drawn) / len(drawn)
    assert share == pytest.approx(0.7, abs=1 / N)


def test_curriculum_starts_easy_and_admits_everything_after_full_at_epochs():
    sampler = mixed_quality(_scores(), higher_is_better=True, strategy="curriculum", start_fraction=0.25, full_at_epochs=0.5)
    assert isinstance(sampler, CurriculumSampler) and sampler.full_at == N // 2 and len(sampler) == N
    drawn = list(sampler)
    position = torch.argsort(torch.argsort(_scores(), descending=True))  # 0: the easiest (highest score)
    for k, index in enumerate(drawn):
        admitted = math.ceil((0.25 + 0.75 * min(1.0, k / (N // 2))) * N)  # linear pacing, draw by draw
        assert position[index] < admitted, k
    assert int(position[torch.tensor(drawn[:20])].max()) < 0.35 * N, "the first draws come from about the easiest quarter"
    assert len(set(drawn[N // 2 :])) > N // 4, "after half an epoch every sample can be drawn"


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_prior_strength_turns_on_loss_feedback(strategy):
    plain = mixed_quality(_scores(), higher_is_better=True, strategy=strategy)
    online = mixed_quality(_scores(), higher_is_better=True, strategy=strategy, prior_strength=1.0)
    assert plain.feedback is None and online.feedback is not None and online.feedback.policy.prior_strength == 1.0
    drawn = list(online)
    assert drawn == list(plain), "without updates the online recipe draws as the plain one"
    online.update(drawn[:8], torch.arange(8.0))
    assert int(online.feedback.counts.sum()) == 8


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match=r"strategy should be one of \{'curriculum', 'stratified', 'weighted'\}, but got strategy='prune'"):
        mixed_quality(_scores(), higher_is_better=True, strategy="prune")
    with pytest.raises(TypeError, match="higher_is_better should be given"):
        mixed_quality(_scores())
    with pytest.raises(ValueError, match="full_at_epochs should be > 0"):
        mixed_quality(_scores(), higher_is_better=True, strategy="curriculum", full_at_epochs=0)
    with pytest.raises(ValueError, match="proportions should sum to 1"):
        mixed_quality(_scores(), higher_is_better=True, strategy="stratified", proportions=(0.5, 0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="prior_strength should be > 0"):
        mixed_quality(_scores(), higher_is_better=True, prior_strength=-1.0)
    with pytest.raises(ValueError, match="favour should be one of"):
        mixed_quality(_scores(), higher_is_better=True, favour="medium")
