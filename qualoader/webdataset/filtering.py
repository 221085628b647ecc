"""Range filter stage: keep the samples whose tag lies in ``[low, high]``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from webdataset.filters import FilterFunction, pipelinefilter

from qualoader.policies import check_real
from qualoader.webdataset._common import Handler, resolve_handler
from qualoader.webdataset._stage import TagValue, check_field, check_metric, read_values

__all__ = ["FilterQuality", "filter_quality"]

#: Type of the stage :func:`filter_quality` returns (webdataset's picklable curried function).
FilterQuality = FilterFunction


def _filter_quality(
    source: Iterable[dict[str, Any]], read: TagValue, low: float, high: float, handler: Handler
) -> Iterator[dict[str, Any]]:
    for sample, value in read_values(source, read, handler):
        if low <= value <= high:  # NaN never passes
            yield sample


# Curried from a module-level generator: the resulting FilterFunction pickles by reference for
# DataLoader workers, where a closure or lambda would not.
_filter_stage = pipelinefilter(_filter_quality)


def filter_quality(
    metric: str,
    low: float | None = None,
    high: float | None = None,
    *,
    field: str = "quality",
    handler: str | Handler = "raise",
) -> FilterFunction:
    """Stage keeping the samples with ``low <= value <= high``, ``value`` their ``field`` tag of ``metric``.

    Args:
        metric: metric name as tagged (e.g. ``"sharpness"``).
        low: inclusive lower bound (``None``: unbounded).
        high: inclusive upper bound (``None``: unbounded).
        field: ``"quality"`` (the score) or ``"difficulty"`` (calibrated expected error).
        handler: ``"raise"``, ``"skip"`` or a handler for untagged samples.

    Returns:
        A picklable stage ``samples -> samples`` (webdataset's ``pipelinefilter`` currying).

    Example:
        >>> samples = [{"__key__": str(i), "__quality__": {"sharpness": i / 10}} for i in range(10)]
        >>> [s["__key__"] for s in filter_quality("sharpness", low=0.25, high=0.5)(samples)]
        ['3', '4', '5']
    """
    lo = -math.inf if low is None else check_real(low, "low")
    hi = math.inf if high is None else check_real(high, "high")
    if lo > hi:
        raise ValueError(f"high should be >= low ({lo}), but got high={hi}")
    return _filter_stage(TagValue(check_field(field), check_metric(metric)), lo, hi, resolve_handler(handler))
