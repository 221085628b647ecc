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

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from qualoader._validation import check_choice, check_positive_int
from qualoader.webdataset._common import Handler, make_rng
from qualoader.webdataset.tag_format import TAG_MEMBER, MissingTagError, parse_tag

__all__ = [
    "DIFFICULTY_KEY",
    "FIELDS",
    "FINGERPRINTS_KEY",
    "QUALITY_KEY",
    "SeededStage",
    "TagValue",
    "check_field",
    "check_metric",
    "lookup_tag",
    "read_values",
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
