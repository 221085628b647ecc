"""Dataset and DataLoader middleware: annotate samples with quality and difficulty, persist scores.

* :class:`QualityDataset` wraps any map-style dataset (per-sample scoring, or deferred: index only).
* :class:`QualityLoader` wraps a DataLoader and scores each batch on the training device.
* :func:`precompute` fills a :class:`ScoreStore` in one resumable pass.
* :func:`describe` summarises a store.
"""

from qualoader.data.dataset import QualityDataset
from qualoader.data.describe import MetricSummary, StoreSummary, describe
from qualoader.data.loader import QualityLoader
from qualoader.data.precompute import precompute
from qualoader.data.store import ScoreStore, ScoreTable, StoreError

__all__ = [
    "MetricSummary",
    "QualityDataset",
    "QualityLoader",
    "ScoreStore",
    "ScoreTable",
    "StoreError",
    "StoreSummary",
    "describe",
    "precompute",
]
