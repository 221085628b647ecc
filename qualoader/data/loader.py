"""``QualityLoader``: score each batch on the training device, in the main process, and persist the scores."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from qualoader._validation import check_type
from qualoader.data._samples import batch_image, pop_index
from qualoader.data.dataset import QualityDataset, difficulty_of, engine_for, metric_list, resolve_difficulty, tables_for
from qualoader.data.store import ScoreStore, ScoreTable
from qualoader.engine import MetricSpec
from qualoader.metrics.base import QualityMetric

__all__ = ["QualityLoader", "find_quality_dataset", "score_images"]


def find_quality_dataset(dataset: Dataset[Any]) -> QualityDataset:
    """The :class:`QualityDataset` under ``dataset``, looking through (nested) ``Subset`` s.

    Raises:
        TypeError: there is none.
    """
    inner = dataset
    while isinstance(inner, Subset):
        inner = inner.dataset
    if not isinstance(inner, QualityDataset):
        raise TypeError(
            "loader.dataset should be a QualityDataset(dataset) without metric (optionally inside Subset) "
            "so that every sample carries its index, "
            f"but got loader.dataset of type {type(dataset).__name__}"
            + (f" around {type(inner).__name__}" if inner is not dataset else "")
        )
    return inner


def score_images(metric: QualityMetric, images: Tensor | list[Tensor], device: torch.device) -> Tensor:
    """Score a batch of images on ``device`` through the scoring engine (:mod:`qualoader.engine`).

    The engine groups variable sizes, resizes to a reference network's input before batching for
    the metrics that resize anyway, and copies the scores to the host once.

    Args:
        metric: a no-reference metric living on ``device``.
        images: a tensor :math:`(B, C, H, W)` or a list of :math:`B` tensors :math:`(C, H, W)`.
        device: where to score.

    Returns:
        Scores :math:`(B,)`, float64 on CPU.
    """
    engine = engine_for([metric], torch.device(device))
    return engine.score(images, difficulty=False).scores[metric.name]


class QualityLoader:
    """Iterate a DataLoader and add ``quality`` (and ``difficulty``) to every batch, scored on ``device``.

    The loader's dataset must be a deferred :class:`QualityDataset` (built without a metric,
    optionally inside ``Subset`` s), so that every sample carries its index through collate.
    For each batch, in the main process: stored scores are gathered from the store in one
    vectorised read; the images still missing are moved to ``device`` and scored in one metric call
    (one per image size when a custom ``collate_fn`` returns a list of variable-size images); the
    new scores are written to the store right away. Epoch 2 therefore only reads. Difficulty is
    computed per batch from the CPU scores.

    **Batch layout** (one layout, whatever the metric and whether it has a calibration): tuple
    batches are ``(*fields, quality, difficulty[, index])`` and dict batches gain the keys
    ``"quality"`` and ``"difficulty"`` (and ``"index"``), where ``fields`` is the collated sample
    without its index and ``index`` is kept only with ``QualityDataset(..., return_index=True)``.
    ``quality`` and ``difficulty`` are float64 CPU tensors :math:`(B,)` like the rest of a collated
    batch (the scores travel to the host once per batch that had missing scores, to be stored);
    ``difficulty`` is the calibrated expected error in [0, 1], or NaN when the metric has no
    calibration. Only ``difficulty=False`` removes the field, explicitly.

    Images reach the metric as the loader collated them: tensors :math:`(B, C, H, W)` or
    :math:`(B, H, W)`, ``uint8`` or float in [0, 1] (apply normalisation after this loader, or
    keep an un-normalised copy under another key and point ``image_key`` at it). Variable-size
    images need either a resizing transform or a ``collate_fn`` returning a list of images.

    **Several metrics** (``metrics=[...]``, ``"a,b,c"`` or a suite such as ``"classical"``): the
    batch is decoded once and every metric missing a stored score is computed in one
    :class:`~qualoader.engine.ScoringEngine` call on the rows that need it; each metric's scores go
    to its own table of the store. ``quality`` and ``difficulty`` are then dicts
    ``{name: (B,) float64}`` in the order of ``metrics`` (difficulty NaN for the uncalibrated ones):
    ``for images, labels, quality, difficulty in loader: quality["sharpness"]``. The layout follows
    the argument, not the count: ``metric=`` gives tensors, ``metrics=`` gives dicts even for one name.

    Works with ``num_workers > 0``, ``pin_memory`` and ``persistent_workers``: workers only load and
    attach indices; all scoring and writing happens here.

    Args:
        loader: a :class:`torch.utils.data.DataLoader` over a deferred :class:`QualityDataset`.
        metric: a no-reference metric; moved to ``device`` (``metric.to(device)``).
        metrics: several metrics instead of ``metric`` (see :class:`~qualoader.engine.ScoringEngine`).
        device: where to score; ``None`` keeps the metric's device.
        store: a :class:`ScoreStore`, a :class:`ScoreTable` or a store folder for the dataset
            under the ``QualityDataset`` (``len`` of it); ``None`` scores every batch every epoch.
        difficulty: ``None`` or ``True`` (default): a difficulty field in every batch (NaN
            without a calibration); ``False``: none. See :func:`~qualoader.data.dataset.resolve_difficulty`.
        dataset_id: identifies an in-memory dataset for the store instead of a sampled content
            hash (see :func:`~qualoader.data.identity.identify_dataset`).

    Raises:
        TypeError: wrong argument types, or a loader whose dataset carries no indices.
        ValueError: a store of another length, a full-reference metric, both or neither of ``metric`` and ``metrics``.
        StoreError: a store of another dataset (see :meth:`~qualoader.data.ScoreStore.match_dataset`).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> from qualoader.metrics import create_metric
        >>> train = TensorDataset(torch.rand(8, 1, 16, 16), torch.arange(8))
        >>> loader = DataLoader(QualityDataset(train), batch_size=4)  # num_workers=4, pin_memory=True work too
        >>> for images, labels, quality, difficulty in QualityLoader(loader, create_metric("sharpness"), "cpu"):
        ...     pass  # train on (images, labels)
        >>> quality.shape, difficulty.isnan().all().item()  # NaN: sharpness has no calibration
        (torch.Size([4]), True)
        >>> for images, labels, quality, difficulty in QualityLoader(loader, metrics="sharpness,brightness", device="cpu"):
        ...     pass  # one decode and one engine call per batch for both metrics
        >>> sorted(quality), quality["brightness"].shape, difficulty["sharpness"].isnan().all().item()
        (['brightness', 'sharpness'], torch.Size([4]), True)
    """

    def __init__(
        self,
        loader: DataLoader[Any],
        metric: QualityMetric | None = None,
        device: str | torch.device | None = None,
        *,
        metrics: MetricSpec | None = None,
        store: ScoreStore | ScoreTable | str | os.PathLike[str] | None = None,
        difficulty: bool | None = None,
        dataset_id: str | None = None,
    ) -> None:
        check_type(loader, "loader", DataLoader, "a torch.utils.data.DataLoader")
        if metric is None and metrics is None:
            raise ValueError("metric or metrics should be given (the metrics that score each batch), but got metric=None and metrics=None")
        chosen = metric_list(metric, metrics)
        if device is not None:
            check_type(device, "device", (str, torch.device), "a str, a torch.device or None")
        self.quality_dataset = find_quality_dataset(loader.dataset)
        if not self.quality_dataset.deferred:
            raise ValueError(
                "loader.dataset should be a deferred QualityDataset (built without metric; QualityLoader scores per batch), "
                f"but got a QualityDataset with metric {self.quality_dataset.metric.name!r}"  # type: ignore[union-attr]
            )
        self.loader = loader
        self.device = torch.device(device) if device is not None else chosen[0].device
        self.engine = engine_for(chosen, self.device)  # moves every metric to the device, in eval mode
        self.metrics: dict[str, QualityMetric] = self.engine.metrics  #: name -> metric, in the order of the batch dicts
        self.metric = chosen[0]  #: the first metric (the only one with ``metric=``)
        self.multi = metrics is not None  #: ``quality``/``difficulty`` are dicts per metric
        self.difficulty = resolve_difficulty(self.metric, difficulty)
        inner = self.quality_dataset
        self.tables = tables_for(store, chosen, inner.dataset, dataset_id=dataset_id, image_key=inner.image_key)
        self.scored_batches = 0  #: how many batches needed the metric (diagnostics)

    @property
    def table(self) -> ScoreTable | None:
        """The first metric's table (the only one with ``metric=``), or ``None`` without a store."""
        return None if self.tables is None else self.tables[self.metric.name]

    @property
    def dataset(self) -> Dataset[Any]:
        """The wrapped loader's dataset."""
        return self.loader.dataset

    @property
    def batch_size(self) -> int | None:
        """The wrapped loader's batch size."""
        return self.loader.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield self.annotate(batch)

    def _image_field(self, batch: Any) -> Any:
        """Images of a batch (after its index was popped), following the dataset's layout."""
        key = self.quality_dataset.image_key
        if isinstance(batch, Mapping):
            return batch[key if isinstance(key, str) else "image"]
        return batch[key if isinstance(key, int) else 0]

    def quality_of(self, images: Any, index: Tensor) -> Tensor | dict[str, Tensor]:
        """Quality of a batch in the loader's layout: :math:`(B,)` float64 on CPU, or ``{name: (B,)}`` with ``metrics=``."""
        scores = self.scores_of(images, index)
        return scores if self.multi else scores[self.metric.name]

    def scores_of(self, images: Any, index: Tensor) -> dict[str, Tensor]:
        """``{name: scores (B,) float64 CPU}``: stored ones read, missing ones scored on device in one engine call and stored.

        Args:
            images: the batch's images, :math:`(B, C, H, W)`, :math:`(B, H, W)` or a list of images.
            index: sample indices :math:`(B,)` int64 (indices of the ``QualityDataset``).
        """
        count = int(index.shape[0])
        quality: dict[str, Tensor] = {}
        need: dict[str, np.ndarray] = {}  # name -> bool (B,): rows without a stored score
        for name in self.metrics:
            if self.tables is not None:
                values, valid = self.tables[name].read(index)
                quality[name], need[name] = torch.from_numpy(values), ~valid
            else:
                quality[name], need[name] = torch.full((count,), float("nan"), dtype=torch.float64), np.ones(count, dtype=bool)
        todo = [name for name in self.metrics if need[name].any()]
        if not todo:
            return quality
        # one engine call on the union of the rows any metric lacks: the images go to the device once
        union = np.logical_or.reduce([need[name] for name in todo])
        missing = torch.from_numpy(np.flatnonzero(union))
        pictures = batch_image(images, "images")
        if isinstance(pictures, Tensor):
            subset = pictures if missing.numel() == pictures.shape[0] else pictures[missing]
        else:
            subset = [pictures[int(r)] for r in missing]
        scored = self.engine.score(subset, todo, difficulty=False).scores
        self.scored_batches += 1
        for name in todo:
            rows = torch.from_numpy(need[name][union])  # among the scored rows, those this metric lacked
            quality[name][missing[rows]] = scored[name][rows]
            if self.tables is not None:
                self.tables[name].write(index[missing[rows]], scored[name][rows])
        return quality

    def annotate(self, batch: Any) -> Any:
        """Add ``quality`` (and ``difficulty``) to one collated batch of the wrapped loader."""
        rest, index = pop_index(batch)
        scores = self.scores_of(self._image_field(rest), index)
        first = self.metric.name
        fields: list[tuple[str, Any]] = [("quality", scores if self.multi else scores[first])]
        if self.difficulty:
            hardness = {name: difficulty_of(metric, scores[name]) for name, metric in self.metrics.items()}
            fields.append(("difficulty", hardness if self.multi else hardness[first]))
        if self.quality_dataset.return_index:
            fields.append(("index", index))
        if isinstance(rest, Mapping):
            return {**rest, **dict(fields)}
        return (*rest, *(value for _, value in fields))

    def __repr__(self) -> str:
        what = f"metrics={list(self.metrics)!r}" if self.multi else f"metric={self.metric.name!r}"
        return f"QualityLoader({what}, device={str(self.device)!r}, tables={self.tables!r})"
