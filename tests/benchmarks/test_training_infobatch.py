"""The InfoBatch-style arm of the training benchmark: who is pruned, how much, and that the rescaled gradient is unbiased."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from benchmarks.training.infobatch import InfoBatchPlan


def _observed(num: int, seed: int = 0) -> tuple[InfoBatchPlan, torch.Tensor]:
    """A plan over ``num`` samples whose every loss has been observed (losses drawn from an exponential law)."""
    plan = InfoBatchPlan(num, prune=0.5, epochs=8, seed=seed)
    losses = torch.empty(num, dtype=torch.float64).exponential_(generator=torch.Generator().manual_seed(seed))
    plan.update(torch.arange(num), losses)
    return plan, losses


def test_first_epoch_keeps_everything_at_weight_one() -> None:
    plan = InfoBatchPlan(1000, prune=0.5, epochs=8, seed=3)
    order, weights = plan.epoch(0)
    assert sorted(order.tolist()) == list(range(1000))  # nothing observed yet: a full shuffled pass
    assert order.tolist() != list(range(1000))
    assert torch.equal(weights, torch.ones(1000))


def test_pruned_share_and_weights() -> None:
    num, prune = 20000, 0.5
    plan, losses = _observed(num)
    order, weights = plan.epoch(1)
    low = losses < losses.mean()
    kept = torch.zeros(num, dtype=torch.bool)
    kept[order] = True
    assert kept.numel() == num and order.unique().numel() == order.numel()  # no sample twice in an epoch
    assert bool(kept[~low].all()), "a sample at or above the mean loss is never pruned"
    pruned_share = float((~kept[low]).double().mean())
    sigma = math.sqrt(prune * (1 - prune) / int(low.sum()))
    assert abs(pruned_share - prune) < 4 * sigma  # binomial: each well-learned sample is pruned with probability prune
    by_index = torch.ones(num)
    by_index[order] = weights
    assert torch.allclose(by_index[kept & low], torch.full((int((kept & low).sum()),), 1 / (1 - prune)))
    assert torch.equal(by_index[~low], torch.ones(int((~low).sum())))
    assert len(order) == num - int((~kept).sum())


def test_unobserved_samples_are_kept_at_weight_one() -> None:
    plan = InfoBatchPlan(100, prune=0.9, epochs=8, seed=0)
    plan.update(torch.arange(50), torch.linspace(0, 1, 50))  # only the first half was seen
    order, weights = plan.epoch(1)
    assert set(range(50, 100)) <= set(order.tolist())
    assert torch.equal(weights[order >= 50], torch.ones(50))
    assert len(order) < 100  # some of the seen low-loss samples were pruned


def test_last_epochs_train_on_the_full_data() -> None:
    plan, _ = _observed(2000)
    assert plan.full_from == 7  # epochs e >= 0.875 * 8: the last one
    order, weights = plan.epoch(7)
    assert sorted(order.tolist()) == list(range(2000)) and torch.equal(weights, torch.ones(2000))
    assert len(plan.epoch(6)[0]) < 2000
    assert InfoBatchPlan(10, prune=0.5, epochs=16, seed=0).full_from == 14
    assert InfoBatchPlan(10, prune=0.5, epochs=2, seed=0).full_from == 2  # 1 >= 1.75 is false: no annealed epoch
    assert InfoBatchPlan(10, prune=0.5, epochs=5, anneal=0.0, seed=0).full_from == 5  # no annealing: every epoch prunes


def test_rescaled_objective_is_unbiased() -> None:
    """Averaged over pruning draws, every sample counts once in the rescaled objective (so in its gradient); unrescaled, 1 - r."""
    num, prune, draws = 400, 0.5, 400
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(num, 5, generator=generator)
    targets = torch.randint(0, 3, (num,), generator=generator)
    weight = torch.randn(3, 5, generator=generator)
    losses = F.cross_entropy(inputs @ weight.T, targets, reduction="none")
    plan = InfoBatchPlan(num, prune=prune, epochs=10_000, seed=1)
    plan.update(torch.arange(num), losses)
    low = plan.well_learned()
    counted = torch.zeros(num, dtype=torch.float64)  # sum over draws of weight * kept, per sample
    kept_only = torch.zeros(num, dtype=torch.float64)
    rescaled_total = 0.0
    for epoch in range(1, draws + 1):
        order, weights = plan.epoch(epoch)
        counted[order] += weights.double()
        kept_only[order] += 1.0
        rescaled_total += float((losses[order] * weights).sum()) / draws
    counted /= draws
    kept_only /= draws
    # Per well-learned sample: mean of w * kept is 1 (sd of one draw sqrt(r / (1 - r)) = 1, so 0.05 after 400 draws).
    assert float((counted[low] - 1).abs().max()) < 0.25
    assert abs(float(counted[low].mean()) - 1) < 0.02
    assert torch.equal(counted[~low], torch.ones(int((~low).sum()), dtype=torch.float64))
    assert abs(float(kept_only[low].mean()) - (1 - prune)) < 0.02  # without the rescale they would count 1 - r
    full_total = float(losses.sum())
    assert abs(rescaled_total - full_total) < 0.01 * full_total
    unscaled_gap = float(losses[low].sum()) * prune
    assert abs(rescaled_total - full_total) < 0.1 * unscaled_gap


def test_determinism_and_epochs_differ() -> None:
    first, _ = _observed(500, seed=4)
    second, _ = _observed(500, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first.epoch(2), second.epoch(2)))
    assert not torch.equal(first.epoch(2)[0], first.epoch(3)[0])


def test_update_keeps_the_last_loss() -> None:
    plan = InfoBatchPlan(4, prune=0.5, epochs=4, seed=0)
    plan.update(torch.tensor([0, 1]), torch.tensor([2.0, 3.0]))
    plan.update(torch.tensor([1]), torch.tensor([0.5]))
    assert plan.losses[:2].tolist() == [2.0, 0.5] and bool(plan.losses[2:].isnan().all())
    assert plan.well_learned().tolist() == [False, True, False, False]  # mean of observed = 1.25


@pytest.mark.parametrize(
    "kwargs",
    [{"num_samples": 0}, {"num_samples": True}, {"prune": 1.0}, {"prune": -0.1}, {"epochs": 0}, {"anneal": 1.5}],
)
def test_bad_arguments(kwargs: dict) -> None:
    arguments = {"num_samples": 10, "prune": 0.5, "epochs": 4} | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        InfoBatchPlan(arguments.pop("num_samples"), **arguments)
