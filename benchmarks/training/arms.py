"""The arms of the training benchmark: how each one picks the samples of every optimiser step.

An arm is a *feeder*: an endless (or, for InfoBatch, finite) stream of batches of training
indices, each with optional per-sample loss weights, that hears back the per-sample losses of each
step. Sampler arms wrap a ``torch.utils.data`` sampler (epochs drawn back to back and cut into
batches of exactly ``batch_size``, so every arm takes the same number of samples per step). Each
arm has a small grid of settings (:func:`arm_grid`); every quality arm reads its scores from the
``ScoreStore`` filled by ``precompute`` (:mod:`.scores`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import RandomSampler, Sampler

from benchmarks.training.infobatch import InfoBatchPlan
from qualoader.samplers import CurriculumSampler, QualityStratifiedSampler, QualityWeightedSampler

__all__ = ["ARMS", "SCORE_ARMS", "Feeder", "arm_grid", "build_feeder", "online_available", "setting_label"]

#: Every arm, in report order.
ARMS = (
    "random", "weighted-hard", "weighted-easy", "stratified", "curriculum", "anti-curriculum", "prune-easy", "infobatch", "online",
)
#: Arms that read a stored quality score (all but the baseline and the loss-only InfoBatch arm).
SCORE_ARMS = frozenset(ARMS) - {"random", "infobatch"}

#: Stratum proportions, hardest quartile first (strata are built on "easiness", so stratum 0 is the hardest quarter).
_PROPORTIONS = {"hard-heavy": (0.4, 0.3, 0.2, 0.1), "easy-heavy": (0.1, 0.2, 0.3, 0.4)}


def online_available() -> bool:
    """Whether the installed samplers take online loss feedback (``online=`` and ``update``)."""
    try:
        from qualoader.policies import OnlineDifficulty  # noqa: F401
    except ImportError:
        return False
    return hasattr(QualityWeightedSampler, "update")


def arm_grid(arm: str, scores: Sequence[str], quick: bool = False) -> list[dict[str, Any]]:
    """The settings tried for ``arm`` on validation; ``scores`` are the candidate score names (one in the second stage).

    ``quick`` keeps one setting per knob so the pipeline runs end to end in minutes.
    """
    def grid(**knobs: Sequence[Any]) -> list[dict[str, Any]]:
        if quick:
            knobs = {key: values[:1] for key, values in knobs.items()}
        return [dict(zip(knobs, values)) for values in itertools.product(*knobs.values())]

    if arm == "random":
        return [{}]
    if arm == "weighted-hard":
        return grid(score=scores, temperature=(1.0,))
    if arm == "weighted-easy":
        return grid(score=scores, temperature=(1.0,))
    if arm == "stratified":
        return grid(score=scores, proportions=("hard-heavy", "easy-heavy"))
    if arm in ("curriculum", "anti-curriculum"):
        return grid(score=scores, full_at_epochs=(1.0,))
    if arm == "prune-easy":
        return grid(score=scores, fraction=(0.3, 0.1))
    if arm == "infobatch":
        return grid(prune=(0.5, 0.3))
    if arm == "online":
        return grid(score=scores, prior_strength=(1.0, 4.0))
    raise ValueError(f"arm should be one of {ARMS}, but got arm={arm!r}")


def setting_label(setting: dict[str, Any]) -> str:
    """A short, file-name safe label of a setting, e.g. ``score=task-guided,temperature=1.0``."""
    return ",".join(f"{key}={value}" for key, value in setting.items()) or "default"


class Feeder:
    """A stream of ``(indices (B,), weights (B,) or None)`` batches that hears back each step's per-sample losses."""

    def batches(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        raise NotImplementedError

    def feedback(self, indices: Tensor, losses: Tensor) -> None:
        """Per-sample losses :math:`(B,)` of the batch ``indices`` :math:`(B,)` just trained on (ignored by prior-only arms)."""


class SamplerFeeder(Feeder):
    """Epochs of a sampler back to back, cut into batches of exactly ``batch_size`` indices.

    The last partial batch of an epoch is carried into the next one (``carry=True``), or dropped.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, carry: bool = True) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.carry = carry

    def batches(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        carry = torch.empty(0, dtype=torch.int64)
        for epoch in itertools.count():
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)
            stream = torch.cat([carry, torch.as_tensor(list(self.sampler), dtype=torch.int64)])
            whole = stream.numel() // self.batch_size * self.batch_size
            yield from ((batch, None) for batch in stream[:whole].split(self.batch_size))
            carry = stream[whole:] if self.carry else carry


class OnlineFeeder(SamplerFeeder):
    """A sampler with online difficulty: every step's per-sample losses go to ``sampler.update``.

    No batch straddles two epochs (the partial tail is dropped: 88 of 55,000 samples at batch 128),
    because ``update`` only takes indices of the epoch being drawn.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int) -> None:
        super().__init__(sampler, batch_size, carry=False)

    def feedback(self, indices: Tensor, losses: Tensor) -> None:
        self.sampler.update(indices, losses)


class InfoBatchFeeder(Feeder):
    """The epochs planned by :class:`~benchmarks.training.infobatch.InfoBatchPlan`; ends after its last epoch."""

    def __init__(self, plan: InfoBatchPlan, batch_size: int) -> None:
        self.plan = plan
        self.batch_size = batch_size

    def batches(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        for epoch in range(self.plan.epochs):
            order, weights = self.plan.epoch(epoch)
            yield from zip(order.split(self.batch_size), weights.split(self.batch_size))

    def feedback(self, indices: Tensor, losses: Tensor) -> None:
        self.plan.update(indices, losses)


def build_feeder(
    arm: str, setting: dict[str, Any], *, scores: dict[str, Tensor], higher_is_better: dict[str, bool], num_samples: int,
    batch_size: int, epochs: int, seed: int,
) -> Feeder:
    """The feeder of ``arm`` at ``setting`` for one training seed.

    Args:
        arm: one of :data:`ARMS`.
        setting: one of :func:`arm_grid`'s settings.
        scores: score name -> float64 scores :math:`(N,)` of the training images.
        higher_is_better: score name -> direction.
        num_samples: ``N``.
        batch_size: indices per step.
        epochs: epochs of the longest budget (InfoBatch plans its annealing from the end of the run).
        seed: the training seed (paired across arms: the random arm and every other use the same seeds).
    """
    if arm == "random":
        return SamplerFeeder(RandomSampler(range(num_samples), generator=torch.Generator().manual_seed(seed)), batch_size)
    if arm == "infobatch":
        return InfoBatchFeeder(InfoBatchPlan(num_samples, prune=setting["prune"], epochs=epochs, seed=seed), batch_size)
    values, hib = scores[setting["score"]], higher_is_better[setting["score"]]
    if arm in ("weighted-hard", "weighted-easy"):
        favour = arm.removeprefix("weighted-")
        sampler: Sampler[int] = QualityWeightedSampler(
            values, favour=favour, temperature=setting["temperature"], higher_is_better=hib, seed=seed
        )
        return SamplerFeeder(sampler, batch_size)
    if arm == "stratified":
        easiness = values if hib else -values
        stratified = QualityStratifiedSampler(easiness, 4, proportions=list(_PROPORTIONS[setting["proportions"]]), seed=seed)
        return SamplerFeeder(stratified, batch_size)
    if arm in ("curriculum", "anti-curriculum"):
        # Paced by draws, not epochs, so the pacing does not depend on the budget: one run serves every budget.
        sampler = CurriculumSampler(
            values, pacing="linear", start_fraction=0.2, full_at=max(1, round(setting["full_at_epochs"] * num_samples)),
            pace_by="sample", order="easy-to-hard" if arm == "curriculum" else "hard-to-easy", higher_is_better=hib,
            num_samples=num_samples, seed=seed,
        )
        return SamplerFeeder(sampler, batch_size)
    if arm == "prune-easy":
        easiness = values if hib else -values
        # Stable sort: tied scores are pruned by index, the same on every run.
        order = torch.argsort(easiness, descending=True, stable=True)
        kept = order[round(setting["fraction"] * num_samples):].sort().values
        return SubsetFeeder(kept, batch_size, seed)
    if arm == "online":
        from qualoader.policies import OnlineDifficulty

        sampler = QualityWeightedSampler(
            values, favour="hard", temperature=1.0, higher_is_better=hib, seed=seed,
            online=OnlineDifficulty(prior_strength=setting["prior_strength"]),
        )
        return OnlineFeeder(sampler, batch_size)
    raise ValueError(f"arm should be one of {ARMS}, but got arm={arm!r}")


class SubsetFeeder(SamplerFeeder):
    """Uniform shuffled passes over a fixed subset of the training indices (static pruning)."""

    def __init__(self, kept: Tensor, batch_size: int, seed: int) -> None:
        super().__init__(RandomSampler(range(kept.numel()), generator=torch.Generator().manual_seed(seed)), batch_size)
        self.kept = kept

    def batches(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        for batch, weights in super().batches():
            yield self.kept[batch], weights
