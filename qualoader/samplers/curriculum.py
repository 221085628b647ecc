"""Curriculum sampling: admit samples from easy to hard (or hard to easy) as training progresses.

Samples are ranked once by quality (ties by index). At progress ``t`` in [0, 1] a pacing function
gives the admitted fraction ``g(t)`` in ``[start_fraction, 1]`` (Hacohen & Weinshall 2019; Wu et
al. 2021), and the ``k(t) = ceil(g(t) * N)`` first-ranked samples form the pool. Progress is
``epoch / full_at`` (``pace_by="epoch"``: the pool is fixed for an epoch and drawn as shuffled
passes), or the number of draws so far over ``full_at`` (``pace_by="sample"``: every draw is
uniform over the pool at its own position, so the pool grows within an epoch).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from qualoader._validation import check_choice, check_positive_int
from qualoader.policies import (
    DEFAULT_PACING,
    DEFAULT_START_FRACTION,
    ORDERS,
    PACINGS,
    OnlineDifficulty,
    Pacing,
    check_pacing,
    check_start_fraction,
    pacing_fraction,
)
from qualoader.samplers._base import (
    QualitySampler,
    as_scores,
    check_num_samples,
    easiness,
    resolve_higher_is_better,
)

__all__ = ["ORDERS", "PACE_BY", "PACINGS", "CurriculumSampler", "pacing_fraction"]

#: Whether progress counts epochs or draws.
PACE_BY = frozenset({"epoch", "sample"})


class CurriculumSampler(QualitySampler[int]):
    """Draw from a pool of the easiest (or hardest) samples that grows with training progress.

    Args:
        scores: quality scores :math:`(N,)` (array, tensor, sequence or complete ``ScoreTable``).
        pacing: one of :data:`~qualoader.policies.PACINGS` (default ``"linear"``) or a callable
            mapping progress (float in [0, 1]) to the admitted fraction in (0, 1] (non-decreasing,
            taken as 1 from progress 1 on).
        start_fraction: fraction admitted at progress 0, in (0, 1] (default 0.2; named pacings only).
        full_at: epoch (``pace_by="epoch"``) or number of draws over all replicas
            (``pace_by="sample"``) from which every sample is admitted; to pace by optimiser
            steps, pass ``steps * batch_size * num_replicas``.
        pace_by: ``"epoch"`` (default) or ``"sample"``.
        order: ``"easy-to-hard"`` (default) or ``"hard-to-easy"``.
        higher_is_better: score direction; required when ``scores`` is a plain array, tensor or
            sequence (a ``ScoreTable`` carries its metric's direction).
        num_samples: draws per epoch over all replicas (default: the admitted pool size with
            ``pace_by="epoch"``, so each epoch is one pass over the pool; ``N`` with ``"sample"``).
        num_steps: number of steps of the ``"step"`` pacing (default 4).
        online: an :class:`~qualoader.policies.OnlineDifficulty` to blend the scores with the
            per-sample losses fed back by :meth:`update`: the samples are ranked again from the
            blended scores at the start of each epoch (so the pool is the easiest by prior and
            loss together). Default ``None``: ranked once, from the scores.
        seed, num_replicas, rank, drop_last: as in :class:`~qualoader.samplers.QualityStratifiedSampler`.

    Example:
        >>> scores = torch.linspace(0, 1, 100)   # e.g. sharpness: higher is better
        >>> sampler = CurriculumSampler(scores, higher_is_better=True, pacing="root", start_fraction=0.3, full_at=5)
        >>> len(sampler), sampler.admitted()[:3].tolist()   # epoch 0: the 30 sharpest, sharpest first
        (30, [99, 98, 97])
        >>> sampler.set_epoch(5)                 # the pool grows until epoch 5
        >>> len(sampler)
        100
    """

    def __init__(
        self,
        scores: Any,
        *,
        pacing: Pacing = DEFAULT_PACING,
        start_fraction: float = DEFAULT_START_FRACTION,
        full_at: int = 10,
        pace_by: str = "epoch",
        order: str = "easy-to-hard",
        higher_is_better: bool | None = None,
        num_samples: int | None = None,
        num_steps: int = 4,
        online: OnlineDifficulty | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
        values = as_scores(scores)
        check_choice(order, "order", ORDERS)
        check_choice(pace_by, "pace_by", PACE_BY)
        self.pacing = check_pacing(pacing)
        self.start_fraction = check_start_fraction(start_fraction)
        self.full_at = check_positive_int(full_at, "full_at")
        self.pace_by = pace_by
        self.order = order
        self.num_steps = check_positive_int(num_steps, "num_steps")
        self.higher_is_better = resolve_higher_is_better(scores, higher_is_better)
        self._use_scores(values)
        # None: each epoch is one pass over the pool (pace_by="epoch" only); "sample" defaults to N draws.
        self._num_samples = None if num_samples is None and pace_by == "epoch" else check_num_samples(num_samples, values.numel())
        self._enable_online(online, values, self.higher_is_better)

    def _use_scores(self, scores: Tensor) -> None:
        easy = easiness(scores, self.higher_is_better)
        #: Sample indices from first to last admitted, int64 (N,).
        # Ranked once (without online=): every pool is a prefix of this order, so pools only grow and a sample
        # admitted once stays admitted; the stable sort puts tied samples in index order on every run and rank.
        self.ranking = torch.argsort(easy if self.order == "hard-to-easy" else -easy, stable=True)

    # -- pacing --------------------------------------------------------------------------------
    def fraction(self, progress: Tensor) -> Tensor:
        """Admitted fraction :math:`(T,)` at progress values :math:`(T,)` in [0, 1] (see :func:`~qualoader.policies.pacing_fraction`)."""
        return pacing_fraction(self.pacing, progress, self.start_fraction, self.num_steps)

    def pool_size(self, progress: float | Tensor) -> Tensor | int:
        """Number of admitted samples ``k(t)`` at progress ``t`` (a float or a tensor :math:`(T,)`)."""
        values = torch.as_tensor(progress, dtype=torch.float64)
        # The 1e-9 keeps a product that is an integer up to rounding (0.07 * 100 = 7.000000000000001) from
        # ceiling to one more; the pool never drops below one sample, which the draws divide by.
        sizes = torch.ceil(self.fraction(values.reshape(-1)) * self.ranking.numel() - 1e-9).long().clamp_(1, self.ranking.numel())
        return int(sizes[0]) if values.ndim == 0 else sizes

    def epoch_progress(self) -> float:
        """Progress of the current epoch with ``pace_by="epoch"``: ``min(1, epoch / full_at)``."""
        return min(1.0, self.epoch / self.full_at)

    def admitted(self) -> Tensor:
        """Indices of the pool of the current epoch (``pace_by="epoch"``), int64 :math:`(k,)`, first-ranked first."""
        return self.ranking[: self.pool_size(self.epoch_progress())]

    # -- drawing -------------------------------------------------------------------------------
    def global_length(self) -> int:
        if self._num_samples is not None:
            return self._num_samples
        return int(self.pool_size(self.epoch_progress()))

    def epoch_indices(self, generator: torch.Generator) -> Tensor:
        length = self.global_length()
        if self.pace_by == "epoch":
            pool = self.admitted()
            # Whole shuffled passes: each admitted sample is drawn once before any is drawn twice.
            passes = [pool[torch.randperm(pool.numel(), generator=generator)] for _ in range(math.ceil(length / pool.numel()))]
            return torch.cat(passes)[:length]
        # Global draw counter (before sharding, so the same on every rank), continuing across epochs: the pool
        # keeps growing where the previous epoch left it.
        steps = self.epoch * length + torch.arange(length, dtype=torch.float64)
        sizes = self.pool_size(steps / self.full_at)
        positions = (torch.rand(length, generator=generator, dtype=torch.float64) * sizes).long()
        # rand() * size can round up to size itself in float64; the minimum keeps the draw inside the pool.
        return self.ranking[torch.minimum(positions, sizes - 1)]

    def __repr__(self) -> str:
        pacing = getattr(self.pacing, "__name__", repr(self.pacing))
        return (
            f"{type(self).__name__}(N={self.ranking.numel()}, pacing={pacing}, start_fraction={self.start_fraction}, "
            f"full_at={self.full_at}, pace_by={self.pace_by!r}, order={self.order!r}, {self._replicas_repr()})"
        )
