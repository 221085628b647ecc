"""Reweighting stage: emit each sample a random number of times whose mean is its weight."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import KW_ONLY, dataclass
from typing import Any

from qualoader._validation import check_positive_int
from qualoader.policies import check_real
from qualoader.webdataset._common import Handler, UniformStream, resolve_handler
from qualoader.webdataset._stage import FIELDS, SeededStage, check_field, check_metric, lookup_tag, read_values

__all__ = ["QualityWeight", "Reweight", "reweight"]


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
        if not value >= 0:
            raise ValueError(f"sample[{FIELDS[self.field]!r}][{self.metric!r}] should be >= 0 to be used as a weight, but got {value}")
        return self.scale * value**self.exponent


@dataclass(eq=False)
class Reweight(SeededStage):
    """Stage emitting each sample ``floor(w) + Bernoulli(frac(w))`` times, ``w`` its weight.

    The expected number of copies of a sample equals its weight, so weights below 1 thin the
    stream and weights above 1 repeat samples (shallow copies), capped at ``max_repeats``.
    :func:`reweight` is the same class (webdataset spells its stateful stages in lower case too,
    e.g. ``wds.detshuffle``).

    Args:
        weight: a metric name (weight ``scale * tag ** exponent``, see :class:`QualityWeight`) or
            a picklable callable ``sample -> weight >= 0`` (a module-level function, so that
            DataLoader workers can unpickle it).
        field: ``"quality"`` or ``"difficulty"`` (default; used with a metric name).
        exponent: power of the tag value (used with a metric name).
        scale: multiplier of the tag value (used with a metric name).
        max_repeats: most copies of one sample.
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
    max_repeats: int = 16
    seed: int = 0
    handler: str | Handler = "raise"
    epoch: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        if isinstance(self.weight, str):
            self.weight = QualityWeight(self.weight, field=self.field, exponent=self.exponent, scale=self.scale)
        elif not callable(self.weight):
            raise TypeError(
                f"weight should be a metric name or a callable sample -> float, but got weight of type {type(self.weight).__name__}"
            )
        check_positive_int(self.max_repeats, "max_repeats")
        check_positive_int(self.seed, "seed", allow_zero=True)
        self.handler = resolve_handler(self.handler)

    def _read_weight(self, sample: dict[str, Any]) -> float:
        weight = float(self.weight(sample))  # type: ignore[operator]
        if not (weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"weight should be a finite number >= 0, but got weight={weight} for sample {sample.get('__key__')!r}")
        return weight

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        uniform = UniformStream(self._next_rng())
        for sample, weight in read_values(source, self._read_weight, self.handler):  # type: ignore[arg-type]
            whole = math.floor(weight)
            copies = min(self.max_repeats, whole + (uniform() < weight - whole))
            for copy in range(copies):
                yield sample if copy == 0 else dict(sample)


reweight = Reweight
