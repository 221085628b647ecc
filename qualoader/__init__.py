"""qualoader: DNN-aligned image quality as PyTorch data middleware."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "QualityMetric",
    "ScoringEngine",
    "__version__",
    "create_metric",
    "list_metrics",
    "metric_info",
    "register_metric",
    "score_batch",
]

# The public names are imported on first use (PEP 562): `import qualoader` and the `qualoader` console
# script's start (`--help` included) then do not pay for torch, which the engine and the metrics need.
_LAZY = {
    "QualityMetric": "qualoader.metrics",
    "ScoringEngine": "qualoader.engine",
    "create_metric": "qualoader.metrics",
    "list_metrics": "qualoader.metrics",
    "metric_info": "qualoader.metrics",
    "register_metric": "qualoader.metrics",
    "score_batch": "qualoader.engine",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from qualoader.engine import ScoringEngine, score_batch
    from qualoader.metrics import QualityMetric, create_metric, list_metrics, metric_info, register_metric


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qualoader' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
