"""qualoader: DNN-aligned image quality as PyTorch data middleware."""

from qualoader.engine import ScoringEngine, score_batch
from qualoader.metrics import QualityMetric, create_metric, list_metrics, metric_info, register_metric

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
