"""Stages for reading quality-tagged samples: range filter, reweighting, online stratification, curriculum.

Each stage reads ``sample["quality"][metric]`` / ``sample["difficulty"][metric]`` (set by
:func:`~qualoader.webdataset.annotate_quality`) or, failing that, parses the sample's
``quality.json`` member written by :func:`~qualoader.webdataset.tag_shards`. Untagged samples
go to the stage's ``handler``.

Stages are picklable classes (no lambdas), so they travel to DataLoader workers. The random ones
draw from a numpy generator seeded from ``(seed, epoch, rank, worker)`` only, where rank and
worker are what webdataset's ``split_by_node``/``split_by_worker`` use. ``set_epoch(e)`` only
stores ``e``; each pass over the stage (a DataLoader epoch, or a repetition of ``with_epoch``)
uses the stored epoch and then increments it, like webdataset's ``detshuffle``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from qualoader._validation import check_choice, check_positive_int, check_type
from qualoader.samplers.curriculum import PACINGS, pacing_fraction
from qualoader.webdataset._common import (
    Handler,
    UniformStream,
    check_field,
    lookup_tag,
    make_rng,
    resolve_handler,
)

__all__ = [
    "Curriculum",
    "FilterQuality",
    "QualityWeight",
    "QuantileSketch",
    "Reweight",
    "Stratify",
    "TrainingProgress",
    "curriculum",
    "filter_quality",
    "reweight",
    "stratify",
]



def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} should be a real number, but got {name} of type {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} should be finite, but got {name}={value}")
    return float(value)


def _check_metric(metric: Any) -> str:
    if not isinstance(metric, str) or not metric:
        raise TypeError(f"metric should be a metric name (non-empty str), but got metric={metric!r}")
    return metric


def _check_seed(seed: Any) -> int:
    return check_positive_int(seed, "seed", allow_zero=True)


class _SeededStage:
    """Base of the random stages: ``seed``, a stored ``epoch`` and one generator per pass."""

    def __init__(self, seed: int) -> None:
        self.seed = _check_seed(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Store the epoch used by the next pass (nothing else happens)."""
        self.epoch = check_positive_int(epoch, "epoch", allow_zero=True)

    def _next_rng(self) -> np.random.Generator:
        rng = make_rng(self.seed, self.epoch)
        self.epoch += 1
        return rng


# -- range filter ---------------------------------------------------------------------------------
class FilterQuality:
    """Keep samples whose tag lies in ``[low, high]``; see :func:`filter_quality`."""

    def __init__(self, metric: str, low: float, high: float, field: str, handler: Handler) -> None:
        self.metric = metric
        self.low = low
        self.high = high
        self.field = field
        self.handler = handler

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for sample in source:
            try:
                value = lookup_tag(sample, self.field, self.metric)
            except Exception as exn:  # noqa: BLE001 - every error goes to the explicit handler
                if self.handler(exn):
                    continue
                break
            if self.low <= value <= self.high:  # NaN never passes
                yield sample

    def __repr__(self) -> str:
        return f"FilterQuality(metric={self.metric!r}, field={self.field!r}, low={self.low}, high={self.high})"


def filter_quality(
    metric: str,
    low: float | None = None,
    high: float | None = None,
    *,
    field: str = "quality",
    handler: str | Handler = "raise",
) -> FilterQuality:
    """Stage keeping the samples with ``low <= sample[field][metric] <= high``.

    Args:
        metric: metric name as tagged (e.g. ``"sharpness"``).
        low: inclusive lower bound (``None``: unbounded).
        high: inclusive upper bound (``None``: unbounded).
        field: ``"quality"`` (the score) or ``"difficulty"`` (calibrated expected error).
        handler: ``"raise"``, ``"skip"`` or a handler for untagged samples.

    Example:
        >>> dataset = wds.WebDataset(urls, shardshuffle=False).compose(filter_quality("sharpness", low=0.01))  # doctest: +SKIP
    """
    lo = -math.inf if low is None else _check_number(low, "low")
    hi = math.inf if high is None else _check_number(high, "high")
    if lo > hi:
        raise ValueError(f"high should be >= low ({lo}), but got high={hi}")
    return FilterQuality(_check_metric(metric), lo, hi, check_field(field), resolve_handler(handler))


# -- reweighting ----------------------------------------------------------------------------------
class QualityWeight:
    """Picklable weight function ``scale * sample[field][metric] ** exponent``.

    Args:
        metric: metric name as tagged.
        field: ``"quality"`` or ``"difficulty"``.
        exponent: power applied to the (non-negative) value.
        scale: multiplier; the weight is the expected number of copies of the sample.
    """

    def __init__(self, metric: str, *, field: str = "difficulty", exponent: float = 1.0, scale: float = 1.0) -> None:
        self.metric = _check_metric(metric)
        self.field = check_field(field)
        self.exponent = _check_number(exponent, "exponent")
        self.scale = _check_number(scale, "scale")
        if self.scale < 0:
            raise ValueError(f"scale should be >= 0, but got scale={scale}")

    def __call__(self, sample: dict[str, Any]) -> float:
        value = lookup_tag(sample, self.field, self.metric)
        if not value >= 0:
            raise ValueError(f"sample[{self.field!r}][{self.metric!r}] should be >= 0 to be used as a weight, but got {value}")
        return self.scale * value**self.exponent

    def __repr__(self) -> str:
        return f"QualityWeight({self.metric!r}, field={self.field!r}, exponent={self.exponent}, scale={self.scale})"


class Reweight(_SeededStage):
    """Per-sample resampling by weight; see :func:`reweight`."""

    def __init__(self, weight: Callable[[dict[str, Any]], float], max_repeats: int, seed: int, handler: Handler) -> None:
        super().__init__(seed)
        self.weight = weight
        self.max_repeats = max_repeats
        self.handler = handler

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        uniform = UniformStream(self._next_rng())
        for sample in source:
            try:
                weight = float(self.weight(sample))
                if not (weight >= 0 and math.isfinite(weight)):
                    raise ValueError(f"weight should be a finite number >= 0, but got weight={weight} for sample {sample.get('__key__')!r}")
            except Exception as exn:  # noqa: BLE001 - every error goes to the explicit handler
                if self.handler(exn):
                    continue
                break
            whole = math.floor(weight)
            copies = min(self.max_repeats, whole + (uniform() < weight - whole))
            for copy in range(copies):
                yield sample if copy == 0 else dict(sample)

    def __repr__(self) -> str:
        return f"Reweight(weight={self.weight!r}, max_repeats={self.max_repeats}, seed={self.seed})"


def reweight(
    weight: str | Callable[[dict[str, Any]], float],
    *,
    field: str = "difficulty",
    exponent: float = 1.0,
    scale: float = 1.0,
    max_repeats: int = 16,
    seed: int = 0,
    handler: str | Handler = "raise",
) -> Reweight:
    """Stage emitting each sample ``floor(w) + Bernoulli(frac(w))`` times, ``w`` its weight.

    The expected number of copies of a sample equals its weight, so weights below 1 thin the
    stream and weights above 1 repeat samples (shallow copies), capped at ``max_repeats``.

    Args:
        weight: a metric name (weight ``scale * sample[field][name] ** exponent``, see
            :class:`QualityWeight`) or a picklable callable ``sample -> weight >= 0``.
        field: ``"quality"`` or ``"difficulty"`` (used with a metric name).
        exponent: power of the tag value (used with a metric name).
        scale: multiplier of the tag value (used with a metric name).
        max_repeats: most copies of one sample.
        seed: base seed; draws depend on ``(seed, epoch, rank, worker)`` only.
        handler: ``"raise"``, ``"skip"`` or a handler for untagged samples or bad weights.

    Example:
        >>> hard_first = reweight("sharpness", field="difficulty", scale=2.0, seed=0)  # doctest: +SKIP
    """
    if isinstance(weight, str):
        weight_fn: Callable[[dict[str, Any]], float] = QualityWeight(weight, field=field, exponent=exponent, scale=scale)
    elif callable(weight):
        weight_fn = weight
    else:
        raise TypeError(f"weight should be a metric name or a callable sample -> float, but got weight of type {type(weight).__name__}")
    check_positive_int(max_repeats, "max_repeats")
    return Reweight(weight_fn, max_repeats, _check_seed(seed), resolve_handler(handler))


# -- online stratification ------------------------------------------------------------------------
class QuantileSketch:
    """Running quantile sketch: a seeded uniform reservoir of at most ``capacity`` values, kept sorted.

    Memory is bounded by ``capacity`` whatever the stream length; quantiles and ranks have the
    error of a uniform sample of that size (about ``1 / sqrt(capacity)``).

    Args:
        capacity: reservoir size.
        rng: generator deciding which values the reservoir keeps.

    Example:
        >>> sketch = QuantileSketch(256, np.random.default_rng(0))
        >>> for value in range(1000):
        ...     sketch.update(float(value))
        >>> 400 < sketch.quantile(0.5) < 600
        True
    """

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = check_positive_int(capacity, "capacity")
        self.count = 0
        self._uniform = UniformStream(rng)
        self._reservoir: list[float] = []
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._sorted)

    def update(self, value: float) -> None:
        """Add one finite value."""
        if not math.isfinite(value):
            raise ValueError(f"value should be finite, but got value={value}")
        self.count += 1
        if len(self._reservoir) < self.capacity:
            self._reservoir.append(value)
            insort(self._sorted, value)
            return
        slot = int(self._uniform() * self.count)
        if slot < self.capacity:
            old = self._reservoir[slot]
            del self._sorted[bisect_left(self._sorted, old)]
            self._reservoir[slot] = value
            insort(self._sorted, value)

    def cdf(self, value: float) -> float:
        """Estimated fraction of the stream below ``value`` (ties count half)."""
        if not self._sorted:
            raise ValueError("the sketch should have seen a value before cdf(), but got an empty sketch")
        below = bisect_left(self._sorted, value)
        not_above = bisect_right(self._sorted, value)
        return (below + not_above) / (2.0 * len(self._sorted))

    def quantile(self, q: float) -> float:
        """Estimated ``q``-quantile, ``q`` in [0, 1]."""
        if not self._sorted:
            raise ValueError("the sketch should have seen a value before quantile(), but got an empty sketch")
        index = min(len(self._sorted) - 1, max(0, math.ceil(q * len(self._sorted)) - 1))
        return self._sorted[index]


class Stratify(_SeededStage):
    """Online stratified re-emission with bounded buffers; see :func:`stratify`.

    After (or during) a pass, ``max_buffered`` is the largest per-stratum buffer length seen,
    ``received`` / ``emitted`` count samples per stratum and ``dropped`` the evicted or
    left-over ones.
    """

    def __init__(
        self,
        metric: str,
        proportions: tuple[float, ...],
        field: str,
        buffer_size: int,
        boundaries: tuple[float, ...] | None,
        sketch_size: int,
        warmup: int,
        drain: bool,
        seed: int,
        handler: Handler,
    ) -> None:
        super().__init__(seed)
        self.metric = metric
        self.proportions = proportions
        self.field = field
        self.buffer_size = buffer_size
        self.boundaries = boundaries
        self.sketch_size = sketch_size
        self.warmup = warmup
        self.drain = drain
        self.handler = handler
        self._reset_stats()

    def _reset_stats(self) -> None:
        strata = len(self.proportions)
        self.max_buffered = 0
        self.received = [0] * strata
        self.emitted = [0] * strata
        self.dropped = 0

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        rng = self._next_rng()
        uniform = UniformStream(rng)
        sketch = None if self.boundaries is not None else QuantileSketch(self.sketch_size, rng)
        strata = len(self.proportions)
        buffers: list[deque[dict[str, Any]]] = [deque() for _ in range(strata)]
        pending: list[tuple[float, dict[str, Any]]] = []
        self._reset_stats()
        total = 0

        def admit(value: float, sample: dict[str, Any]) -> None:
            if sketch is None:
                stratum = bisect_right(self.boundaries or (), value)
            else:
                stratum = min(strata - 1, int(sketch.cdf(value) * strata))
            self.received[stratum] += 1
            buffer = buffers[stratum]
            if len(buffer) >= self.buffer_size:  # full: a random element makes room
                buffer[int(uniform() * len(buffer))] = sample
                self.dropped += 1
            else:
                buffer.append(sample)
                self.max_buffered = max(self.max_buffered, len(buffer))

        def most_lacking(only_nonempty: bool) -> int | None:
            best, best_gap = None, -math.inf
            for k in range(strata):
                if self.proportions[k] == 0 or (only_nonempty and not buffers[k]):
                    continue
                gap = self.proportions[k] * (total + 1) - self.emitted[k]
                if gap > best_gap:
                    best, best_gap = k, gap
            return best

        def emit(only_nonempty: bool) -> Iterator[dict[str, Any]]:
            nonlocal total
            while (k := most_lacking(only_nonempty)) is not None and buffers[k]:
                self.emitted[k] += 1
                total += 1
                yield buffers[k].popleft()

        for sample in source:
            try:
                value = lookup_tag(sample, self.field, self.metric)
                if not math.isfinite(value):
                    raise ValueError(f"sample[{self.field!r}][{self.metric!r}] should be finite to be stratified, but got {value}")
            except Exception as exn:  # noqa: BLE001 - every error goes to the explicit handler
                if self.handler(exn):
                    continue
                break
            pending.append((value, sample))
            if sketch is not None:
                sketch.update(value)
                if sketch.count < self.warmup:
                    continue
            for item in pending:
                admit(*item)
                yield from emit(False)
            pending = []
        for item in pending:  # a stream shorter than the warm-up
            admit(*item)
            yield from emit(False)
        if self.drain:
            yield from emit(True)
        self.dropped += sum(len(buffer) for buffer in buffers)

    def __repr__(self) -> str:
        return f"Stratify(metric={self.metric!r}, proportions={list(self.proportions)}, buffer_size={self.buffer_size}, seed={self.seed})"


def stratify(
    metric: str,
    proportions: Sequence[float],
    *,
    field: str = "quality",
    buffer_size: int = 256,
    boundaries: Sequence[float] | None = None,
    sketch_size: int = 2048,
    warmup: int = 256,
    drain: bool = False,
    seed: int = 0,
    handler: str | Handler = "raise",
) -> Stratify:
    """Stage re-emitting samples so that strata of the tag appear in target proportions.

    Strata: with ``boundaries`` (sorted), stratum ``k`` holds values in
    ``[boundaries[k-1], boundaries[k])``; without, the ``K = len(proportions)`` strata are the
    equal-frequency bins of the value distribution, estimated online by a
    :class:`QuantileSketch` of ``sketch_size`` values (the first ``warmup`` samples only feed the
    sketch, then are assigned). Each stratum has a buffer of at most ``buffer_size`` samples; a
    full buffer evicts a random element (seeded). Samples leave from the stratum furthest below
    its target share, so the output proportions converge to ``proportions``; the stream is
    thinned as needed (strata over-represented in the input lose samples). Memory stays bounded
    by ``K * buffer_size + warmup + sketch_size`` samples/values.

    Args:
        metric: metric name as tagged.
        proportions: target share of each stratum, non-negative, summing to a positive value
            (normalised), at least two entries.
        field: ``"quality"`` or ``"difficulty"``.
        buffer_size: bound of each stratum's buffer.
        boundaries: fixed strata edges (``len(proportions) - 1`` increasing values), or ``None``.
        sketch_size: reservoir size of the quantile sketch.
        warmup: samples held to seed the sketch before any is assigned (``<= sketch_size``).
        drain: at the end of the stream, also emit what is left in the buffers (out of
            proportion); by default, leftovers that would break the proportions are dropped.
        seed: base seed; draws depend on ``(seed, epoch, rank, worker)`` only.
        handler: ``"raise"``, ``"skip"`` or a handler for untagged or non-finite samples.

    Example:
        >>> balanced = stratify("sharpness", [0.25, 0.25, 0.25, 0.25], buffer_size=128, seed=0)  # doctest: +SKIP
    """
    _check_metric(metric)
    if isinstance(proportions, (str, bytes)) or not isinstance(proportions, Sequence):
        raise TypeError(f"proportions should be a sequence of floats, but got proportions of type {type(proportions).__name__}")
    shares = tuple(_check_number(p, "proportions[i]") for p in proportions)
    if len(shares) < 2 or min(shares) < 0 or sum(shares) <= 0:
        raise ValueError(f"proportions should hold >= 2 non-negative values with a positive sum, but got proportions={list(proportions)}")
    shares = tuple(p / sum(shares) for p in shares)
    edges = None
    if boundaries is not None:
        if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence):
            raise TypeError(f"boundaries should be a sequence of floats, but got boundaries of type {type(boundaries).__name__}")
        edges = tuple(_check_number(b, "boundaries[i]") for b in boundaries)
        if len(edges) != len(shares) - 1 or any(b <= a for a, b in pairwise(edges)):
            raise ValueError(f"boundaries should be {len(shares) - 1} increasing values (one fewer than proportions), but got boundaries={list(boundaries)}")
    check_positive_int(buffer_size, "buffer_size")
    check_positive_int(sketch_size, "sketch_size")
    check_positive_int(warmup, "warmup", allow_zero=True)
    if warmup > sketch_size:
        raise ValueError(f"warmup should be <= sketch_size ({sketch_size}), but got warmup={warmup}")
    check_type(drain, "drain", bool, "a bool")
    return Stratify(_check_metric(metric), shares, check_field(field), buffer_size, edges, sketch_size, warmup, drain, _check_seed(seed), resolve_handler(handler))


# -- curriculum -----------------------------------------------------------------------------------
class TrainingProgress:
    """Training progress in [0, 1], shared with DataLoader workers.

    The value lives in a shared-memory tensor, so ``progress.set(t)`` in the training process is
    seen by workers started before the call (persistent workers, fork or spawn).

    Example:
        >>> progress = TrainingProgress()
        >>> progress.set(0.5)
        >>> progress.get()
        0.5
    """

    def __init__(self, value: float = 0.0) -> None:
        self._value = torch.zeros(1, dtype=torch.float64).share_memory_()
        self.set(value)

    def set(self, value: float) -> None:
        """Set the progress (a float in [0, 1])."""
        value = _check_number(value, "value")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"value should be in [0, 1], but got value={value}")
        self._value[0] = value

    def get(self) -> float:
        """The current progress."""
        return float(self._value[0])

    def __repr__(self) -> str:
        return f"TrainingProgress({self.get():.4g})"


class Curriculum(_SeededStage):
    """Difficulty- and progress-dependent acceptance; see :func:`curriculum`."""

    def __init__(
        self,
        metric: str,
        progress: TrainingProgress,
        start: float,
        pacing: str,
        temperature: float,
        seed: int,
        handler: Handler,
    ) -> None:
        super().__init__(seed)
        self.metric = metric
        self.progress = progress
        self.start = start
        self.pacing = pacing
        self.temperature = temperature
        self.handler = handler

    def set_progress(self, value: float) -> None:
        """Set the training progress in [0, 1] (shared with workers, see :class:`TrainingProgress`)."""
        self.progress.set(value)

    def competence(self, progress: float | None = None) -> float:
        """Largest difficulty accepted for sure at ``progress`` (default: the current one)."""
        return pacing_fraction(self.pacing, self.progress.get() if progress is None else progress, self.start)

    def acceptance(self, difficulty: float, progress: float | None = None) -> float:
        """Probability of keeping a sample of ``difficulty`` at ``progress``."""
        excess = difficulty - self.competence(progress)
        if excess <= 0:
            return 1.0
        return 0.0 if self.temperature == 0 else math.exp(-excess / self.temperature)

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        uniform = UniformStream(self._next_rng())
        for sample in source:
            try:
                difficulty = lookup_tag(sample, "difficulty", self.metric)
            except Exception as exn:  # noqa: BLE001 - every error goes to the explicit handler
                if self.handler(exn):
                    continue
                break
            if uniform() < self.acceptance(difficulty):
                yield sample

    def __repr__(self) -> str:
        return f"Curriculum(metric={self.metric!r}, progress={self.progress.get():.4g}, start={self.start}, pacing={self.pacing!r}, temperature={self.temperature}, seed={self.seed})"


def curriculum(
    metric: str,
    *,
    progress: TrainingProgress | float = 0.0,
    start: float = 0.2,
    pacing: str = "root",
    temperature: float = 0.05,
    seed: int = 0,
    handler: str | Handler = "raise",
) -> Curriculum:
    """Stage accepting easy samples early and harder ones as training progresses.

    A sample of difficulty ``d`` (``sample["difficulty"][metric]``, expected error in [0, 1],
    present when the metric was calibrated) is kept with probability 1 when
    ``d <= c(t)`` and ``exp(-(d - c(t)) / temperature)`` otherwise (0 if ``temperature == 0``),
    where the competence ``c(t)`` grows from ``start`` at ``t = 0`` to 1 at ``t = 1``:
    one of :data:`qualoader.samplers.PACINGS`, e.g. ``"root"``: ``sqrt(t (1 - start^2) + start^2)``
    (competence-based curriculum, Platanios et al. 2019), as in :class:`~qualoader.samplers.CurriculumSampler`.

    Args:
        metric: metric name as tagged.
        progress: a :class:`TrainingProgress` (update it from the training loop, or call
            ``stage.set_progress(t)``) or an initial value in [0, 1].
        start: competence at ``t = 0``, in [0, 1].
        pacing: ``"linear"``, ``"root"``, ``"step"`` or ``"exp"`` (see :func:`~qualoader.samplers.pacing_fraction`).
        temperature: softness of the rejection of too-hard samples (>= 0).
        seed: base seed; draws depend on ``(seed, epoch, rank, worker)`` only.
        handler: ``"raise"``, ``"skip"`` or a handler for samples without difficulty.

    Example:
        >>> stage = curriculum("sharpness", start=0.3)
        >>> stage.acceptance(0.2, progress=0.0), stage.acceptance(0.9, progress=1.0)
        (1.0, 1.0)
    """
    _check_metric(metric)
    if not isinstance(progress, TrainingProgress):
        progress = TrainingProgress(_check_number(progress, "progress"))
    start = _check_number(start, "start")
    if not 0.0 <= start <= 1.0:
        raise ValueError(f"start should be in [0, 1], but got start={start}")
    check_choice(pacing, "pacing", PACINGS)
    temperature = _check_number(temperature, "temperature")
    if temperature < 0:
        raise ValueError(f"temperature should be >= 0, but got temperature={temperature}")
    return Curriculum(metric, progress, start, pacing, temperature, _check_seed(seed), resolve_handler(handler))
