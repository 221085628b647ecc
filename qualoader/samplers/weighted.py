"""Quality-weighted sampling: draw index ``i`` with probability proportional to a weight of its score.

Unlike :func:`torch.multinomial` (and so :class:`torch.utils.data.WeightedRandomSampler`), which
refuses more than :math:`2^{24}` categories, draws here scale to any ``N``: with replacement by
binary search of uniform variates in the cumulative weights (float64), without replacement by
the exponential-key method of Efraimidis and Spirakis (the ``k`` smallest ``E_i / w_i``, with
``E_i`` standard exponential).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qualoader._validation import check_choice, check_type
from qualoader.data.store import ScoreTable
from qualoader.policies import FAVOUR, OnlineDifficulty, check_temperature
from qualoader.samplers._base import (
    QualitySampler,
    as_scores,
    check_num_samples,
    easiness,
    per_rank_length,
    resolve_higher_is_better,
)
from qualoader.samplers.feedback import mean_ranks

__all__ = ["FAVOUR", "QualityWeightedSampler", "draw_weighted", "softmax_weights"]

#: Epochs of more draws than this (with replacement) are drawn lazily, in chunks of :data:`_LAZY_CHUNK`
#: draws: 2**24 draws already take 256 MiB (float64 variates plus int64 indices) drawn at once.
_EAGER_DRAWS = 1 << 24
_LAZY_CHUNK = 1 << 20


def standardized_ranks(scores: Tensor) -> Tensor:
    """Ranks of ``scores`` :math:`(N,)` (ties share their mean rank), shifted and scaled to zero mean and unit variance."""
    ranks = mean_ranks(scores)
    # std() of one value is NaN (Bessel's correction), and all-tied scores have spread 0: both mean
    # "no information", so every z is 0 and the weights come out uniform instead of NaN.
    spread = ranks.std() if ranks.numel() > 1 else ranks.new_tensor(0.0)
    return (ranks - ranks.mean()) / spread if float(spread) > 0 else torch.zeros_like(ranks)


def softmax_weights(
    scores: Tensor,
    temperature: float,
    *,
    favour: str = "easy",
    higher_is_better: bool,
) -> Tensor:
    """Weights :math:`(N,)` ``exp(±z / T)`` of standardised score ranks ``z``, normalised to sum to 1.

    Ranks make the weights independent of the metric's scale and skew (a few extreme scores do not
    take all the weight); standardised, they span about ``±1.73``, so at ``T = 1`` the easiest
    sample is ``e**3.46 ~ 32`` times as likely as the hardest (``favour="easy"``), and
    ``T -> inf`` tends to uniform sampling. ``T = 0`` is the hard limit: all weight, shared
    equally, on the easiest (or hardest) score.

    Args:
        scores: quality scores :math:`(N,)`.
        temperature: ``T >= 0``.
        favour: ``"easy"`` or ``"hard"``.
        higher_is_better: score direction.

    Example:
        >>> softmax_weights(torch.tensor([0.0, 1.0, 2.0]), 0.0, higher_is_better=False).tolist()
        [1.0, 0.0, 0.0]
    """
    check_choice(favour, "favour", FAVOUR)
    temperature = check_temperature(temperature)
    z = standardized_ranks(easiness(scores, higher_is_better))
    z = z if favour == "easy" else -z
    if temperature == 0:
        # softmax(z / 0) would be inf/NaN; the limit itself is uniform weight on the tied maxima.
        top = (z == z.max()).double()
        return top / top.sum()
    # torch.softmax subtracts the max first, so a small T cannot overflow exp().
    return torch.softmax(z / temperature, 0)


def check_weights(weights: Any, length: int, name: str = "weights") -> Tensor:
    """Validate weights: :math:`(N,)`, finite, non-negative, not all zero; returned as float64."""
    values = as_scores(weights, name)
    if values.numel() != length:
        raise ValueError(f"{name} should have one entry per sample ({length}), but got {name}.shape=({values.numel()},)")
    if bool((values < 0).any()):
        first = int((values < 0).nonzero()[0, 0])
        raise ValueError(f"{name} should be non-negative, but got {name}[{first}]={float(values[first]):.6g}")
    if float(values.sum()) <= 0:
        raise ValueError(f"{name} should have a positive sum, but got {name} all zero")
    return values


def draw_weighted(weights: Tensor, num_samples: int, replacement: bool, generator: torch.Generator) -> Tensor:
    """``num_samples`` indices int64 :math:`(num\\_samples,)` drawn with probability proportional to ``weights`` :math:`(N,)`.

    Raises:
        ValueError: without replacement, more samples than positive weights.
    """
    if replacement:
        cumulative = weights.cumsum(0)
        targets = torch.rand(num_samples, generator=generator, dtype=torch.float64) * cumulative[-1]
        # right=True: a zero weight repeats the previous cumulative value, so no target lands on it. The clamp
        # covers rand() * total rounding up to exactly the total.
        return torch.searchsorted(cumulative, targets, right=True).clamp_(max=weights.numel() - 1)
    positive = int((weights > 0).sum())
    if num_samples > positive:
        raise ValueError(
            f"num_samples should be at most the number of positive weights ({positive}) without replacement, but got "
            f"num_samples={num_samples}"
        )
    # Zero weights give infinite keys, never among the k smallest since k <= positive; ascending keys are
    # also the order in which sequential weighted draws would pick the items, hence sorted=True.
    keys = torch.empty(weights.numel(), dtype=torch.float64).exponential_(generator=generator) / weights
    return torch.topk(keys, num_samples, largest=False, sorted=True).indices


class QualityWeightedSampler(QualitySampler[int]):
    """Sample indices with probability given by a weight of each sample's quality score.

    Weights are ``weight_fn(scores)`` when given, else :func:`softmax_weights` at ``temperature``
    (favouring easy or hard samples). Replace them between epochs with :meth:`set_weights`
    (e.g. after re-scoring, or to anneal the temperature).

    Args:
        scores: quality scores :math:`(N,)` (array, tensor, sequence or complete ``ScoreTable``).
        temperature: softmax temperature ``>= 0`` on standardised score ranks (see
            :func:`softmax_weights`) (default 1.0); ignored with ``weight_fn``.
        weight_fn: instead, a function from scores (float64 :math:`(N,)`) to non-negative weights :math:`(N,)`.
        favour: ``"easy"`` (default) or ``"hard"``, for the temperature weights.
        higher_is_better: score direction; required for the temperature weights when ``scores`` is
            a plain array, tensor or sequence (a ``ScoreTable`` carries its metric's direction).
        replacement: draw with replacement (default) or without.
        num_samples: indices per epoch over all replicas (default ``N``). With replacement, any
            number: epochs of more than ``2**24`` draws are drawn lazily, ``2**20`` at a time, so
            memory does not grow with ``num_samples`` (their sequence differs from an eager draw's).
        online: an :class:`~qualoader.policies.OnlineDifficulty` to blend the scores with the
            per-sample losses fed back by :meth:`update` (the weights are recomputed from the
            blended scores at the start of each epoch; needs the score direction). Default
            ``None``: no feedback, the weights stay as built.
        seed, num_replicas, rank, drop_last: as in :class:`~qualoader.samplers.QualityStratifiedSampler`.

    Example:
        >>> scores = torch.arange(10.0)   # e.g. bn-shift: lower is better, so 9 is the hardest
        >>> sampler = QualityWeightedSampler(scores, higher_is_better=False, temperature=0.25, favour="hard", seed=0)
        >>> sorted(set(sampler))   # the 10 draws of epoch 0 all come from the two hardest
        [8, 9]
    """

    def __init__(
        self,
        scores: Any,
        *,
        temperature: float = 1.0,
        weight_fn: Callable[[Tensor], Tensor] | None = None,
        favour: str = "easy",
        higher_is_better: bool | None = None,
        replacement: bool = True,
        num_samples: int | None = None,
        online: OnlineDifficulty | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
        self.scores = as_scores(scores)
        # Custom weights see raw scores, so only the temperature weights need a direction.
        if weight_fn is None or higher_is_better is not None or isinstance(scores, ScoreTable):
            self.higher_is_better: bool | None = resolve_higher_is_better(scores, higher_is_better)
        else:
            self.higher_is_better = None
        check_type(replacement, "replacement", bool, "a bool")
        check_choice(favour, "favour", FAVOUR)
        temperature = check_temperature(temperature)
        if weight_fn is not None and not callable(weight_fn):
            raise TypeError(f"weight_fn should be callable or None, but got weight_fn of type {type(weight_fn).__name__}")
        self.temperature = float(temperature)
        self.weight_fn = weight_fn
        self.favour = favour
        self.replacement = replacement
        self.num_samples = check_num_samples(num_samples, self.scores.numel())
        self._set_checked_weights(self._weights_of(self.scores))
        self._enable_online(online, self.scores, self.higher_is_better)

    def _weights_of(self, scores: Tensor) -> Tensor:
        if self.weight_fn is None:
            return softmax_weights(scores, self.temperature, favour=self.favour, higher_is_better=bool(self.higher_is_better))
        # A clone: a weight_fn that works in place must not rewrite the sampler's own scores.
        return self.weight_fn(scores.clone())

    def _use_scores(self, scores: Tensor) -> None:
        self._set_checked_weights(self._weights_of(scores))

    def set_weights(self, weights: Any) -> None:
        """Replace the weights :math:`(N,)` used from the next iteration on.

        Raises:
            ValueError: wrong length, negative, NaN or all-zero weights; without replacement,
                fewer positive weights than ``num_samples``; a sampler with ``online=`` (its
                weights follow the fed-back losses, which would overwrite these at the next epoch).
        """
        if self.feedback is not None:
            raise ValueError("online should be None to set weights by hand, but got an online sampler; its weights follow update()")
        self._set_checked_weights(weights)

    def _set_checked_weights(self, weights: Any) -> None:
        checked = check_weights(weights, self.scores.numel())
        positive = int((checked > 0).sum())
        # Checked here so a bad set_weights fails at the call, not at the next epoch's first draw.
        if not self.replacement and positive < self.num_samples:
            raise ValueError(
                f"weights should have at least num_samples={self.num_samples} positive entries without replacement, but got {positive}"
            )
        self.weights = checked / checked.sum()

    def global_length(self) -> int:
        return self.num_samples

    @property
    def lazy(self) -> bool:
        """Whether epochs are drawn chunk by chunk (with replacement, more than ``2**24`` draws)."""
        return self.replacement and self.num_samples > _EAGER_DRAWS

    def epoch_indices(self, generator: torch.Generator) -> Tensor:
        if self.lazy:
            raise ValueError(
                f"num_samples should be at most {_EAGER_DRAWS} to build an epoch's draw at once, but got num_samples={self.num_samples}; "
                "iterate over the sampler instead (it draws in chunks)"
            )
        return draw_weighted(self.weights, self.num_samples, self.replacement, generator)

    def _chunk(self, chunk: int) -> Tensor:
        """Draws of global positions ``[chunk * C, (chunk + 1) * C)`` of a lazy epoch, from their own seed."""
        # A generator per chunk, seeded from (seed, epoch, chunk): any chunk can be drawn without the ones before
        # it, so a resume mid-epoch or a rank's stride costs no more than the chunks it reads.
        entropy = [(self.seed + self.epoch) % (1 << 64), chunk]
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1
        size = min(_LAZY_CHUNK, self.num_samples - chunk * _LAZY_CHUNK)
        return draw_weighted(self.weights, size, True, torch.Generator().manual_seed(seed))

    def _lazy_items(self, start: int) -> Iterator[int]:
        # The same positions as shard() takes from an eager draw: rank r reads r, r + R, ... of the draw padded by
        # wrapping around to ceil(L / R) * R positions (or trimmed to floor(L / R) * R with drop_last).
        replicas, length = self.num_replicas, self.num_samples
        total = per_rank_length(length, replicas, self.drop_last) * replicas
        position = self.rank + start * replicas
        while position < total:
            wrapped = position % length  # padding positions (beyond the draw) wrap to its start
            chunk = wrapped // _LAZY_CHUNK
            draws = self._chunk(chunk)
            offset = chunk * _LAZY_CHUNK
            end = min(total, offset + draws.numel()) if position < length else total
            picked = draws[wrapped - offset : end - (position - wrapped) - offset : replicas]
            yield from picked.tolist()
            position += picked.numel() * replicas

    def _rank_items(self, start: int) -> Iterator[int]:
        if not self.lazy:
            return super()._rank_items(start)
        if self.feedback is not None:
            self._mark_current_draw()
        return self._lazy_items(start)

    def _mark_current_draw(self) -> None:
        if not self.lazy:
            super()._mark_current_draw()
            return
        # Keeping the positions of 2**24+ draws would cost what lazy drawing saves; with that many draws every
        # sample of positive weight is all but certain to be drawn, so those are the ones update() accepts.
        self._drawn = self.weights > 0

    def __repr__(self) -> str:
        weighting = (
            f"weight_fn={getattr(self.weight_fn, '__name__', self.weight_fn)!s}"
            if self.weight_fn
            else f"temperature={self.temperature}, favour={self.favour!r}"
        )
        online = f", online={self.feedback.policy}" if self.feedback is not None else ""
        return (
            f"{type(self).__name__}(N={self.scores.numel()}, {weighting}, replacement={self.replacement}, "
            f"num_samples={self.num_samples}{online}, {self._replicas_repr()})"
        )
