"""Online difficulty: the samplers take per-sample losses and hand over from the stored prior to them."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from sampler_contract import assert_resumes

from qualoader.samplers import (
    CurriculumSampler,
    LossFeedback,
    OnlineDifficulty,
    QualitySampler,
    QualityStratifiedBatchSampler,
    QualityStratifiedSampler,
    QualityWeightedSampler,
)

N = 400


def _prior() -> torch.Tensor:
    """Scores (N,), higher is better, seeded."""
    return torch.rand(N, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


#: Samples the "training loop" finds hard whatever the prior says: every 10th index.
HARD_BY_LOSS = torch.arange(0, N, 10)


def _loss(index: int) -> float:
    # High for every 10th sample, low and slightly varied (no ties) for the others.
    return 5.0 + index / N if index % 10 == 0 else 0.1 + index / (10 * N)


MAKERS: dict[str, Callable[..., QualitySampler[Any]]] = {
    "weighted": lambda **kw: QualityWeightedSampler(_prior(), higher_is_better=True, favour="hard", temperature=0.5, seed=5, **kw),
    "weighted-no-replacement": lambda **kw: QualityWeightedSampler(
        _prior(), higher_is_better=True, replacement=False, num_samples=N // 2, seed=5, **kw
    ),
    "stratified": lambda **kw: QualityStratifiedSampler(_prior(), 4, proportions=[0.1, 0.2, 0.3, 0.4], higher_is_better=True, seed=5, **kw),
    "stratified-edges": lambda **kw: QualityStratifiedSampler(
        _prior(), edges=[0.3, 0.6], proportions=[0.2, 0.3, 0.5], higher_is_better=True, seed=5, **kw
    ),
    "stratified-batch": lambda **kw: QualityStratifiedBatchSampler(
        _prior(), 8, 4, proportions=[0.1, 0.2, 0.3, 0.4], higher_is_better=True, seed=5, **kw
    ),
    "curriculum": lambda **kw: CurriculumSampler(_prior(), higher_is_better=True, start_fraction=0.3, full_at=4, seed=5, **kw),
    "curriculum-by-sample": lambda **kw: CurriculumSampler(
        _prior(), higher_is_better=True, start_fraction=0.3, full_at=3 * N, pace_by="sample", seed=5, **kw
    ),
}


def _feed(sampler: QualitySampler[Any], item: Any) -> None:
    batch = item if isinstance(item, list) else [item]
    sampler.update(batch, [_loss(i) for i in batch])


def _epoch(sampler: QualitySampler[Any], epoch: int, feed: bool = True) -> list[Any]:
    sampler.set_epoch(epoch)
    items = list(sampler)
    if feed:
        flat = [i for item in items for i in (item if isinstance(item, list) else [item])]
        sampler.update(flat, [_loss(i) for i in flat])
    return items


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_without_updates_an_online_sampler_draws_bit_for_bit_as_before(kind):
    plain, online = MAKERS[kind](), MAKERS[kind](online=OnlineDifficulty())
    for epoch in range(3):
        assert _epoch(online, epoch, feed=False) == _epoch(plain, epoch, feed=False)
    assert {k: v for k, v in online.state_dict().items() if k in ("epoch", "position", "seed")} == plain.state_dict()


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_the_first_epoch_follows_the_prior_and_losses_count_from_the_next(kind):
    plain, online = MAKERS[kind](), MAKERS[kind](online=OnlineDifficulty())
    assert _epoch(online, 0) == _epoch(plain, 0, feed=False), "updates during an epoch leave its draw as it was"
    assert int(online.feedback.counts.sum()) > 0
    assert _epoch(online, 1, feed=False) != _epoch(plain, 1, feed=False), "the next epoch draws from the blended scores"


def _share_hard(items: list[Any]) -> float:
    flat = torch.tensor([i for item in items for i in (item if isinstance(item, list) else [item])])
    return float(torch.isin(flat, HARD_BY_LOSS).double().mean())


@pytest.mark.parametrize("kind", ["weighted", "stratified"])
def test_samples_hard_by_loss_are_favoured_more_as_they_are_observed(kind):
    # The weighted sampler favours hard samples; the stratified one gives 40% of each epoch to the top stratum of
    # "higher is better" scores and 10% to the bottom: hard-by-loss samples move to the bottom stratum, so they
    # must become rarer there. Either way the share must move monotonically away from the prior's as losses
    # accumulate, and the prior's share is what the plain sampler gives.
    online, plain = MAKERS[kind](online=OnlineDifficulty()), MAKERS[kind]()
    prior_share = np.mean([_share_hard(_epoch(plain, e, feed=False)) for e in range(6)])
    shares = [_share_hard(_epoch(online, epoch)) for epoch in range(6)]
    if kind == "weighted":
        assert shares[1] > prior_share + 0.05 and np.mean(shares[3:]) > shares[1]
    else:
        assert shares[1] < prior_share - 0.01 and np.mean(shares[3:]) < shares[1]


def test_curriculum_pool_ranks_samples_again_by_their_blended_score():
    sampler = MAKERS["curriculum"](online=OnlineDifficulty(prior_strength=0.25))
    first_pool = set(sampler.admitted().tolist())
    _epoch(sampler, 0)
    sampler.set_epoch(1)
    list(sampler)
    pool = set(sampler.admitted().tolist())
    hard = set(HARD_BY_LOSS.tolist())
    # Observed hard-by-loss samples of the first pool fall down the ranking (weight 0.8 on their loss).
    assert len(first_pool & hard) > 5 and len(pool & hard & first_pool) < len(first_pool & hard) / 3


def test_blend_by_hand_on_four_samples():
    # Prior lower-is-better [0, 1, 2, 3]: the easy-to-hard ladder is [0, 1, 2, 3]. Sample 0 gets the larger loss,
    # sample 3 the smaller: mid-rank quantiles 0.75 and 0.25 read the ladder at positions 3 and 1.
    feedback = LossFeedback(torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64), False, OnlineDifficulty())
    feedback.record(torch.tensor([0, 3]), torch.tensor([5.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(feedback.scores(), torch.tensor([1.5, 1.0, 2.0, 2.0], dtype=torch.float64), rtol=0, atol=0)
    # Observed again (weight 2/3) with momentum 0: the last loss counts; a duplicated index counts its mean loss.
    feedback.record(torch.tensor([0, 0, 3]), torch.tensor([0.0, 2.0, 4.0], dtype=torch.float64))
    assert feedback.counts.tolist() == [3, 0, 0, 2] and feedback.losses.tolist() == [1.0, 0.0, 0.0, 4.0]
    torch.testing.assert_close(feedback.scores(), torch.tensor([0.75, 1.0, 2.0, 3.0], dtype=torch.float64), rtol=0, atol=1e-12)


def test_momentum_averages_losses_and_higher_is_better_reads_the_ladder_downwards():
    prior = torch.tensor([10.0, 20.0, 30.0], dtype=torch.float64)  # higher is better: 10 is the hardest
    feedback = LossFeedback(prior, True, OnlineDifficulty(prior_strength=3.0, momentum=0.5))
    feedback.record(torch.tensor([2, 1]), torch.tensor([4.0, 1.0], dtype=torch.float64))
    feedback.record(torch.tensor([2]), torch.tensor([0.0], dtype=torch.float64))
    assert feedback.losses.tolist() == [0.0, 1.0, 2.0]
    # Sample 2 (loss 2, quantile 0.75 -> ladder [30, 20, 10][2] = 10, weight 2/5); sample 1 (quantile 0.25 -> 30, weight 1/4).
    torch.testing.assert_close(feedback.scores(), torch.tensor([10.0, 0.75 * 20 + 0.25 * 30, 0.6 * 30 + 0.4 * 10], dtype=torch.float64))


def test_unobserved_samples_keep_the_prior_exactly():
    sampler = MAKERS["weighted"](online=OnlineDifficulty())
    _epoch(sampler, 0)
    observed = sampler.feedback.counts > 0
    assert 0 < int(observed.sum()) < N
    scores = sampler.feedback.scores()
    assert torch.equal(scores[~observed], _prior()[~observed])
    assert bool((scores[observed] != _prior()[observed]).any())


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_state_round_trip_mid_epoch_with_feedback(kind):
    def make() -> QualitySampler[Any]:
        sampler = MAKERS[kind](online=OnlineDifficulty(momentum=0.3))
        _epoch(sampler, 0)  # a history of losses, so epoch 1 draws from blended scores
        return sampler

    assert_resumes(make, epoch=1, stop_after=7, feed=_feed)


def _snapshot(sampler: QualitySampler[Any]) -> dict[str, Any]:
    state = sampler.state_dict()
    return {key: value.state_dict() if hasattr(value, "state_dict") else value for key, value in state.items()}


def _same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    flat_a, flat_b = dict(a), dict(b)
    online_a, online_b = flat_a.pop("online"), flat_b.pop("online")
    scores_a, scores_b = flat_a.pop("epoch_scores"), flat_b.pop("epoch_scores")
    return (
        flat_a == flat_b
        and torch.equal(scores_a, scores_b)
        and all(torch.equal(online_a[key], online_b[key]) for key in ("counts", "losses"))
    )


BAD_UPDATES = [
    ("indices", lambda drawn: ([N + 3], [1.0]), ValueError, r"indices should be in \[0, 399\], but got indices\[0\]=403"),
    ("indices", lambda drawn: ([-1], [1.0]), ValueError, r"indices should be in \[0, 399\], but got indices\[0\]=-1"),
    ("indices", lambda drawn: ([drawn[0], "x"], [1.0, 2.0]), TypeError, "indices should hold integers"),
    ("indices", lambda drawn: ([1.5], [1.0]), TypeError, "indices should hold integers"),
    ("indices", lambda drawn: (torch.tensor([[drawn[0]]]), [1.0]), ValueError, r"indices should be 1-D of shape \(B,\)"),
    ("indices", lambda drawn: ({drawn[0]}, [1.0]), TypeError, "indices should be a 1-D tensor"),
    ("losses", lambda drawn: (drawn[:2], [1.0, float("nan")]), ValueError, r"losses should be finite, but got losses\[1\]=nan"),
    ("losses", lambda drawn: (drawn[:2], [float("inf"), 1.0]), ValueError, r"losses should be finite, but got losses\[0\]=inf"),
    ("losses", lambda drawn: (drawn[:3], [1.0, 2.0]), ValueError, r"losses should have one entry per index \(3\)"),
    ("losses", lambda drawn: (drawn[:2], torch.ones(2, 1)), ValueError, r"losses should be 1-D of shape \(B,\)"),
    ("losses", lambda drawn: (drawn[:1], torch.tensor(1.0)), ValueError, r"losses should be 1-D"),
    ("losses", lambda drawn: (drawn[:1], ["a"]), TypeError, "losses should hold real numbers"),
    ("losses", lambda drawn: (drawn[:1], [True]), TypeError, "losses should hold real numbers"),
]


@pytest.mark.parametrize(("name", "make_args", "error", "match"), BAD_UPDATES)
def test_bad_updates_name_the_argument_and_change_nothing(name, make_args, error, match):
    sampler = MAKERS["weighted"](online=OnlineDifficulty())
    _epoch(sampler, 0)
    sampler.set_epoch(1)
    iterator = iter(sampler)
    drawn = [next(iterator) for _ in range(5)]
    sampler.update(drawn[:2], [3.0, 4.0])  # a good update, so the state is not trivial
    before = _snapshot(sampler)
    with pytest.raises(error, match=match):
        sampler.update(*make_args(drawn))
    assert _same_state(_snapshot(sampler), before)
    # The draw goes on exactly as an untouched twin's.
    twin = MAKERS["weighted"](online=OnlineDifficulty())
    twin.load_state_dict(sampler.state_dict())
    assert list(iterator) == list(twin)


def test_indices_not_drawn_by_this_rank_this_epoch_are_refused():
    ranks = [MAKERS["curriculum"](online=OnlineDifficulty(), num_replicas=2, rank=rank) for rank in range(2)]
    draws = [set(_epoch(sampler, 0, feed=False)) for sampler in ranks]
    other = sorted(draws[1] - draws[0])[0]
    never = sorted(set(range(N)) - draws[0] - draws[1])[0]  # outside the curriculum's pool this epoch
    for index in (other, never):
        before = _snapshot(ranks[0])
        match = rf"indices should be drawn by this rank \(rank 0\) in the current epoch 0, but got indices\[1\]={index}"
        with pytest.raises(ValueError, match=match):
            ranks[0].update([sorted(draws[0])[0], index], [1.0, 2.0])
        assert _same_state(_snapshot(ranks[0]), before)


def test_update_before_any_draw_or_without_online_is_refused():
    with pytest.raises(ValueError, match="indices should come from this rank's draw of the current epoch"):
        MAKERS["weighted"](online=OnlineDifficulty()).update([0], [1.0])
    plain = MAKERS["weighted"]()
    list(plain)
    with pytest.raises(TypeError, match="online should be an OnlineDifficulty to call update"):
        plain.update([0], [1.0])
    online = MAKERS["weighted"](online=OnlineDifficulty())
    drawn = list(online)
    with pytest.raises(ValueError, match="gather should be False or None when torch.distributed is not initialised"):
        online.update(drawn[:1], [1.0], gather=True)
    with pytest.raises(TypeError, match="gather should be a bool or None"):
        online.update(drawn[:1], [1.0], gather=1)
    assert int(online.feedback.counts.sum()) == 0


def test_update_accepts_tensors_on_any_dtype_and_empty_batches():
    sampler = MAKERS["weighted"](online=OnlineDifficulty())
    drawn = list(sampler)[:4]
    sampler.update(torch.tensor(drawn, dtype=torch.int32), torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True))
    sampler.update([], [])
    sampler.update(np.array(drawn[:1]), np.array([2], dtype=np.int64))
    sampler.update(torch.tensor(drawn[:2]), torch.tensor([0.5, 1.5], dtype=torch.bfloat16))  # mixed-precision losses
    assert int(sampler.feedback.counts.sum()) == 7
    assert float(sampler.feedback.losses[drawn[1]]) == 1.5


def test_restored_sampler_may_take_losses_of_the_resumed_epoch_before_iterating():
    sampler = MAKERS["stratified"](online=OnlineDifficulty())
    iterator = iter(sampler)
    drawn = [next(iterator) for _ in range(3)]
    state = sampler.state_dict()
    restored = MAKERS["stratified"](online=OnlineDifficulty())
    restored.load_state_dict(state)
    restored.update(drawn, [1.0, 2.0, 3.0])  # the last batch's losses arrive after the checkpoint
    assert int(restored.feedback.counts.sum()) == 3


def test_bad_online_state_is_refused_and_changes_nothing():
    sampler = MAKERS["curriculum"](online=OnlineDifficulty())
    _epoch(sampler, 0)
    good = sampler.state_dict()
    before = _snapshot(sampler)
    bad_states = [
        {**good, "online": {**good["online"], "counts": -good["online"]["counts"] - 1}},
        {**good, "online": {**good["online"], "losses": good["online"]["losses"][:-1]}},
        {**good, "online": {"counts": good["online"]["counts"]}},
        {**good, "epoch_scores": torch.full((N,), float("nan"), dtype=torch.float64)},
        {**good, "epoch_scores": good["epoch_scores"].float()},
        {key: value for key, value in good.items() if key != "online"},
    ]
    for bad in bad_states:
        with pytest.raises(ValueError, match=r"state"):
            sampler.load_state_dict(bad)
        assert _same_state(_snapshot(sampler), before)
    plain_state = MAKERS["curriculum"]().state_dict()
    with pytest.raises(ValueError, match="state should have keys"):
        sampler.load_state_dict(plain_state)


def test_online_needs_a_direction_and_a_policy():
    with pytest.raises(TypeError, match="higher_is_better should be given"):
        QualityStratifiedSampler(_prior(), 4, online=OnlineDifficulty())
    with pytest.raises(TypeError, match="higher_is_better should be given"):
        QualityWeightedSampler(_prior(), weight_fn=lambda s: s, online=OnlineDifficulty())
    with pytest.raises(TypeError, match="online should be an OnlineDifficulty or None"):
        CurriculumSampler(_prior(), higher_is_better=True, online=2.0)
    online = MAKERS["weighted"](online=OnlineDifficulty())
    with pytest.raises(ValueError, match="online should be None to set weights by hand"):
        online.set_weights(torch.ones(N))


def test_stratified_edges_keep_their_sizes_while_samples_move_between_them():
    # Higher is better; the top stratum (>= 0.85) holds samples 17, 18, 19. They get the largest losses: blended
    # towards the hard end they would leave the top stratum empty (its quota of half the epoch undrawable).
    prior = torch.linspace(0, 1, 20, dtype=torch.float64)
    sampler = QualityStratifiedSampler(
        prior, edges=[0.85], proportions=[0.5, 0.5], num_samples=100, higher_is_better=True, online=OnlineDifficulty(0.1)
    )
    assert sampler.strata.tolist() == [0] * 17 + [1] * 3
    drawn = sorted(set(list(sampler)))
    assert drawn == list(range(20))
    sampler.update(drawn, [10.0 + i if i >= 17 else 1.0 - i / 20 for i in drawn])  # others: loss agrees with the prior
    sampler.set_epoch(1)
    epoch = list(sampler)
    assert int(sampler.strata.sum()) == 3, "the top stratum keeps its three places"
    top = set(sampler.strata.nonzero().flatten().tolist())
    assert top == {14, 15, 16}, "taken by the next easiest, by loss and prior alike"
    assert sum(i in top for i in epoch) == 50, "and it still gets half of the epoch"
    assert not {17, 18, 19} & top


def test_online_state_survives_torch_save_with_weights_only():
    sampler = MAKERS["curriculum"](online=OnlineDifficulty())
    _epoch(sampler, 0)
    sampler.set_epoch(1)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(5)]
    buffer = io.BytesIO()
    torch.save(sampler.state_dict(), buffer)
    buffer.seek(0)
    restored = MAKERS["curriculum"](online=OnlineDifficulty())
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert len(head) == 5 and list(restored) == list(iterator), "the rest of the epoch, as the original goes on"
