"""Batched image-quality metrics behind one protocol and one registry.

Importing this package registers every built-in metric. See :func:`create_metric`.
"""

# ruff: noqa: I001  (the built-in metrics register after the registry is importable)
from qualoader.metrics.base import QualityMetric, metric_fingerprint
from qualoader.metrics.registry import (
    MetricInfo,
    create_metric,
    list_metrics,
    metric_from_profile,
    metric_info,
    register_metric,
    register_metric_prefix,
)

# Built-in metrics register themselves on import (order does not matter).
from qualoader.metrics import aligned as _aligned  # noqa: F401  (issue 3)
from qualoader.metrics import classical as _classical  # noqa: F401  (issue 2)
from qualoader.metrics import full_reference as _full_reference  # noqa: F401  (issue 2)
from qualoader.metrics import pyiqa_adapter as _pyiqa_adapter  # noqa: F401  (issue 2)

__all__ = [
    "MetricInfo",
    "QualityMetric",
    "create_metric",
    "list_metrics",
    "metric_from_profile",
    "metric_fingerprint",
    "metric_info",
    "register_metric",
    "register_metric_prefix",
]
