"""The feeders of the training benchmark's arms: batch sizes, who is drawn, and the settings grid."""

from __future__ import annotations

import itertools

import pytest
import torch

from benchmarks.training.arms import ARMS, arm_grid, build_feeder, online_available, setting_label

NUM = 1000
# Scores where a higher value is better and sample i has quality i: the hard samples are the low indices.
SCORES = {"q": torch.arange(NUM, dtype=torch.float64)}
HIB = {"q": True}


def _feeder(arm: str, setting: dict, seed: int = 0, epochs: int = 4):
    return build_feeder(arm, setting, scores=SCORES, higher_is_better=HIB, num_samples=NUM, batch_size=64, epochs=epochs, seed=seed)


def _take(arm: str, setting: dict, steps: int, seed: int = 0) -> list[torch.Tensor]:
    return [indices for indices, _ in itertools.islice(_feeder(arm, setting, seed).batches(), steps)]


@pytest.mark.parametrize("arm", [arm for arm in ARMS if arm != "online" or online_available()])
def test_every_setting_gives_full_batches_of_valid_indices(arm: str) -> None:
    for setting in arm_grid(arm, ["q"]):
        batches = _take(arm, setting, 40)  # 2.5 epochs: crosses epoch boundaries
        assert all(batch.numel() == 64 for batch in batches[:15]), setting_label(setting)
        flat = torch.cat(batches)
        assert int(flat.min()) >= 0 and int(flat.max()) < NUM
        assert all(torch.equal(a, b) for a, b in zip(batches, _take(arm, setting, 40)))  # seeded: the same stream again
        assert not all(torch.equal(a, b) for a, b in zip(batches, _take(arm, setting, 40, seed=1)))


def test_random_arm_is_one_permutation_per_epoch() -> None:
    flat = torch.cat(_take("random", {}, 40))
    first = flat[:NUM]
    assert sorted(first.tolist()) == list(range(NUM))


def test_prune_easy_never_draws_the_easiest() -> None:
    flat = torch.cat(_take("prune-easy", {"score": "q", "fraction": 0.3}, 60))
    assert int(flat.max()) < 700  # the 300 highest-quality samples are pruned
    assert flat.unique().numel() == 700  # and every other sample is drawn


def test_weighted_arms_lean_the_right_way() -> None:
    hard = torch.cat(_take("weighted-hard", {"score": "q", "temperature": 1.0}, 40)).double().mean()
    easy = torch.cat(_take("weighted-easy", {"score": "q", "temperature": 1.0}, 40)).double().mean()
    assert float(hard) < 350 < 650 < float(easy)


def test_curriculum_starts_easy_and_anti_curriculum_hard() -> None:
    setting = {"score": "q", "full_at_epochs": 1.0}
    first = torch.cat(_take("curriculum", setting, 3))
    assert int(first.min()) >= NUM - 400  # the pool starts at the easiest 20% and grows with the draws
    anti = torch.cat(_take("anti-curriculum", setting, 3))
    assert int(anti.max()) < 400
    late = torch.cat(_take("curriculum", setting, 60)[-15:])
    assert int(late.min()) < 100  # from one epoch of draws on, the whole set is admitted


def test_stratified_proportions_are_oriented_by_hardness() -> None:
    flat = torch.cat(_take("stratified", {"score": "q", "proportions": "hard-heavy"}, 15))[: 15 * 64]
    quartile = flat // 250  # quartile 0 holds the hardest (lowest-quality) samples
    shares = torch.bincount(quartile, minlength=4).double() / flat.numel()
    assert shares[0] > 0.33 and shares[3] < 0.15


def test_infobatch_feeder_prunes_after_its_first_epoch_and_stops() -> None:
    feeder = _feeder("infobatch", {"prune": 0.5}, epochs=4)
    seen, weighted = 0, 0
    for indices, weights in feeder.batches():
        feeder.feedback(indices, (indices.double() / NUM))  # low index = low loss = well learned
        seen += indices.numel()
        weighted += int((weights > 1).sum())
    # epoch 0 is full; epochs 1-3 (3 >= 0.875 * 4 is false: none annealed) drop about a quarter (half of the below-mean half)
    assert NUM + 3 * 0.70 * NUM < seen < NUM + 3 * 0.80 * NUM
    assert weighted > 0.4 * NUM


@pytest.mark.skipif(not online_available(), reason="the samplers take no online feedback")
def test_online_arm_moves_from_the_prior_to_the_loss() -> None:
    feeder = _feeder("online", {"score": "q", "prior_strength": 1.0})
    epochs: list[torch.Tensor] = []
    for step, (indices, _) in enumerate(feeder.batches()):
        # Losses that contradict the prior: the high-quality (high index) samples have the high loss.
        feeder.feedback(indices, indices.double() / NUM)
        epochs.append(indices)
        if step == 3 * (NUM // 64) - 1:
            break
    first = torch.cat(epochs[: NUM // 64]).double().mean()
    third = torch.cat(epochs[2 * (NUM // 64):]).double().mean()
    assert float(first) < 350  # epoch 0: the prior alone, hard = low quality = low index
    assert float(third) > float(first) + 100  # the observed losses pull the draw towards the high indices


def test_unknown_arm() -> None:
    with pytest.raises(ValueError, match="arm should be one of"):
        arm_grid("bogus", ["q"])
    with pytest.raises(ValueError, match="arm should be one of"):
        _feeder("bogus", {"score": "q"})
