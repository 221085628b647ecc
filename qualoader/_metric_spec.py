"""Metric specifications: the one parser of ``"a,b,c"``, suites and metric lists, shared by the engine and the CLI.

:func:`parse_metric_spec` expands names and suites (:data:`METRIC_SUITES`); :func:`resolve_metrics`
builds the metrics, checked to be no-reference; :func:`resize_target` says which input size a metric
resizes to. Split from :mod:`qualoader.engine`, which re-exports all of them.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from qualoader._validation import check_type
from qualoader.metrics.base import QualityMetric
from qualoader.metrics.registry import create_metric, list_metrics

__all__ = ["METRIC_SUITES", "MetricSpec", "parse_metric_spec", "resize_target", "resolve_metrics"]

#: Named suites accepted wherever metric names are (``--metric classical``, ``metrics="classical"``).
METRIC_SUITES: Mapping[str, tuple[str, ...]] = {
    "classical": (
        "sharpness",
        "gradient-energy",
        "noise",
        "contrast",
        "brightness",
        "colorfulness",
        "blockiness",
        "clipping",
        "entropy",
    ),
    # the no-reference metrics of a reference network that the embedded network serves as it is (calibrate builds a profile of each)
    "aligned": ("confidence", "task-guided", "bn-shift"),
}
MetricSpec = str | QualityMetric | Sequence[str | QualityMetric]


def parse_metric_spec(spec: str | Sequence[str]) -> list[str]:
    """Expand a metric specification into distinct metric names, in order.

    Args:
        spec: ``"sharpness"``, ``"sharpness,noise"``, a suite name from :data:`METRIC_SUITES`
            (``"classical"``), a mix (``"classical,bn-shift"``), or a list of such strings.
            Names with a prefix (``"pyiqa:niqe"``) are passed through to
            :func:`~qualoader.metrics.create_metric`.

    Returns:
        The metric names, duplicates dropped (first occurrence kept).

    Raises:
        TypeError: ``spec`` is neither a string nor a sequence of strings.
        ValueError: ``spec`` names no metric (empty, or only commas).
        KeyError: an unknown name; the message suggests close registered names and suites.

    Example:
        >>> parse_metric_spec("noise,classical")[:3]
        ['noise', 'sharpness', 'gradient-energy']
    """
    parts: list[str] = []
    items = [spec] if isinstance(spec, str) else spec
    if isinstance(items, (bytes, bytearray)) or not isinstance(items, Sequence):
        raise TypeError(f"spec should be a metric name, 'a,b,c' or a sequence of them, but got spec of type {type(spec).__name__}")
    for item in items:
        check_type(item, "spec[i]", str, "a metric name or suite (str)")
        parts.extend(part.strip() for part in item.split(","))
    parts = [part for part in parts if part]
    if not parts:
        raise ValueError(f"spec should name at least one metric or suite, but got spec={spec!r}")
    known = set(list_metrics())
    names: list[str] = []
    for part in parts:
        if part in METRIC_SUITES:
            expanded: Sequence[str] = METRIC_SUITES[part]
        elif ":" in part or part in known:
            expanded = (part,)
        else:
            close = difflib.get_close_matches(part, [*known, *METRIC_SUITES], n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; suites: {', '.join(sorted(METRIC_SUITES))}"
            raise KeyError(f"spec should be a registered metric or suite (or a comma-separated list of them), but got spec={part!r}{hint}")
        names.extend(name for name in expanded if name not in names)
    return names


def resize_target(metric: QualityMetric) -> tuple[int, int] | None:
    """The input size a metric resizes every image to before scoring, or ``None`` (native size).

    Metrics computed through a :class:`~qualoader.reference.ReferenceNetwork` (the
    ``ReferenceMetric`` family) resize to the network's ``input_size`` with antialiased bilinear
    interpolation; any other metric can declare the same with a ``resizes_to`` attribute
    ``(height, width)``. The engine resizes such images once, before batching them.
    """
    declared = getattr(metric, "resizes_to", None)
    if declared is not None:
        return (int(declared[0]), int(declared[1]))
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric

    if isinstance(metric, ReferenceMetric):
        height, width = metric.network.input_size
        return (int(height), int(width))
    return None


def resolve_metrics(metrics: MetricSpec, device: torch.device | None = None) -> dict[str, QualityMetric]:
    """``{name: metric}`` for a specification; every metric checked to be no-reference, in eval mode, on ``device``.

    Raises:
        TypeError: an item is neither a name nor a :class:`QualityMetric`.
        ValueError: a full-reference metric, two metrics of the same name, or no metric.
        KeyError: an unknown name.
    """
    if isinstance(metrics, (str, QualityMetric)):
        items: list[Any] = [metrics]
    elif isinstance(metrics, Sequence) and not isinstance(metrics, (bytes, bytearray)):
        items = list(metrics)
    else:
        raise TypeError(
            "metrics should be a metric name, 'a,b,c', a QualityMetric or a sequence of them, but got metrics of type "
            f"{type(metrics).__name__}"
        )
    if not items:
        raise ValueError("metrics should name at least one metric, but got metrics=[]")
    resolved: dict[str, QualityMetric] = {}
    for item in items:
        if isinstance(item, str):
            built = [create_metric(name) for name in parse_metric_spec(item)]
        elif isinstance(item, QualityMetric):
            built = [item]
        else:
            raise TypeError(f"metrics should hold metric names or QualityMetric instances, but got an item of type {type(item).__name__}")
        for metric in built:
            if metric.requires_reference:
                raise ValueError(
                    f"metrics should be no-reference metrics, but got the full-reference metric {metric.name!r}, which needs a clean "
                    "reference image"
                )
            if metric.name in resolved:
                if isinstance(item, str):
                    continue  # a name or suite repeating an earlier name: keep the first
                raise ValueError(f"metrics should have distinct names, but got {metric.name!r} twice")
            resolved[metric.name] = metric
    for name, metric in resolved.items():
        resolved[name] = (metric if device is None else metric.to(device)).eval()
    return resolved
