"""Recipes: one line from stored scores to a configured sampler, with defaults chosen by measurement.

:func:`mixed_quality` is for training data of mixed quality (clean and degraded images together):

    >>> import torch
    >>> from qualoader.recipes import mixed_quality
    >>> sampler = mixed_quality(torch.rand(100, dtype=torch.float64), higher_is_better=True)
    >>> len(list(sampler))
    100

Its defaults live in one table, :data:`MIXED_QUALITY`, and are the settings the training-benefit
benchmark (``python -m benchmarks.training``, results in ``benchmarks/TRAINING_RESULTS.md``)
chooses on its validation split; every argument can be given explicitly instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qualoader._validation import check_choice, check_probability
from qualoader.data.store import ScoreTable
from qualoader.policies import OnlineDifficulty, check_real
from qualoader.samplers import CurriculumSampler, QualitySampler, QualityStratifiedSampler, QualityWeightedSampler
from qualoader.samplers._base import as_scores, resolve_higher_is_better

__all__ = ["MIXED_QUALITY", "STRATEGIES", "MixedQuality", "mixed_quality"]

#: How :func:`mixed_quality` uses the scores: weighted draws, a target mix of quality quartiles, or
#: an easy-to-hard curriculum.
STRATEGIES = frozenset({"weighted", "stratified", "curriculum"})


@dataclass(frozen=True)
class MixedQuality:
    """The settings of :func:`mixed_quality` (see there for each field)."""

    strategy: str
    favour: str
    temperature: float
    proportions: tuple[float, ...]
    full_at_epochs: float
    start_fraction: float
    prior_strength: float | None


#: The shipped defaults of :func:`mixed_quality`, declared once: hard samples favoured by rank-softmax
#: weights at temperature 1, no loss feedback. The training benchmark (``benchmarks/TRAINING_RESULTS.md``,
#: 60,000 Fashion-MNIST images, half degraded, two small models, 5 paired seeds) found **no significant
#: gain** over ``RandomSampler`` for any setting: this one gave +0.4 (CNN) and -0.1 (MLP) points on
#: unseen degradations for 0.5-0.7 point of clean accuracy. ``favour="easy"``, the curriculum early in
#: training and loss feedback (``prior_strength``) did worse, so they are not the default. Measure on
#: your own data before relying on it.
MIXED_QUALITY = MixedQuality(
    strategy="weighted",
    favour="hard",
    temperature=1.0,
    proportions=(0.4, 0.3, 0.2, 0.1),
    full_at_epochs=1.0,
    start_fraction=0.2,
    prior_strength=None,
)


def mixed_quality(
    scores: Any,
    *,
    higher_is_better: bool | None = None,
    strategy: str = MIXED_QUALITY.strategy,
    favour: str = MIXED_QUALITY.favour,
    temperature: float = MIXED_QUALITY.temperature,
    proportions: tuple[float, ...] = MIXED_QUALITY.proportions,
    full_at_epochs: float = MIXED_QUALITY.full_at_epochs,
    start_fraction: float = MIXED_QUALITY.start_fraction,
    prior_strength: float | None = MIXED_QUALITY.prior_strength,
    seed: int = 0,
    num_replicas: int | None = None,
    rank: int | None = None,
    drop_last: bool = False,
) -> QualitySampler[int]:
    """A sampler for training on data of mixed quality, configured from one table of defaults.

    Every strategy draws ``N`` indices per epoch (over all replicas), so an epoch costs what a
    ``RandomSampler`` epoch costs; call ``set_epoch`` before each epoch as with any sampler.

    Args:
        scores: quality scores :math:`(N,)`: a complete :class:`~qualoader.data.ScoreTable`
            (e.g. ``store.table("task-guided")``), or an array, tensor or sequence with
            ``higher_is_better``.
        higher_is_better: score direction, required for plain arrays.
        strategy: one of :data:`STRATEGIES`: ``"weighted"`` (:class:`~qualoader.samplers.QualityWeightedSampler`
            with ``favour`` and ``temperature``), ``"stratified"``
            (:class:`~qualoader.samplers.QualityStratifiedSampler` on quality quartiles with
            ``proportions``) or ``"curriculum"`` (:class:`~qualoader.samplers.CurriculumSampler`,
            easy to hard, from ``start_fraction`` to every sample after ``full_at_epochs``).
        favour: ``"hard"`` or ``"easy"`` (``"weighted"`` only).
        temperature: rank-softmax temperature ``>= 0`` (``"weighted"`` only).
        proportions: four shares summing to 1 of the quality quartiles, **hardest first** whatever
            the metric's direction (``"stratified"`` only).
        full_at_epochs: epochs' worth of draws after which the curriculum admits every sample,
            paced draw by draw (``"curriculum"`` only).
        start_fraction: the curriculum's admitted fraction at the start (``"curriculum"`` only).
        prior_strength: with a number, the sampler takes per-sample losses through
            ``sampler.update(indices, losses)`` and blends them with the scores
            (:class:`~qualoader.policies.OnlineDifficulty`); ``None``: scores only.
        seed, num_replicas, rank, drop_last: as for every qualoader sampler.

    Returns:
        The configured sampler.

    Raises:
        TypeError, ValueError: as the sampler it builds, and for an unknown ``strategy``.
    """
    check_choice(strategy, "strategy", STRATEGIES)
    direction = resolve_higher_is_better(scores, higher_is_better)
    online = None if prior_strength is None else OnlineDifficulty(prior_strength=prior_strength)
    replicas: dict[str, Any] = {"seed": seed, "num_replicas": num_replicas, "rank": rank, "drop_last": drop_last}
    if strategy == "weighted":
        return QualityWeightedSampler(
            scores, favour=favour, temperature=temperature, higher_is_better=direction, online=online, **replicas
        )
    if strategy == "stratified":
        values = as_scores(scores)
        shares = list(proportions)
        # Stratum 0 holds the lowest scores: the hardest when higher is better, the easiest otherwise.
        return QualityStratifiedSampler(
            values, 4, proportions=shares if direction else shares[::-1], higher_is_better=direction, online=online, **replicas
        )
    length = scores.length if isinstance(scores, ScoreTable) else as_scores(scores).numel()
    epochs = check_real(full_at_epochs, "full_at_epochs")
    if epochs <= 0:
        raise ValueError(f"full_at_epochs should be > 0, but got full_at_epochs={full_at_epochs!r}")
    check_probability(start_fraction, "start_fraction", open_low=True)
    # Paced by draws so the pool grows within an epoch too, and a fraction of an epoch means what it says.
    return CurriculumSampler(
        scores,
        start_fraction=start_fraction,
        full_at=max(1, round(epochs * length)),
        pace_by="sample",
        higher_is_better=direction,
        num_samples=length,
        online=online,
        **replicas,
    )
