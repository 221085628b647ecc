"""Online stratification stage: re-emit a stream so that quality strata appear in target proportions."""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

from qualoader._validation import check_positive_int, check_type
from qualoader.policies import check_proportions, resolve_direction, resolve_num_strata
from qualoader.webdataset._common import Handler, UniformStream, resolve_handler
from qualoader.webdataset._stage import SeededStage, StreamLosses, TagValue, check_field, check_metric, read_values, stream_ranks

__all__ = ["Stratify", "stratify"]


@dataclass(eq=False)
class Stratify(SeededStage):
    """Stage re-emitting samples so that strata of a tag appear in target proportions.

    Strata and proportions follow the samplers' vocabulary (:mod:`qualoader.policies`, as in
    :class:`~qualoader.samplers.QualityStratifiedSampler`): with ``edges``, stratum ``k`` holds
    values in ``[edges[k-1], edges[k])``; otherwise the ``num_strata`` strata are the
    equal-frequency bins of the value distribution, estimated online by a :class:`QuantileSketch`
    of ``sketch_size`` values (the first ``warmup`` samples only feed the sketch, then are
    assigned). Each stratum has a buffer of at most ``buffer_size`` samples; a full buffer evicts
    a random element (seeded). Samples leave from the stratum furthest below its target share,
    so the output proportions converge to ``proportions``; the stream is thinned as needed
    (strata over-represented in the input lose samples). Memory stays bounded by
    ``K * buffer_size + warmup + sketch_size`` samples/values. :func:`stratify` is the same class.

    After (or during) a pass, ``max_buffered`` is the largest per-stratum buffer length seen,
    ``received`` / ``emitted`` count samples per stratum and ``dropped`` the evicted or
    left-over ones.

    Args:
        metric: metric name as tagged.
        num_strata: number of strata ``K`` (default: ``len(edges) + 1``, the length of a list of
            ``proportions``, else 4).
        edges: fixed strata edges (``K - 1`` strictly increasing values), or ``None`` for quantile strata.
        proportions: ``"uniform"`` (default), ``"natural"`` (the input's own shares: no
            rebalancing) or ``K`` non-negative floats summing to 1, stratum 0 (lowest values) first.
        field: ``"quality"`` (default) or ``"difficulty"``.
        buffer_size: bound of each stratum's buffer.
        sketch_size: reservoir size of the quantile sketch.
        warmup: samples held to seed the sketch before any is assigned (``<= sketch_size``).
        drain: at the end of the stream, also emit what is left in the buffers (out of
            proportion); by default, leftovers that would break the proportions are dropped.
        higher_is_better: direction of ``field="quality"`` tags, needed only with ``online`` (to map
            losses onto the tags' hard end); a ``"difficulty"`` is always lower-is-better.
        online: a :class:`~qualoader.webdataset.StreamLosses` the training loop feeds per-sample
            losses back to: each pass assigns strata by the tag blended with the observed loss, as
            :func:`~qualoader.webdataset.curriculum` ranks (default ``None``).
        seed: base seed; draws depend on ``(seed, epoch, rank, worker)`` only.
        handler: ``"raise"``, ``"skip"`` or a handler for untagged or non-finite samples.

    Example:
        >>> samples = [{"__key__": str(i), "__quality__": {"m": i % 4 / 4}} for i in range(400)]
        >>> stage = stratify("m", edges=[0.5], proportions=[0.75, 0.25], buffer_size=16, seed=0)
        >>> out = list(stage(samples))
        >>> round(sum(s["__quality__"]["m"] < 0.5 for s in out) / len(out), 2)   # half the input, 3/4 of the output
        0.75
    """

    metric: str
    num_strata: int | None = None
    _: KW_ONLY
    edges: Sequence[float] | None = None
    proportions: str | Sequence[float] = "uniform"
    field: str = "quality"
    buffer_size: int = 256
    sketch_size: int = 2048
    warmup: int = 256
    drain: bool = False
    higher_is_better: bool | None = None
    online: StreamLosses | None = None
    seed: int = 0
    handler: str | Handler = "raise"
    epoch: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        check_metric(self.metric)
        count, self.edges = resolve_num_strata(self.num_strata, self.edges, self.proportions)
        self.num_strata = count
        #: Target shares, or ``None`` for ``"natural"`` (the shares received so far).
        self.shares = check_proportions(self.proportions, count)
        check_field(self.field)
        check_positive_int(self.buffer_size, "buffer_size")
        check_positive_int(self.sketch_size, "sketch_size")
        check_positive_int(self.warmup, "warmup", allow_zero=True)
        if self.warmup > self.sketch_size:
            raise ValueError(f"warmup should be <= sketch_size ({self.sketch_size}), but got warmup={self.warmup}")
        check_type(self.drain, "drain", bool, "a bool")
        self._higher_is_harder = True
        if self.online is not None:
            check_type(self.online, "online", StreamLosses, "a StreamLosses or None")
            # Mapping losses onto the tag needs its hard end; a difficulty is always lower-is-better.
            carried = False if self.field == "difficulty" else None
            self.higher_is_better = resolve_direction(
                self.higher_is_better, carried, name="field='quality'", carrier="a difficulty", plain="a raw metric score"
            )
            self._higher_is_harder = not self.higher_is_better
        check_positive_int(self.seed, "seed", allow_zero=True)
        self.handler = resolve_handler(self.handler)
        self._reset_stats()

    def _reset_stats(self) -> None:
        self.max_buffered = 0
        self.received = [0] * self.num_strata  # type: ignore[operator]
        self.emitted = [0] * self.num_strata  # type: ignore[operator]
        self.dropped = 0

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        rng = self._next_rng()
        uniform = UniformStream(rng)
        strata: int = self.num_strata  # type: ignore[assignment]
        buffers: list[deque[dict[str, Any]]] = [deque() for _ in range(strata)]
        self._reset_stats()
        total = 0

        def admit(sample: dict[str, Any], value: float, rank: float) -> None:
            if self.edges is not None:
                stratum = bisect_right(self.edges, value)
            else:
                # cdf is exactly 1 for a value above all the sketch holds, which would index one past the last stratum.
                stratum = min(strata - 1, int(rank * strata))
            self.received[stratum] += 1
            buffer = buffers[stratum]
            if len(buffer) >= self.buffer_size:  # full: a random element makes room
                # The newcomer replaces a random element instead of being refused, so a rarely emitted stratum keeps
                # turning over rather than holding its first samples for the whole pass.
                buffer[int(uniform() * len(buffer))] = sample
                self.dropped += 1
            else:
                buffer.append(sample)
                self.max_buffered = max(self.max_buffered, len(buffer))

        def target(k: int) -> float:
            if self.shares is not None:
                return self.shares[k]
            return self.received[k] / max(1, sum(self.received))

        def most_lacking(only_nonempty: bool) -> int | None:
            best, best_gap = None, -math.inf
            for k in range(strata):
                share = target(k)
                if share == 0 or (only_nonempty and not buffers[k]):
                    continue
                # The deficit after one more output sample: always serving the largest one keeps the proportions close
                # in every prefix of the output, not only on average.
                gap = share * (total + 1) - self.emitted[k]
                if gap > best_gap:
                    best, best_gap = k, gap
            return best

        def emit(only_nonempty: bool) -> Iterator[dict[str, Any]]:
            nonlocal total
            # Without only_nonempty this stops as soon as the most lacking stratum is empty: waiting for it instead of
            # serving the others is what holds the proportions, and thins the strata the input over-represents.
            while (k := most_lacking(only_nonempty)) is not None and buffers[k]:
                self.emitted[k] += 1
                total += 1
                yield buffers[k].popleft()

        samples = read_values(source, TagValue(self.field, self.metric, finite=True), self.handler)  # type: ignore[arg-type]
        # Quantile strata are held, not assigned, until the sketch has seen `warmup` values: early edges would be noise.
        ranked = stream_ranks(
            samples, rng, self.sketch_size, self.warmup, self.online, higher_is_harder=self._higher_is_harder, ranked=self.edges is None
        )
        for item in ranked:
            admit(*item)
            yield from emit(False)
        if self.drain:
            yield from emit(True)
        self.dropped += sum(len(buffer) for buffer in buffers)


stratify = Stratify
