"""Reweighting stage: emit each sample a random number of times whose mean is its weight.

Weights come from a tag (``scale * value ** exponent``), from any picklable function, or, as in
:class:`~qualoader.samplers.QualityWeightedSampler`, from a softmax at ``temperature`` of the
sample's standardised rank (``favour="easy"`` or ``"hard"``). In a stream the rank is the
sample's estimated CDF ``u`` (a :class:`~qualoader.webdataset.QuantileSketch`), standardised as
``z = (u - 1/2) sqrt(12)`` (zero mean, unit variance, like the sampler's standardised ranks), and
the weight ``exp(±z / T)`` is divided by its mean over uniform ``u``, ``sinh(c) / c`` with
``c = sqrt(3) / T``, so a sample's expected number of copies is what the sampler would give it
per epoch of ``N`` draws.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import KW_ONLY, dataclass
from typing import Any

from qualoader._validation import check_choice, check_positive_int, check_type
from qualoader.policies import FAVOUR, check_real, check_temperature, resolve_direction
from qualoader.webdataset._common import Handler, UniformStream, resolve_handler
from qualoader.webdataset._stage import (
    FIELDS,
    SeededStage,
    StreamLosses,
    TagValue,
    check_field,
    check_metric,
    lookup_tag,
    read_values,
    stream_ranks,
)

#: Half-width of the standardised uniform rank: z = (u - 1/2) sqrt(12) lies in [-sqrt(3), sqrt(3)].
_Z_RANGE = math.sqrt(3.0)

__all__ = ["QualityWeight", "Reweight", "rank_softmax_weight", "reweight"]


def rank_softmax_weight(cdf: float, temperature: float, favour: str = "easy") -> float:
    """Expected copies ``exp(±z / T) / E[exp(±z / T)]`` of a sample at easiness CDF ``cdf`` in [0, 1].

    ``z = (cdf - 1/2) sqrt(12)`` is the standardised rank; the mean is over uniform ranks, so the
    weights of a whole stream average 1. Computed in log space: ``T`` near 0 would overflow ``sinh``.

    Example:
        >>> round(rank_softmax_weight(0.5, 1.0), 4), rank_softmax_weight(1.0, 0.5) > 5 > rank_softmax_weight(1.0, 1.0)
        (0.6327, True)
    """
    c = _Z_RANGE / temperature
    z = (cdf - 0.5) * 2.0 * _Z_RANGE
    signed = z / temperature if favour == "easy" else -z / temperature
    # log(c / sinh(c)) = log(2c) - c - log1p(-exp(-2c)), stable for every c > 0
    return math.exp(signed + math.log(2.0 * c) - c - math.log1p(-math.exp(-2.0 * c)))


@dataclass(frozen=True)
class QualityWeight:
    """Picklable weight function ``scale * value ** exponent``, ``value`` the sample's ``field`` tag of ``metric``.

    Args:
        metric: metric name as tagged.
        field: ``"quality"`` or ``"difficulty"`` (default).
        exponent: power applied to the (non-negative) value.
        scale: multiplier; the weight is the expected number of copies of the sample.

    Example:
        >>> QualityWeight("sharpness", scale=2.0)({"__difficulty__": {"sharpness": 0.25}})
        0.5
    """

    metric: str
    _: KW_ONLY
    field: str = "difficulty"
    exponent: float = 1.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_metric(self.metric)
        check_field(self.field)
        object.__setattr__(self, "exponent", check_real(self.exponent, "exponent"))
        object.__setattr__(self, "scale", check_real(self.scale, "scale"))
        if self.scale < 0:
            raise ValueError(f"scale should be >= 0, but got scale={self.scale}")

    def __call__(self, sample: dict[str, Any]) -> float:
        value = lookup_tag(sample, self.field, self.metric)
        # `not >= 0` rather than `< 0`: it rejects NaN as well.
        if not value >= 0:
            raise ValueError(f"sample[{FIELDS[self.field]!r}][{self.metric!r}] should be >= 0 to be used as a weight, but got {value}")
        return self.scale * value**self.exponent


@dataclass(eq=False)
class Reweight(SeededStage):
    """Stage emitting each sample ``floor(w) + Bernoulli(frac(w))`` times, ``w`` its weight.

    The expected number of copies of a sample equals its weight, so weights below 1 thin the
    stream and weights above 1 repeat samples (shallow copies), capped at ``max_repeats``. Memory
    is bounded by ``warmup + sketch_size`` samples/values.
    :func:`reweight` is the same class (webdataset spells its stateful stages in lower case too,
    e.g. ``wds.detshuffle``).

    Args:
        weight: a metric name (weight ``scale * tag ** exponent``, see :class:`QualityWeight`) or
            a picklable callable ``sample -> weight >= 0`` (a module-level function, so that
            DataLoader workers can unpickle it).
        field: ``"quality"`` or ``"difficulty"`` (default; used with a metric name).
        exponent: power of the tag value (used with a metric name).
        scale: multiplier of the weight (the stream's mean rate with ``temperature``).
        temperature: instead of powers, weigh by the softmax of the sample's standardised rank
            at this temperature ``> 0``, as :class:`~qualoader.samplers.QualityWeightedSampler`
            does (see the module docstring); ``weight`` must then be a metric name.
        favour: ``"easy"`` (default) or ``"hard"``, with ``temperature``.
        higher_is_better: direction of ``field="quality"`` tags, required with ``temperature``
            (a raw score carries none); a ``"difficulty"`` is always lower-is-better.
        sketch_size: reservoir of the rank estimate, with ``temperature``.
        warmup: samples held to seed the rank estimate before any is weighed (``<= sketch_size``).
        max_repeats: most copies of one sample.
        online: with ``temperature``, a :class:`~qualoader.webdataset.StreamLosses` the training loop
            feeds per-sample losses back to: each pass ranks samples by their easiness blended with
            their observed loss, as :func:`~qualoader.webdataset.curriculum` does (default ``None``).
        seed: base seed; draws depend on ``(seed, epoch, rank, worker)`` only.
        handler: ``"raise"``, ``"skip"`` or a handler for untagged samples or bad weights.

    Example:
        >>> samples = [{"__key__": k, "__difficulty__": {"m": w}} for k, w in (("a", 0.0), ("b", 1.0), ("c", 2.0))]
        >>> [s["__key__"] for s in reweight("m", seed=0)(samples)]
        ['b', 'c', 'c']
    """

    weight: str | Callable[[dict[str, Any]], float]
    _: KW_ONLY
    field: str = "difficulty"
    exponent: float = 1.0
    scale: float = 1.0
    temperature: float | None = None
    favour: str = "easy"
    higher_is_better: bool | None = None
    sketch_size: int = 2048
    warmup: int = 256
    max_repeats: int = 16
    online: StreamLosses | None = None
    seed: int = 0
    handler: str | Handler = "raise"
    epoch: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.temperature is not None:
            self._check_rank_weights()
        elif isinstance(self.weight, str):
            self.weight = QualityWeight(self.weight, field=self.field, exponent=self.exponent, scale=self.scale)
        elif not callable(self.weight):
            raise TypeError(
                f"weight should be a metric name or a callable sample -> float, but got weight of type {type(self.weight).__name__}"
            )
        check_positive_int(self.max_repeats, "max_repeats")
        if self.online is not None:
            check_type(self.online, "online", StreamLosses, "a StreamLosses or None")
            if self.temperature is None:
                # Losses blend with a rank; weights from tag powers have none to blend with.
                raise ValueError("online should be None without temperature (losses blend with rank weights), but got a StreamLosses")
        check_positive_int(self.seed, "seed", allow_zero=True)
        self.handler = resolve_handler(self.handler)

    def _check_rank_weights(self) -> None:
        if not isinstance(self.weight, str):
            raise TypeError(
                f"weight should be a metric name with temperature={self.temperature!r}, but got weight of type {type(self.weight).__name__}"
            )
        check_metric(self.weight)
        check_field(self.field)
        self.temperature = check_temperature(self.temperature)
        if self.temperature == 0:
            # a sampler can put all weight on its best score; a stream never knows it has seen it
            raise ValueError(
                "temperature should be > 0 for a stream (0 would need the stream's extreme in advance), but got temperature=0.0"
            )
        if self.exponent != 1.0:
            raise ValueError(f"exponent should be left at 1.0 with temperature weights, but got exponent={self.exponent!r}")
        self.scale = check_real(self.scale, "scale")
        if self.scale < 0:
            raise ValueError(f"scale should be >= 0, but got scale={self.scale}")
        check_choice(self.favour, "favour", FAVOUR)
        # a difficulty is an expected error: higher is harder, whatever the metric
        carried = False if self.field == "difficulty" else None
        self.higher_is_better = resolve_direction(
            self.higher_is_better, carried, name="field='quality'", carrier="a difficulty", plain="a raw metric score"
        )
        check_positive_int(self.sketch_size, "sketch_size")
        check_positive_int(self.warmup, "warmup", allow_zero=True)
        if self.warmup > self.sketch_size:
            raise ValueError(f"warmup should be <= sketch_size ({self.sketch_size}), but got warmup={self.warmup}")

    def _rank_weights(self, source: Iterable[dict[str, Any]], rng: Any) -> Iterator[tuple[dict[str, Any], float]]:
        """``(sample, weight)`` from the softmax of the easiness rank (the first ``warmup`` samples wait for the sketch)."""
        # Ranked by easiness (larger = easier) whatever the tag's direction, so favour means the same for both.
        sign = 1.0 if self.higher_is_better else -1.0
        read = TagValue(self.field, self.weight, finite=True)  # type: ignore[arg-type]
        easiness = ((sample, sign * value) for sample, value in read_values(source, read, self.handler))  # type: ignore[arg-type]
        for sample, _, rank in stream_ranks(easiness, rng, self.sketch_size, self.warmup, self.online, higher_is_harder=False):
            yield sample, self.scale * rank_softmax_weight(rank, self.temperature, self.favour)  # type: ignore[arg-type]

    def _read_weight(self, sample: dict[str, Any]) -> float:
        weight = float(self.weight(sample))  # type: ignore[operator]
        if not (weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"weight should be a finite number >= 0, but got weight={weight} for sample {sample.get('__key__')!r}")
        return weight

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        rng = self._next_rng()
        uniform = UniformStream(rng)
        if self.temperature is None:
            weighted = read_values(source, self._read_weight, self.handler)  # type: ignore[arg-type]
        else:
            weighted = self._rank_weights(source, rng)
        for sample, weight in weighted:
            whole = math.floor(weight)
            # floor(w) + Bernoulli(frac(w)) has mean exactly w with the least variance of any integer count.
            copies = min(self.max_repeats, whole + (uniform() < weight - whole))
            for copy in range(copies):
                # Shallow copies for the repeats: a later stage that sets keys in place (annotate_quality does) must
                # not change the other copies; the first one is the original and costs nothing.
                yield sample if copy == 0 else dict(sample)


reweight = Reweight
