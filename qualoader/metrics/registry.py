"""Name -> metric registry (``register_metric``, ``create_metric``, ``list_metrics``).

Names with a ``"<prefix>:"`` (e.g. ``"pyiqa:fsim"``) are routed to a prefix factory registered
with :func:`register_metric_prefix`, so adapters to other libraries share the same entry point.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from qualoader._validation import check_type
from qualoader.metrics.base import QualityMetric

if TYPE_CHECKING:
    from qualoader.profiles import QualityProfile

__all__ = [
    "MetricInfo",
    "create_metric",
    "list_metrics",
    "metric_info",
    "register_metric",
    "register_metric_prefix",
]

MetricType = TypeVar("MetricType", bound=type[QualityMetric])

_METRICS: dict[str, type[QualityMetric]] = {}
_PREFIXES: dict[str, Callable[..., QualityMetric]] = {}


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is, without building it."""

    name: str
    mode: str  # "NR" (no reference) or "FR" (full reference)
    higher_is_better: bool
    requires_weights: bool
    summary: str
    #: takes a ``downscale`` argument (the classical measures; see
    #: :class:`~qualoader.metrics.classical.ClassicalMetric`).
    accepts_downscale: bool = False


def register_metric(cls: MetricType) -> MetricType:
    """Class decorator adding a :class:`QualityMetric` subclass under ``cls.name``.

    Raises:
        TypeError: ``cls`` is not a ``QualityMetric`` subclass.
        ValueError: the name is empty or already registered.
    """
    if not (isinstance(cls, type) and issubclass(cls, QualityMetric)):
        raise TypeError(f"cls should be a QualityMetric subclass, but got cls={cls!r}")
    if not cls.name or ":" in cls.name:
        raise ValueError(f"cls.name should be a non-empty name without ':', but got cls.name={cls.name!r}")
    if cls.name in _METRICS:
        raise ValueError(
            f"cls.name should be a new metric name, but got cls.name={cls.name!r}, already registered by {_METRICS[cls.name].__qualname__}"
        )
    _METRICS[cls.name] = cls
    return cls


def register_metric_prefix(prefix: str, factory: Callable[..., QualityMetric]) -> None:
    """Route names ``"<prefix>:<rest>"`` to ``factory(rest, **kwargs)``."""
    if prefix in _PREFIXES:
        raise ValueError(f"prefix should be a new prefix, but got prefix={prefix!r}, already registered")
    _PREFIXES[prefix] = factory


def list_metrics(mode: str | None = None) -> list[str]:
    """Sorted names of the registered metrics; ``mode="NR"`` or ``"FR"`` filters by reference need."""
    if mode not in (None, "NR", "FR"):
        raise ValueError(f"mode should be one of {{None, 'FR', 'NR'}}, but got mode={mode!r}")
    return sorted(name for name, cls in _METRICS.items() if mode is None or (mode == "FR") == cls.requires_reference)


def _lookup(name: str) -> type[QualityMetric]:
    check_type(name, "name", str, "a metric name (str)")
    if name not in _METRICS:
        close = difflib.get_close_matches(name, list(_METRICS), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; registered: {', '.join(list_metrics())}"
        raise KeyError(f"name should be a registered metric, but got name={name!r}{hint}")
    return _METRICS[name]


def metric_info(name: str) -> MetricInfo:
    """Describe a registered metric (mode, direction, weights) without constructing it."""
    from qualoader.metrics.classical import ClassicalMetric  # imported here: the classical measures import this registry

    cls = _lookup(name)
    doc = (cls.__doc__ or "").strip().splitlines()
    return MetricInfo(
        name=cls.name,
        mode="FR" if cls.requires_reference else "NR",
        higher_is_better=cls.higher_is_better,
        requires_weights=cls.requires_weights,
        summary=doc[0] if doc else "",
        accepts_downscale=issubclass(cls, ClassicalMetric),
    )


def create_metric(
    name: str,
    device: str | torch.device | None = None,
    *,
    profile: str | os.PathLike[str] | QualityProfile | None = None,
    **kwargs: Any,
) -> QualityMetric:
    """Build a metric by name and move it to ``device``.

    Args:
        name: a name from :func:`list_metrics`, or ``"<prefix>:<name>"`` such as ``"pyiqa:fsim"``.
        device: where the metric's kernels live; ``None`` keeps the default (CPU).
        profile: a quality profile (path or :class:`~qualoader.profiles.QualityProfile`) that
            defines the metric's reference network, parameters, head, calibration and input domain
            (see :func:`qualoader.profiles.metric_from_profile`); ``kwargs`` may then only hold
            ``strict`` and ``check_values``.
        **kwargs: forwarded to the metric's constructor.

    Raises:
        KeyError: unknown name (the message suggests close matches).
        ValueError: with ``profile``, other keyword arguments or a profile of another metric.

    Example:
        >>> metric = create_metric("sharpness")
        >>> metric(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    check_type(name, "name", str, "a metric name (str)")
    if profile is not None:
        from qualoader.profiles import metric_from_profile

        extra = sorted(set(kwargs) - {"strict", "check_values"})
        if extra:
            raise ValueError(f"kwargs should only be strict and check_values with profile=..., which defines the rest, but got {extra}")
        metric = metric_from_profile(profile, name, **kwargs)
        metric.eval()
        return metric if device is None else metric.to(device)
    prefix, sep, rest = name.partition(":")
    if sep:
        if prefix not in _PREFIXES:
            raise KeyError(f"name should use a known prefix {sorted(_PREFIXES)}, but got name={name!r}")
        metric = _PREFIXES[prefix](rest, device=device, **kwargs)
    else:
        metric = _lookup(name)(**kwargs)
    metric.eval()
    return metric if device is None else metric.to(device)
