"""What every quality stream stage shares: where tags live in a sample, reading them under the
error handler, and seeding.

Tags travel in the sample under double-underscore keys (:data:`QUALITY_KEY`,
:data:`DIFFICULTY_KEY`, :data:`FINGERPRINTS_KEY`), the keys webdataset's ``Decoder`` passes
through untouched (``autodecode.Decoder.decode`` skips every key starting with ``"__"``, like
``__key__`` and ``__url__``), so the stages sit before or after ``.decode(...)``. A sample that
has no such entry yet is read from its ``quality.json`` member, raw bytes or already decoded to a
dict by ``.decode``.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from qualoader._validation import check_choice, check_positive_int, check_type
from qualoader.policies import OnlineDifficulty
from qualoader.samplers.feedback import check_feedback, record_losses
from qualoader.webdataset._common import Handler, make_rng
from qualoader.webdataset.quantile_sketch import QuantileSketch
from qualoader.webdataset.tag_format import TAG_MEMBER, MissingTagError, parse_tag

__all__ = [
    "DIFFICULTY_KEY",
    "FIELDS",
    "FINGERPRINTS_KEY",
    "QUALITY_KEY",
    "SeededStage",
    "StreamLosses",
    "TagValue",
    "check_field",
    "check_metric",
    "lookup_tag",
    "read_values",
    "stream_ranks",
]

V = TypeVar("V")

#: Sample entry holding ``{metric name: score}``.
QUALITY_KEY = "__quality__"
#: Sample entry holding ``{metric name: difficulty}`` (calibrated metrics only).
DIFFICULTY_KEY = "__difficulty__"
#: Sample entry holding ``{metric name: fingerprint}`` (set by :func:`~qualoader.webdataset.parse_quality_tags`).
FINGERPRINTS_KEY = "__fingerprints__"
#: Which tag a stage reads: the score (``"quality"``) or the calibrated expected error (``"difficulty"``).
FIELDS = {"quality": QUALITY_KEY, "difficulty": DIFFICULTY_KEY}


def check_field(field: Any) -> str:
    """Return ``field`` if it is ``"quality"`` or ``"difficulty"``."""
    check_choice(field, "field", frozenset(FIELDS))
    return field


def check_metric(metric: Any) -> str:
    """Return ``metric`` if it is a non-empty metric name."""
    if not isinstance(metric, str) or not metric:
        raise TypeError(f"metric should be a metric name (non-empty str), but got metric={metric!r}")
    return metric


def lookup_tag(sample: dict[str, Any], field: str, metric: str) -> float:
    """The ``field`` (``"quality"`` or ``"difficulty"``) value of ``metric`` carried by ``sample``.

    Reads ``sample["__quality__"]`` / ``sample["__difficulty__"]`` (set by
    :func:`~qualoader.webdataset.annotate_quality` or an earlier lookup) or parses the
    ``quality.json`` member once and caches both entries in the sample.

    Raises:
        MissingTagError: the sample has no tag, or none for ``metric``.
    """
    key = FIELDS[field]
    values = sample.get(key)
    if not isinstance(values, dict):
        member = sample.get(TAG_MEMBER)
        if member is None:
            raise MissingTagError(
                f"sample {sample.get('__key__')!r} should carry a {TAG_MEMBER} member or a {key!r} entry, but got neither"
            )
        tag = parse_tag(member)
        # Both entries cached, so the next stage in the chain does not parse quality.json again; setdefault
        # keeps entries an earlier annotate_quality already put there.
        sample.setdefault(QUALITY_KEY, tag["quality"])
        sample.setdefault(DIFFICULTY_KEY, tag["difficulty"])
        values = sample[key]
    if metric not in values:
        raise MissingTagError(
            f"sample {sample.get('__key__')!r} should have a {field} for metric {metric!r}, but got {field} for {sorted(values)}"
        )
    return float(values[metric])


@dataclass(frozen=True)
class TagValue:
    """Picklable reader of one tag value: ``TagValue("quality", "sharpness")(sample) -> float``.

    Args:
        field: ``"quality"`` or ``"difficulty"``.
        metric: metric name as tagged.
        finite: also refuse NaN and infinite values (stages that bin or weigh them).
    """

    field: str
    metric: str
    finite: bool = False

    def __call__(self, sample: dict[str, Any]) -> float:
        value = lookup_tag(sample, self.field, self.metric)
        if self.finite and not math.isfinite(value):
            raise ValueError(
                f"sample[{FIELDS[self.field]!r}][{self.metric!r}] should be finite, but got {value} in sample {sample.get('__key__')!r}"
            )
        return value


def read_values(
    source: Iterable[dict[str, Any]], read: Callable[[dict[str, Any]], V], handler: Handler
) -> Iterator[tuple[dict[str, Any], V]]:
    """Yield ``(sample, read(sample))``; a sample whose read raises goes to ``handler``.

    The handler follows webdataset's protocol: ``True`` skips the sample, ``False`` ends the
    stream, raising propagates. Every stage reads its input through this one loop.
    """
    for sample in source:
        try:
            value = read(sample)
        except Exception as exn:  # noqa: BLE001 - every error goes to the explicit handler
            if handler(exn):
                continue
            break
        yield sample, value


class SeededStage:
    """Mixin of the random stages: a ``seed``, a stored ``epoch`` and one generator per pass.

    ``set_epoch(e)`` only stores ``e``; each pass over the stage (a DataLoader epoch, or a
    repetition of ``with_epoch``) draws from ``(seed, epoch, rank, worker)`` and then increments
    the epoch, like webdataset's ``detshuffle``.
    """

    seed: int
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Store the epoch used by the next pass (nothing else happens)."""
        self.epoch = check_positive_int(epoch, "epoch", allow_zero=True)

    def _next_rng(self) -> np.random.Generator:
        # Increment after drawing: with_epoch/repeat call the stage again without set_epoch, and each pass
        # must draw anew (webdataset's detshuffle does the same).
        rng = make_rng(self.seed, self.epoch)
        self.epoch += 1
        return rng


class StreamLosses:
    """Per-sample losses the training loop feeds back to stream stages, shared with DataLoader workers.

    The stream counterpart of a sampler's ``update`` (:class:`~qualoader.policies.OnlineDifficulty`):
    ``losses.update(keys, per_sample_losses)`` in the training process records each sample by its
    ``__key__``, in shared memory, so stages running in workers started before the call see it
    (as :class:`TrainingProgress`). A stage given ``online=losses`` reads a snapshot at the start of
    each pass: a sample observed ``n`` times has its difficulty blended with its loss, mapped onto the
    difficulties of the stream by rank, with weight ``n / (n + prior_strength)``; samples never
    observed keep their difficulty. Keys are hashed to ``size`` slots (two keys may share one, with
    probability about ``keys / size`` per key: keep ``size`` well above the number of samples);
    memory is 16 bytes per slot. A stream cannot know which samples this rank was served, so unlike
    a sampler's ``update``, keys are not checked against the draw.

    Args:
        size: number of slots (default ``2**22``: 64 MiB, for up to a few hundred thousand samples).
        policy: how prior and loss are blended (default ``OnlineDifficulty()``).

    Example:
        >>> losses = StreamLosses(1024)
        >>> losses.update(["a", "b"], [0.5, 2.0])
        >>> losses.observations("b")
        (1, 2.0)
    """

    __slots__ = ("_counts", "_losses", "policy", "size")

    def __init__(self, size: int = 1 << 22, *, policy: OnlineDifficulty | None = None) -> None:
        self.size = check_positive_int(size, "size")
        policy = OnlineDifficulty() if policy is None else policy
        check_type(policy, "policy", OnlineDifficulty, "an OnlineDifficulty or None")
        self.policy = policy
        # In shared memory from the start, as TrainingProgress: a forked worker must see later updates.
        self._counts = torch.zeros(size, dtype=torch.int64).share_memory_()
        self._losses = torch.zeros(size, dtype=torch.float64).share_memory_()

    def slot(self, key: str) -> int:
        """The slot of a sample key (a stable hash: the same in every process and run)."""
        # Not hash(): Python salts str hashes per process, and workers must find the slots the trainer wrote.
        return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little") % self.size

    def update(self, keys: Sequence[str], losses: Any) -> None:
        """Record per-sample ``losses`` :math:`(B,)` of the samples with ``keys`` (``B`` str); checked before anything changes.

        Raises:
            TypeError: keys not a sequence of str; losses not real numbers.
            ValueError: lengths that differ; NaN or infinite losses.
        """
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence) or not all(isinstance(key, str) for key in keys):
            raise TypeError(f"keys should be a sequence of str (the samples' __key__), but got keys={keys!r:.80}")
        slots, values = check_feedback([self.slot(key) for key in keys] or np.zeros(0, dtype=np.int64), losses, self.size)
        record_losses(self._counts, self._losses, slots, values, self.policy.momentum)

    def observations(self, key: str) -> tuple[int, float]:
        """``(count, loss)`` recorded for ``key`` (``(0, 0.0)`` if never observed)."""
        slot = self.slot(key)
        return int(self._counts[slot]), float(self._losses[slot])

    def snapshot(self) -> LossSnapshot:
        """A copy of the record for one pass (updates during the pass count from the next one)."""
        return LossSnapshot(self, self._counts.numpy().copy(), self._losses.numpy().copy())

    def __getstate__(self) -> dict[str, Any]:
        # __slots__ without __dict__: pickled by hand so the shared tensors travel to workers as torch shares them.
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"StreamLosses(size={self.size}, observed={int((self._counts > 0).sum())}, policy={self.policy})"


class LossSnapshot:
    """One pass's view of a :class:`StreamLosses`: per key, the loss quantile among observed samples and its blend weight."""

    def __init__(self, source: StreamLosses, counts: np.ndarray, losses: np.ndarray) -> None:
        self._source = source
        self._counts = counts
        self._losses = losses
        self._sorted = np.sort(losses[counts > 0])

    @property
    def empty(self) -> bool:
        return self._sorted.size == 0

    def lookup(self, key: Any) -> tuple[float, float] | None:
        """``(loss quantile in (0, 1), blend weight)`` of an observed key, else ``None``."""
        if not isinstance(key, str):
            return None
        slot = self._source.slot(key)
        count = int(self._counts[slot])
        if count == 0:
            return None
        loss = float(self._losses[slot])
        # Mid-rank, as the QuantileSketch ranks: tied losses share the middle of their range.
        quantile = (bisect_left(self._sorted, loss) + bisect_right(self._sorted, loss)) / (2.0 * self._sorted.size)
        return quantile, count / (count + self._source.policy.prior_strength)


def _rank_pending(
    pending: list[tuple[dict[str, Any], float]], blend: Callable[[dict[str, Any], float], float], sketch: QuantileSketch | None
) -> list[tuple[dict[str, Any], float, float]]:
    values = [(sample, blend(sample, value)) for sample, value in pending]
    if sketch is None:
        return [(sample, value, math.nan) for sample, value in values]
    for _, value in values:  # all in the sketch before any is ranked, as for the warm-up of the prior's sketch
        sketch.update(value)
    return [(sample, value, sketch.cdf(value)) for sample, value in values]


def stream_ranks(
    samples: Iterable[tuple[dict[str, Any], float]],
    rng: np.random.Generator,
    sketch_size: int,
    warmup: int,
    online: StreamLosses | None = None,
    *,
    higher_is_harder: bool,
    ranked: bool = True,
) -> Iterator[tuple[dict[str, Any], float, float]]:
    """``(sample, value, rank)``: each value and its estimated CDF in the stream, the stages' one ranking.

    Ranks come from a :class:`QuantileSketch`; the first ``warmup`` samples are held until it has
    seen them. With ``online`` and a non-empty record, a sample observed ``n`` times has its value
    blended with its loss: the loss's quantile among observed losses is read off a sketch of the
    values (from the hard end: the top when ``higher_is_harder``, else the bottom) and weighs
    ``n / (n + prior_strength)``; the value yielded is the blend, and the rank is the blend's. The
    record is read once, at the start of the pass.

    Args:
        samples: ``(sample, value)`` pairs (a finite tag value, or a function of it).
        rng: the pass's generator (the sketches' reservoir draws).
        sketch_size: reservoir of each sketch.
        warmup: samples held before the first is ranked (or blended).
        online: per-sample losses fed back by the training loop, or ``None``.
        higher_is_harder: the value's direction (a difficulty: ``True``; an easiness: ``False``).
        ranked: whether ranks are wanted; without them (fixed edges) and without observations the
            samples pass straight through, NaN for the rank.
    """
    snapshot = None if online is None else online.snapshot()
    if snapshot is None or snapshot.empty:
        if not ranked:
            yield from ((sample, value, math.nan) for sample, value in samples)
            return
        values = QuantileSketch(sketch_size, rng)
        pending: list[tuple[dict[str, Any], float]] = []
        for sample, value in samples:
            pending.append((sample, value))
            values.update(value)
            if values.count < warmup:
                continue
            yield from ((held, held_value, values.cdf(held_value)) for held, held_value in pending)
            pending = []
        yield from ((held, held_value, values.cdf(held_value)) for held, held_value in pending)  # a stream shorter than the warm-up
        return
    # Two sketches: the values (the scale a loss quantile is read off, as a sampler reads its prior's) and the
    # blended values (what the samples are ranked by).
    values = QuantileSketch(sketch_size, rng)
    blended = QuantileSketch(sketch_size, rng) if ranked else None

    def blend(sample: dict[str, Any], value: float) -> float:
        found = snapshot.lookup(sample.get("__key__"))
        if found is None:
            return value
        quantile, weight = found
        mapped = values.quantile(quantile if higher_is_harder else 1.0 - quantile)
        return (1 - weight) * value + weight * mapped

    pending = []
    for sample, value in samples:
        pending.append((sample, value))
        values.update(value)
        if values.count < warmup:
            continue
        yield from _rank_pending(pending, blend, blended)
        pending = []
    yield from _rank_pending(pending, blend, blended)
