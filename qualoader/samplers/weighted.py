"""Quality-weighted sampling: draw index ``i`` with probability proportional to a weight of its score.

Unlike :func:`torch.multinomial` (and so :class:`torch.utils.data.WeightedRandomSampler`), which
refuses more than :math:`2^{24}` categories, draws here scale to any ``N``: with replacement by
binary search of uniform variates in the cumulative weights (float64), without replacement by
the exponential-key method of Efraimidis and Spirakis (the ``k`` smallest ``E_i / w_i``, with
``E_i`` standard exponential).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    resolve_higher_is_better,
)
from qualoader.samplers.feedback import mean_ranks

__all__ = ["FAVOUR", "QualityWeightedSampler", "draw_weighted", "softmax_weights"]


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
        num_samples: indices per epoch over all replicas (default ``N``).
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

    def epoch_indices(self, generator: torch.Generator) -> Tensor:
        return draw_weighted(self.weights, self.num_samples, self.replacement, generator)

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
