"""What every qualoader sampler shares: score input, replicas, seeding, sharding and resumable state.

A sampler draws one *global* index sequence per epoch from a generator seeded with
``seed + epoch`` (identical on every rank, as :class:`torch.utils.data.DistributedSampler` does),
then keeps every ``num_replicas``-th position starting at ``rank``, after padding the sequence by
wrapping around (or trimming it, with ``drop_last``) to a multiple of ``num_replicas``. Hence
ranks are disjoint within an epoch, together cover its draw, and all have the same length.

Index sequences are int64 tensors of O(N) memory; they are turned into Python ints one chunk at
a time while iterating, never as one list of N items.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Sampler

from qualoader._validation import check_positive_int, check_type
from qualoader.data.store import ScoreTable
from qualoader.policies import OnlineDifficulty, resolve_direction
from qualoader.samplers.feedback import LossFeedback, check_feedback

__all__ = [
    "QualitySampler",
    "as_scores",
    "check_num_samples",
    "easiness",
    "iterate_chunks",
    "per_rank_length",
    "resolve_higher_is_better",
    "resolve_replicas",
    "shard",
]

T = TypeVar("T")

#: Indices converted to Python ints per step of iteration.
_CHUNK = 1 << 16


def as_scores(scores: Any, name: str = "scores") -> Tensor:
    """Validate quality scores and return them as a float64 CPU tensor :math:`(N,)`.

    Args:
        scores: a 1-D ``numpy.ndarray``, ``torch.Tensor`` or sequence of real numbers, or a
            complete :class:`~qualoader.data.ScoreTable`.
        name: argument name used in error messages.

    Raises:
        TypeError: not an array, tensor, sequence or score table; or non-real values.
        ValueError: not 1-D, empty, or with NaN/Inf (including unscored table entries).
    """
    if isinstance(scores, ScoreTable):
        if not scores.complete:
            raise ValueError(
                f"{name} should be a complete ScoreTable, but got {name} with {scores.length - scores.num_scored} "
                f"of {scores.length} samples unscored; run qualoader.data.precompute first"
            )
        array = scores.scores()
    elif isinstance(scores, Tensor):
        array = scores.detach().cpu().numpy()
    elif isinstance(scores, (np.ndarray, list, tuple)):
        array = np.asarray(scores)
    else:
        raise TypeError(
            f"{name} should be a 1-D array, tensor or sequence of floats or a ScoreTable, but got {name} of type {type(scores).__name__}"
        )
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} should hold real numbers, but got {name} with dtype {array.dtype}")
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} should be a non-empty 1-D array of shape (N,), but got {name}.shape={array.shape}")
    result = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    bad = ~torch.isfinite(result)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name} should be finite, but got {name} with {int(bad.sum())} NaN/Inf values (first at index {first})")
    return result


def easiness(scores: Tensor, higher_is_better: bool) -> Tensor:
    """Scores :math:`(N,)` turned so that larger means easier (better quality)."""
    return scores if higher_is_better else -scores


def resolve_higher_is_better(scores: Any, higher_is_better: bool | None) -> bool:
    """The score direction: a ``ScoreTable``'s own, or ``higher_is_better`` (required for plain arrays).

    Raises:
        TypeError: ``higher_is_better`` is not a bool, or is ``None`` for a plain array.
        ValueError: it contradicts the direction of a ``ScoreTable``.
    """
    carried = scores.higher_is_better if isinstance(scores, ScoreTable) else None
    return resolve_direction(higher_is_better, carried)


def resolve_replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(num_replicas, rank)``: as given, or from ``torch.distributed`` when it is initialised.

    Raises:
        ValueError: ``rank`` outside ``[0, num_replicas)``.
    """
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    check_positive_int(num_replicas, "num_replicas")
    check_positive_int(rank, "rank", allow_zero=True)
    if rank >= num_replicas:
        raise ValueError(f"rank should be in [0, {num_replicas - 1}] for num_replicas={num_replicas}, but got rank={rank}")
    return num_replicas, rank


def shard(indices: Tensor, num_replicas: int, rank: int, drop_last: bool) -> Tensor:
    """One rank's share :math:`(M, ...)` of a global draw :math:`(L, ...)`, with DistributedSampler's padding.

    Without ``drop_last`` the draw is padded by wrapping around to ``ceil(L / R) * R`` positions;
    with it, trimmed to ``floor(L / R) * R``. Rank ``r`` then takes positions ``r, r + R, ...``.
    """
    length = indices.shape[0]
    if num_replicas == 1:
        return indices
    if drop_last:
        total = (length // num_replicas) * num_replicas
        indices = indices[:total]
    else:
        total = math.ceil(length / num_replicas) * num_replicas
        if total > length:
            # Repeated, not just sliced: with more replicas than draws the padding must wrap more than once.
            repeats = math.ceil((total - length) / length)
            padding = indices.repeat(repeats, *[1] * (indices.ndim - 1))[: total - length]
            indices = torch.cat([indices, padding])
    return indices[rank:total:num_replicas]


def per_rank_length(length: int, num_replicas: int, drop_last: bool) -> int:
    """Length of each rank's :func:`shard` of a global draw of ``length`` positions."""
    return length // num_replicas if drop_last else math.ceil(length / num_replicas)


def iterate_chunks(values: Tensor, start: int) -> Iterator[int]:
    """Yield ``values[start:]`` as Python ints, converting one chunk at a time."""
    for begin in range(start, values.numel(), _CHUNK):
        yield from values[begin : begin + _CHUNK].tolist()


class QualitySampler(Sampler[T]):
    """Base of the qualoader samplers: epochs, replicas, seeding and mid-epoch save/restore.

    Subclasses implement :meth:`epoch_indices` (the global draw of the current epoch) and
    :meth:`global_length`; this class shards the draw per rank and tracks the position.

    Args:
        seed: base seed; epoch ``e`` draws from ``torch.Generator().manual_seed(seed + e)``.
        num_replicas: number of processes (default: the ``torch.distributed`` world size, else 1).
        rank: this process's rank (default: from ``torch.distributed``, else 0).
        drop_last: trim the draw to a multiple of ``num_replicas`` instead of padding it.
    """

    def __init__(self, *, seed: int = 0, num_replicas: int | None = None, rank: int | None = None, drop_last: bool = False) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed should be an int, but got seed of type {type(seed).__name__}")
        check_type(drop_last, "drop_last", bool, "a bool")
        self.seed = seed
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)
        self.drop_last = drop_last
        self.epoch = 0
        self._position = 0  # items of the current epoch already handed out by this rank
        self._resume_from = 0  # set by load_state_dict: where the next __iter__ starts
        #: The loss record of ``online=`` samplers (see :meth:`update`), else ``None``.
        self.feedback: LossFeedback | None = None
        self._epoch_scores: Tensor | None = None  # the scores the current draw was made from (online only)
        self._drawn: Tensor | None = None  # bool (N,): indices in this rank's current draw (online only)

    # -- to implement --------------------------------------------------------------------------
    def epoch_indices(self, generator: torch.Generator) -> Tensor:
        """The global draw of :attr:`epoch` (same on every rank), shape :math:`(L,)` (or :math:`(L, B)` for batches)."""
        raise NotImplementedError

    def global_length(self) -> int:
        """Length ``L`` of :meth:`epoch_indices` for the current epoch."""
        raise NotImplementedError

    def _emit(self, draw: Tensor, start: int) -> Iterator[T]:
        return iterate_chunks(draw, start)  # type: ignore[return-value]

    def _rank_items(self, start: int) -> Iterator[T]:
        """This rank's items of the current epoch from position ``start`` on (and, online, what it drew)."""
        draw = self.rank_indices()
        if self.feedback is not None:
            self._mark_drawn(draw)
        return self._emit(draw, start)

    def _mark_current_draw(self) -> None:
        """Record this rank's draw of the current epoch as the indices :meth:`update` accepts."""
        self._mark_drawn(self.rank_indices())

    def _use_scores(self, scores: Tensor) -> None:
        """Rebuild what the draw derives from the scores :math:`(N,)` (online samplers implement it)."""
        raise NotImplementedError

    # -- online difficulty ---------------------------------------------------------------------
    def _enable_online(self, online: OnlineDifficulty | None, scores: Tensor, higher_is_better: bool | None) -> None:
        """Set up :attr:`feedback` for ``online`` (``None``: the sampler stays exactly as without feedback)."""
        if online is None:
            return
        check_type(online, "online", OnlineDifficulty, "an OnlineDifficulty or None")
        if higher_is_better is None:
            # Mapping losses onto the prior needs to know which end of the prior is hard.
            raise TypeError(
                "higher_is_better should be given (True or False) with online= when scores is a plain array, tensor or sequence, "
                "but got higher_is_better=None"
            )
        self.feedback = LossFeedback(scores, higher_is_better, online)
        self._epoch_scores = scores

    def _refresh(self) -> None:
        """Start of a fresh epoch: the draw uses every observation recorded so far."""
        assert self.feedback is not None  # internal invariant: only called for online samplers
        scores = self.feedback.scores()
        if scores is not self._epoch_scores:
            self._use_scores(scores)
            self._epoch_scores = scores

    def _mark_drawn(self, draw: Tensor) -> None:
        assert self.feedback is not None  # internal invariant: only called for online samplers
        drawn = torch.zeros(self.feedback.prior.numel(), dtype=torch.bool)
        drawn[draw.reshape(-1)] = True
        self._drawn = drawn

    def update(self, indices: Any, losses: Any, *, gather: bool | None = None) -> None:
        """Feed back the per-sample losses of indices this rank drew in the current epoch.

        The losses count from the next epoch on (the current draw stays as it is, so a resume or
        another rank reproduces it). Everything is checked before anything changes: a refused
        call leaves the sampler as it was.

        Under ``torch.distributed``, each rank passes its own indices and losses, and the sampler
        all-gathers them (``all_gather_object``), so every rank records the same observations and
        keeps drawing the same global sequence. Every rank must then call ``update`` at the same
        steps (it is a collective; an empty batch is fine); a bad input on any rank raises on all.

        Args:
            indices: dataset indices :math:`(B,)` (int tensor, array or sequence) drawn by this
                rank in the current epoch, as the DataLoader handed them out.
            losses: per-sample losses :math:`(B,)` (e.g. ``F.cross_entropy(..., reduction="none")``);
                any device, detached here. An index repeated in one call counts its mean loss.
            gather: all-gather across ranks; default: when ``torch.distributed`` is initialised
                with a world size equal to ``num_replicas > 1``.

        Raises:
            TypeError: the sampler was built without ``online=``; indices that are not integers;
                losses that are not real numbers.
            ValueError: not 1-D; lengths that differ; indices outside ``[0, N)`` or not in this
                rank's draw of the current epoch; NaN or infinite losses.

        Example:
            >>> from qualoader.samplers import OnlineDifficulty, QualityWeightedSampler
            >>> sampler = QualityWeightedSampler(torch.arange(8.0), higher_is_better=True, online=OnlineDifficulty(), seed=0)
            >>> batch = list(sampler)[:4]
            >>> sampler.update(batch, torch.ones(4))
            >>> int(sampler.feedback.counts.sum())
            4
        """
        if self.feedback is None:
            raise TypeError(f"online should be an OnlineDifficulty to call update(), but got online=None for {type(self).__name__}")
        if gather is None:
            gather = dist.is_available() and dist.is_initialized() and self.num_replicas > 1 and dist.get_world_size() == self.num_replicas
        check_type(gather, "gather", bool, "a bool or None")
        if gather and not (dist.is_available() and dist.is_initialized()):
            raise ValueError("gather should be False or None when torch.distributed is not initialised, but got gather=True")
        error: Exception | None = None
        index = loss = None
        try:
            index, loss = self._check_update(indices, losses)
        except (TypeError, ValueError) as exn:
            if not gather:
                raise
            error = exn  # raised on every rank below, after the collective, so that no rank waits forever
        if gather:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, (error, index, loss))
            for rank, (failure, _, _) in enumerate(parts):
                if failure is not None:
                    raise type(failure)(f"{failure} (on rank {rank})")
            index = torch.cat([part[1] for part in parts])
            loss = torch.cat([part[2] for part in parts])
        self.feedback.record(index, loss)  # type: ignore[arg-type]

    def _check_update(self, indices: Any, losses: Any) -> tuple[Tensor, Tensor]:
        assert self.feedback is not None  # internal invariant: checked by update()
        index, loss = check_feedback(indices, losses, self.feedback.prior.numel())
        if self._drawn is None and self._resume_from > 0:
            # Restored mid-epoch and not iterated yet: the epoch's draw is known all the same.
            self._mark_current_draw()
        if self._drawn is None:
            raise ValueError(
                f"indices should come from this rank's draw of the current epoch, but got indices={index.tolist()[:8]} before any draw"
            )
        foreign = ~self._drawn[index]
        if bool(foreign.any()):
            first = int(foreign.nonzero()[0, 0])
            raise ValueError(
                f"indices should be drawn by this rank (rank {self.rank}) in the current epoch {self.epoch}, but got "
                f"indices[{first}]={int(index[first])}"
            )
        return index, loss

    # -- epochs and iteration -----------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the next iteration (call it before each epoch, on every rank)."""
        self.epoch = check_positive_int(epoch, "epoch", allow_zero=True)

    def generator(self) -> torch.Generator:
        """The generator of the current epoch, seeded with ``seed + epoch``."""
        # A fresh CPU generator from (seed, epoch) alone, as DistributedSampler does: every rank draws the same
        # global sequence and shard() splits it, and a restored sampler redraws the very same epoch.
        return torch.Generator().manual_seed(self.seed + self.epoch)

    def rank_indices(self) -> Tensor:
        """This rank's share of the current epoch's draw."""
        return shard(
            self.epoch_indices(self.generator()),
            self.num_replicas,
            self.rank,
            self.drop_last,
        )

    def __len__(self) -> int:
        return per_rank_length(self.global_length(), self.num_replicas, self.drop_last)

    def __iter__(self) -> Iterator[T]:
        # The resume offset is consumed by this iteration only; the epoch after it starts from 0 again.
        start, self._resume_from = self._resume_from, 0
        if self.feedback is not None and start == 0:
            # A fresh epoch draws from every observation so far; a resumed one from the scores it began with.
            self._refresh()
        items = self._rank_items(start)
        self._position = start
        for item in items:
            self._position += 1
            yield item
        self._position = 0

    # -- save / restore -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "position", "seed"}``: enough to resume the current epoch where it stopped.

        Online samplers add ``"online"`` (the loss record, see :class:`~qualoader.samplers.feedback.LossFeedback`)
        and ``"epoch_scores"`` (the scores :math:`(N,)` the current epoch's draw was made from).
        """
        state: dict[str, Any] = {"epoch": self.epoch, "position": self._position, "seed": self.seed}
        if self.feedback is not None:
            state["online"] = self.feedback.state_dict()
            state["epoch_scores"] = self._epoch_scores.clone()  # type: ignore[union-attr]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: the next iteration yields the rest of the saved epoch.

        Everything is checked before anything changes.

        Raises:
            ValueError: missing keys, a different seed, or a position beyond the epoch's length;
                for online samplers, a loss record or scores of the wrong shape or not finite.
        """
        check_type(state, "state", dict, "a dict from state_dict()")
        keys = {"epoch", "position", "seed"} | ({"epoch_scores", "online"} if self.feedback is not None else set())
        if set(state) != keys:
            raise ValueError(f"state should have keys {sorted(keys)}, but got keys {sorted(state)}")
        # Another seed would give another draw for the epoch, and the saved position would skip the wrong items.
        if state["seed"] != self.seed:
            raise ValueError(f"state should come from a sampler with seed={self.seed}, but got state['seed']={state['seed']!r}")
        epoch = check_positive_int(state["epoch"], "state['epoch']", allow_zero=True)
        position = check_positive_int(state["position"], "state['position']", allow_zero=True)
        previous, self.epoch = self.epoch, epoch
        try:
            length = len(self)
        finally:
            self.epoch = previous
        if position > length:
            raise ValueError(f"state['position'] should be at most the epoch length {length}, but got state['position']={position}")
        if self.feedback is not None:
            self.feedback.check_state(state["online"])
            scores = state["epoch_scores"]
            if not isinstance(scores, Tensor) or scores.dtype != torch.float64 or scores.shape != self.feedback.prior.shape:
                raise ValueError(f"state['epoch_scores'] should be a float64 tensor of shape ({self.feedback.prior.numel()},)")
            if not bool(torch.isfinite(scores).all()):
                raise ValueError("state['epoch_scores'] should be finite, but got NaN/Inf values")
            self._use_scores(scores.clone())  # first: the only step that can still refuse (an empty stratum)
            self._epoch_scores = scores.clone()
            self.feedback.load_state_dict(state["online"])
            self._drawn = None
        self.epoch = epoch
        self._resume_from = position

    def _replicas_repr(self) -> str:
        return f"seed={self.seed}, num_replicas={self.num_replicas}, rank={self.rank}, drop_last={self.drop_last}"


def check_num_samples(num_samples: Any, default: int) -> int:
    """``num_samples`` (a positive int) or ``default`` for ``None``."""
    return default if num_samples is None else check_positive_int(num_samples, "num_samples")
