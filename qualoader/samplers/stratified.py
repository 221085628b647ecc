"""Quality-stratified sampling: every epoch (or every batch) holds a target mix of quality strata.

Scores are cut into strata, stratum 0 holding the lowest scores: ``num_strata`` equal-size
quantile strata (by rank of score; ties are split by index so sizes differ by at most one), or
explicit ``edges``. Each epoch draws ``round(p_k * num_samples)`` samples from stratum ``k``
(largest-remainder rounding, so the counts are exact), without replacement inside a stratum until
it is exhausted, then from a fresh permutation of it; the draw is shuffled as a whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

from qualoader._validation import check_positive_int
from qualoader.policies import PROPORTIONS, OnlineDifficulty, check_edges, check_proportions, resolve_num_strata
from qualoader.samplers._base import QualitySampler, as_scores, check_num_samples, resolve_higher_is_better

T = TypeVar("T")

__all__ = [
    "PROPORTIONS",
    "QualityStratifiedBatchSampler",
    "QualityStratifiedSampler",
    "apportion",
    "assign_strata",
]


def assign_strata(scores: Tensor, num_strata: int | None = None, edges: Sequence[float] | None = None) -> Tensor:
    """Stratum of every score, int64 :math:`(N,)` in ``0 .. K - 1`` (0: lowest scores).

    Args:
        scores: :math:`(N,)` finite scores.
        num_strata: ``K`` equal-size quantile strata by rank of score (ties split by index).
        edges: instead, ``K - 1`` strictly increasing inner boundaries; stratum ``k`` holds
            ``edges[k - 1] <= score < edges[k]``.

    Raises:
        ValueError: both or neither of ``num_strata`` and ``edges``; ``num_strata`` above ``N``;
            edges not strictly increasing or not finite.
    """
    if (num_strata is None) == (edges is None):
        raise ValueError(f"num_strata and edges should be given one at a time, but got num_strata={num_strata!r} and edges={edges!r}")
    if edges is None:
        check_positive_int(num_strata, "num_strata")
        if num_strata > scores.numel():
            raise ValueError(f"num_strata should be at most the number of scores {scores.numel()}, but got num_strata={num_strata}")
        ranks = torch.empty(scores.numel(), dtype=torch.int64)
        # Strata from ranks, not score quantiles: tied scores (common for clipped or integer metrics) are split
        # by index, so the strata still have equal sizes; the integer division makes the sizes differ by at most one.
        ranks[torch.argsort(scores, stable=True)] = torch.arange(scores.numel())
        return ranks * num_strata // scores.numel()
    boundaries = torch.tensor(check_edges(edges), dtype=torch.float64)
    # right=True puts a score equal to an edge in the upper stratum, as the docstring's edges[k-1] <= score says.
    return torch.bucketize(scores, boundaries, right=True)


def resolve_proportions(proportions: str | Sequence[float], sizes: Tensor) -> Tensor:
    """Target proportions :math:`(K,)` (float64, summing to 1) for strata of the given sizes :math:`(K,)`.

    Raises:
        ValueError: proportions that :func:`~qualoader.policies.check_proportions` refuses; a
            positive proportion for an empty stratum.
    """
    shares = check_proportions(proportions, sizes.numel())
    targets = sizes.double() / sizes.sum() if shares is None else torch.tensor(shares, dtype=torch.float64)
    # Refused here rather than at the first epoch, where drawing from an empty stratum would divide by zero.
    empty = (sizes == 0) & (targets > 0)
    if bool(empty.any()):
        raise ValueError(
            f"every stratum with a positive proportion should hold samples, but got empty strata {empty.nonzero().flatten().tolist()} "
            f"(sizes {sizes.tolist()}); use fewer strata or other edges"
        )
    return targets


def apportion(proportions: Tensor, total: int) -> Tensor:
    """Integer counts :math:`(K,)` summing to ``total``, closest to ``proportions * total`` (largest remainder)."""
    quotas = proportions * total
    counts = quotas.floor().long()
    shortfall = total - int(counts.sum())
    if shortfall > 0:
        # Stable: equal remainders go to the lower strata, the same on every rank and every run.
        counts[torch.argsort(quotas - counts, descending=True, stable=True)[:shortfall]] += 1
    return counts


class _Strata:
    """Members of each stratum, stored as one index array sorted by stratum plus offsets."""

    def __init__(self, strata: Tensor, num_strata: int) -> None:
        # One index tensor plus offsets instead of K Python lists: O(N) memory, and the stable sort keeps each
        # stratum's members in index order, so a draw depends on the seed only.
        self.members = torch.argsort(strata, stable=True)
        self.sizes = torch.bincount(strata, minlength=num_strata)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), self.sizes.cumsum(0)])

    def draw(self, counts: Tensor, generator: torch.Generator) -> list[Tensor]:
        """``counts[k]`` indices from each stratum, without replacement until a stratum runs out."""
        draws = []
        for stratum, count in enumerate(counts.tolist()):
            size = int(self.sizes[stratum])
            members = self.members[self.offsets[stratum] : self.offsets[stratum + 1]]
            # Whole permutations back to back: every member is drawn once before any is drawn twice. A stratum
            # with no quota draws nothing (torch.cat would refuse an empty list), hence members[:0].
            passes = [torch.randperm(size, generator=generator) for _ in range(math.ceil(count / size))] if count else []
            draws.append(members[torch.cat(passes)[:count]] if passes else members[:0])
        return draws


class _StratifiedBase(QualitySampler[T]):
    """Strata set-up shared by the stratified samplers, and their rebuild from blended scores (``online=``)."""

    def _setup_strata(
        self,
        scores: Any,
        num_strata: int | None,
        edges: Sequence[float] | None,
        proportions: str | Sequence[float],
        online: OnlineDifficulty | None,
        higher_is_better: bool | None,
    ) -> None:
        values = as_scores(scores)
        count, checked = resolve_num_strata(num_strata, edges, proportions)
        self._strata_rule = (None if checked is not None else count, checked, count)
        self._use_scores(values)
        # Resolved once from the strata of the stored scores: "natural" stays the prior's mix when online= moves samples.
        self.proportions = resolve_proportions(proportions, self._groups.sizes)
        # The direction matters only to map fed-back losses onto the scores, so it is resolved only then.
        direction = resolve_higher_is_better(scores, higher_is_better) if online is not None else None
        self._enable_online(online, values, direction)

    def _use_scores(self, scores: Tensor) -> None:
        num_strata, edges, count = self._strata_rule
        if edges is not None and self.feedback is not None:
            # Blending pulls scores towards the middle and could empty an outer stratum (whose quota would then
            # divide by zero); re-dealt on the prior's values, every stratum keeps its size and samples move between
            # strata by their blended rank.
            scores = self.feedback.on_prior_marginal(scores)
        self.strata = assign_strata(scores, num_strata, edges)
        self._groups = _Strata(self.strata, count)


class QualityStratifiedSampler(_StratifiedBase[int]):
    """Sample indices so that every epoch holds the target proportion of each quality stratum.

    Args:
        scores: quality scores :math:`(N,)` (array, tensor, sequence or complete ``ScoreTable``).
        num_strata: number of equal-size quantile strata ``K`` (default: ``len(edges) + 1``, the
            length of a list of ``proportions``, else 4).
        edges: instead, ``K - 1`` strictly increasing score boundaries; stratum ``k`` holds
            ``edges[k - 1] <= score < edges[k]``.
        proportions: ``"uniform"`` (default), ``"natural"`` (the strata's sizes) or ``K``
            non-negative floats summing to 1, in stratum order (stratum 0: lowest scores).
        num_samples: indices per epoch over all replicas (default ``N``).
        higher_is_better: score direction; needed only with ``online`` when ``scores`` is a plain
            array (to map fed-back losses onto the scores' hard end).
        online: an :class:`~qualoader.policies.OnlineDifficulty` to blend the scores with the
            per-sample losses fed back by :meth:`update`: samples change strata at the start of
            each epoch by their blended score (with ``edges``, by its rank, so that every stratum
            keeps its size); the proportions stay. Default ``None``.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        num_replicas, rank, drop_last: distributed sharding, as in ``DistributedSampler``.

    Example:
        >>> scores = torch.cat([torch.zeros(900), torch.ones(100)])  # 10% high-quality samples
        >>> sampler = QualityStratifiedSampler(scores, edges=[0.5], proportions=[0.5, 0.5], seed=0)
        >>> float((scores[list(sampler)] == 1).float().mean())   # half of every epoch
        0.5
    """

    def __init__(
        self,
        scores: Any,
        num_strata: int | None = None,
        *,
        edges: Sequence[float] | None = None,
        proportions: str | Sequence[float] = "uniform",
        num_samples: int | None = None,
        higher_is_better: bool | None = None,
        online: OnlineDifficulty | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
        self._setup_strata(scores, num_strata, edges, proportions, online, higher_is_better)
        self.num_samples = check_num_samples(num_samples, self.strata.numel())
        self.counts = apportion(self.proportions, self.num_samples)

    @property
    def num_strata(self) -> int:
        return self.proportions.numel()

    def global_length(self) -> int:
        return self.num_samples

    def epoch_indices(self, generator: torch.Generator) -> Tensor:
        draw = torch.cat(self._groups.draw(self.counts, generator))
        # The draw is stratum-major; without this shuffle the epoch would start with all the low-quality samples.
        return draw[torch.randperm(draw.numel(), generator=generator)]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_strata={self.num_strata}, proportions={[round(p, 4) for p in self.proportions.tolist()]}, "
            f"num_samples={self.num_samples}, {self._replicas_repr()})"
        )


class QualityStratifiedBatchSampler(_StratifiedBase[list[int]]):
    """Batches whose every one holds the target mix of quality strata.

    Batch ``b`` gets ``floor(p_k * batch_size)`` or one more from stratum ``k``: the leftover
    slots go to strata by systematic sampling on the fractional parts, so each stratum's expected
    share of every batch is exactly ``p_k``. In distributed mode whole batches are sharded. A
    stratum asked for more samples than it holds is cycled through fresh permutations, so a batch
    may then (rarely) hold one of its samples twice.

    Args:
        scores, num_strata, edges, proportions, higher_is_better, online, seed, num_replicas, rank, drop_last: as in
            :class:`QualityStratifiedSampler`.
        batch_size: indices per batch.
        num_batches: batches per epoch over all replicas (default ``max(1, N // batch_size)``).

    Example:
        >>> batches = QualityStratifiedBatchSampler(torch.arange(100.0), batch_size=8, num_strata=4)
        >>> sorted(index // 25 for index in next(iter(batches)))   # two from each quartile
        [0, 0, 1, 1, 2, 2, 3, 3]
    """

    def __init__(
        self,
        scores: Any,
        batch_size: int,
        num_strata: int | None = None,
        *,
        edges: Sequence[float] | None = None,
        proportions: str | Sequence[float] = "uniform",
        num_batches: int | None = None,
        higher_is_better: bool | None = None,
        online: OnlineDifficulty | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self._setup_strata(scores, num_strata, edges, proportions, online, higher_is_better)
        if num_batches is None:
            num_batches = max(1, self.strata.numel() // self.batch_size)
        self.num_batches = check_positive_int(num_batches, "num_batches")

    @property
    def num_strata(self) -> int:
        return self.proportions.numel()

    def global_length(self) -> int:
        return self.num_batches

    def batch_counts(self, generator: torch.Generator) -> Tensor:
        """Per-batch stratum counts :math:`(num\\_batches, K)`, each row summing to ``batch_size``."""
        quotas = self.proportions * self.batch_size
        base = quotas.floor()
        fractions = quotas - base
        leftover = self.batch_size - int(base.sum())
        counts = base.long().expand(self.num_batches, -1).clone()
        if leftover:
            cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), fractions.cumsum(0)])
            # The fractions sum to `leftover` only up to rounding; rescaling pins the last boundary to it exactly, so
            # every batch gets exactly `leftover` extra slots.
            cumulative *= leftover / float(cumulative[-1])
            offsets = torch.rand(self.num_batches, 1, generator=generator, dtype=torch.float64)
            hits = torch.ceil(cumulative - offsets)  # points offset + j below each boundary
            counts += (hits[:, 1:] - hits[:, :-1]).long()
        return counts

    def epoch_indices(self, generator: torch.Generator) -> Tensor:
        counts = self.batch_counts(generator)
        # One draw per stratum for the whole epoch, so "without replacement" holds across batches, not just within one.
        draws = self._groups.draw(counts.sum(0), generator)
        batch_of = torch.cat([torch.repeat_interleave(torch.arange(self.num_batches), counts[:, k]) for k in range(self.num_strata)])
        # batch_of is stratum-major like the draws; sorting by batch + a jitter in [0, 1) groups each batch's
        # samples together and shuffles the strata within it.
        jitter = torch.rand(batch_of.numel(), generator=generator, dtype=torch.float64)
        order = torch.argsort(batch_of.double() + jitter)
        return torch.cat(draws)[order].view(self.num_batches, self.batch_size)

    def _emit(self, draw: Tensor, start: int) -> Iterator[list[int]]:
        # About 2^16 indices per tolist() call, as iterate_chunks does for single indices.
        rows = max(1, (1 << 16) // self.batch_size)
        for begin in range(start, draw.shape[0], rows):
            yield from draw[begin : begin + rows].tolist()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_size={self.batch_size}, num_strata={self.num_strata}, "
            f"proportions={[round(p, 4) for p in self.proportions.tolist()]}, num_batches={self.num_batches}, {self._replicas_repr()})"
        )
