"""Dataset and DataLoader middleware: annotate samples with quality and difficulty, persist scores.

* :class:`QualityDataset` wraps any map-style dataset (per-sample scoring, or deferred: index only).
* :class:`QualityLoader` wraps a DataLoader and scores each batch on the training device.
* :func:`precompute` fills a :class:`ScoreStore` in one resumable pass.
* :func:`describe` summarises a store; :func:`store_to_pandas` / :func:`store_to_arrow` export it
  (:mod:`qualoader.data.export`, beside the store).
* :func:`identify_dataset` builds the :class:`DatasetIdentity` a store checks its dataset against.
"""

from qualoader.data._samples import SampleLoadError
from qualoader.data.dataset import QualityDataset
from qualoader.data.describe import MetricSummary, StoreSummary, describe
from qualoader.data.export import store_columns, store_to_arrow, store_to_pandas
from qualoader.data.identity import DatasetIdentity, identify_dataset
from qualoader.data.loader import QualityLoader
from qualoader.data.precompute import PrefetchedImage, SkippedSample, precompute
from qualoader.data.store import ScoreStore, ScoreTable, StoreError

__all__ = [
    "DatasetIdentity",
    "MetricSummary",
    "PrefetchedImage",
    "QualityDataset",
    "QualityLoader",
    "SampleLoadError",
    "ScoreStore",
    "ScoreTable",
    "SkippedSample",
    "StoreError",
    "StoreSummary",
    "describe",
    "identify_dataset",
    "precompute",
    "store_columns",
    "store_to_arrow",
    "store_to_pandas",
]
