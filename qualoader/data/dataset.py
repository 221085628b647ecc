"""``QualityDataset``: wrap a map-style dataset so every sample carries its quality (or its index)."""

from __future__ import annotations

import os
from collections.abc import Sequence, Sized
from typing import Any

import torch
from torch.utils.data import Dataset

from qualoader._validation import check_choice, check_type
from qualoader.data._samples import OUTPUTS, add_fields, image_to_tensor, load_sample, sample_image
from qualoader.data.identity import identify_dataset
from qualoader.data.store import ScoreStore, ScoreTable
from qualoader.engine import MetricSpec, ScoringEngine, resolve_metrics
from qualoader.metrics.base import QualityMetric

__all__ = ["QualityDataset", "difficulty_of", "engine_for", "metric_list", "resolve_difficulty", "table_for", "tables_for"]


def metric_list(metric: QualityMetric | None, metrics: MetricSpec | None) -> list[QualityMetric]:
    """The metrics of a ``metric=`` / ``metrics=`` argument pair (at most one given), checked to be no-reference.

    ``metric`` is one :class:`QualityMetric`; ``metrics`` is anything
    :class:`~qualoader.engine.ScoringEngine` takes (names, ``"a,b,c"``, a suite such as
    ``"classical"``, metrics, or a sequence of them). Neither: ``[]``.

    Raises:
        TypeError: a wrong type. ValueError: both given, a full-reference metric, duplicate names.
        KeyError: an unknown metric name.
    """
    if metric is not None and metrics is not None:
        raise ValueError(f"metric and metrics should not both be given, but got metric={metric!r} and metrics={metrics!r}")
    if metric is not None:
        check_type(metric, "metric", QualityMetric, "a QualityMetric or None (several metrics: metrics=[...])")
        if metric.requires_reference:
            raise ValueError(f"metric should be a no-reference metric, but got the full-reference metric {metric.name!r}")
        return [metric]
    if metrics is None:
        return []
    return list(resolve_metrics(metrics).values())


def engine_for(metrics: Sequence[QualityMetric], device: torch.device | None) -> ScoringEngine:
    """One :class:`~qualoader.engine.ScoringEngine` for ``metrics``; float values checked unless every metric opts out."""
    return ScoringEngine(list(metrics), device, check_values=any(metric.check_values for metric in metrics))


def resolve_difficulty(metric: QualityMetric, difficulty: bool | None) -> bool:
    """Whether samples and batches carry a difficulty field: ``None`` (default) or ``True`` = always, ``False`` = never.

    The layout never depends on whether ``metric`` has a calibration: an uncalibrated metric gives
    NaN difficulties (see :func:`difficulty_of`), so ``for image, label, quality, difficulty in
    loader`` works with every metric.

    Raises:
        TypeError: ``difficulty`` is not a bool or None.
    """
    if difficulty is not None and not isinstance(difficulty, bool):
        raise TypeError(
            "difficulty should be a bool or None (None/True: a difficulty field, NaN when the metric has no calibration; False: no field), "
            f"but got difficulty of type {type(difficulty).__name__}"
        )
    return difficulty is not False


def difficulty_of(metric: QualityMetric, quality: torch.Tensor) -> torch.Tensor:
    """Expected error :math:`(B,)` float64 for scores :math:`(B,)`: ``metric.difficulty``, or NaN without calibration."""
    if metric.calibration is None:
        return torch.full(quality.shape, float("nan"), dtype=torch.float64)
    return metric.difficulty(quality).to(torch.float64)


def _check_image_key(image_key: Any) -> None:
    if image_key is not None and (isinstance(image_key, bool) or not isinstance(image_key, (int, str))):
        raise TypeError(
            "image_key should be an int (tuple samples), a str (dict samples) or None, "
            f"but got image_key of type {type(image_key).__name__}"
        )


def table_for(
    store: ScoreStore | ScoreTable | str | os.PathLike[str] | None,
    metric: QualityMetric,
    dataset: Any,
    *,
    dataset_id: str | None = None,
    image_key: int | str | None = None,
) -> ScoreTable | None:
    """The table of ``metric`` in ``store`` (created when missing), checked against ``dataset``: :func:`tables_for` of one metric."""
    tables = tables_for(store, [metric], dataset, dataset_id=dataset_id, image_key=image_key)
    return None if tables is None else tables[metric.name]


def tables_for(
    store: ScoreStore | ScoreTable | str | os.PathLike[str] | None,
    metrics: Sequence[QualityMetric],
    dataset: Any,
    *,
    dataset_id: str | None = None,
    image_key: int | str | None = None,
) -> dict[str, ScoreTable] | None:
    """``{name: table}`` of ``metrics`` in ``store`` (created when missing), checked against ``dataset`` once.

    ``store`` may be a :class:`ScoreStore`, a :class:`ScoreTable` (one metric only), a store folder
    (opened, or created for ``dataset``) or ``None`` (no store: returns ``None``). The store's length
    is checked first, then the dataset's identity (:func:`~qualoader.data.identity.identify_dataset`
    with ``dataset_id`` and ``image_key``) is matched with the store's
    (:meth:`ScoreStore.match_dataset`): changed files are rescored, another dataset is refused.
    Without ``dataset_id``, a store opened with one (``ScoreStore(root, n, dataset_id=...)``) lends
    it, so every path that uses that store identifies an in-memory dataset the same way.
    """
    if store is None:
        return None
    length = len(dataset)
    if not isinstance(store, (str, os.PathLike)):
        check_type(store, "store", (ScoreStore, ScoreTable), "a ScoreStore, a ScoreTable, a store folder or None")
        if store.length != length:
            what = "store" if isinstance(store, ScoreStore) else "table"
            raise ValueError(
                f"store should hold scores for len(dataset)={length} samples, "
                f"but got store.length={store.length} (a {what} for another dataset)"
            )
        if isinstance(store, ScoreTable):
            if len(metrics) != 1:
                raise ValueError(
                    "store should be a ScoreStore or a store folder when several metrics are given (one table per metric), "
                    f"but got a ScoreTable of {store.metric_name!r} for {len(metrics)} metrics"
                )
            store.check_metric(metrics[0])
    if dataset_id is not None:
        check_type(dataset_id, "dataset_id", str, "a str or None")
    elif isinstance(store, ScoreStore):
        dataset_id = store.dataset_id
    elif isinstance(store, ScoreTable):
        dataset_id = store.header["dataset_id"]
    identity = identify_dataset(dataset, dataset_id=dataset_id, image_key=image_key)
    if isinstance(store, (str, os.PathLike)):
        store = ScoreStore(store, identity=identity)
    else:
        if isinstance(store, ScoreTable):
            ScoreStore(store.path.parent).match_dataset(identity)
            return {metrics[0].name: store}
        store.match_dataset(identity)
    try:
        return {metric.name: store.table(metric, create=True) for metric in metrics}
    except OSError:
        # a full disk between the store's files and its tables: a store made here is removed again, so
        # nothing that reads as a (scoreless) store is left
        store.discard_if_empty()
        raise


class QualityDataset(Dataset[Any]):
    """Map-style dataset that adds ``quality`` (and ``difficulty``) to every sample of ``dataset``.

    Two modes:

    * **Per sample** (``metric`` given): ``__getitem__`` reads the score from ``store`` and, when
      it is not stored (or there is no store), scores the image right there, in whatever process
      runs it (a DataLoader worker runs it on CPU; such scores are *not* written back: fill the
      store with :func:`~qualoader.data.precompute` or :class:`~qualoader.data.QualityLoader`).
    * **Deferred** (``metric=None``): samples only carry their ``index`` and
      :class:`~qualoader.data.QualityLoader` adds quality per batch, in the main process, on the
      training device, reading and filling the store there.

    **Several metrics** (``metrics=[...]``, ``"a,b,c"`` or a suite such as ``"classical"``): each
    sample is loaded once and the metrics whose score is not stored are computed from that one
    image in one :class:`~qualoader.engine.ScoringEngine` call. ``quality`` and ``difficulty``
    are then dicts ``{name: float}`` (collated by the default collate to ``{name: (B,) float64}``),
    in the order of ``metrics``; the layout follows the argument, not the count: ``metric=``
    gives floats, ``metrics=`` gives dicts even for one name.

    Output (one layout whatever the metric): dict samples gain the keys ``"quality"`` and
    ``"difficulty"`` (and ``"index"``); tuple and list samples gain trailing elements
    ``(*sample, quality, difficulty[, index])``; a bare image becomes ``(image, quality, difficulty)``.
    ``output="dict"`` turns tuples into ``{"image": sample[0], "target": sample[1:], ...}`` (the
    single target unwrapped) and bare images into ``{"image": image, ...}``. ``quality`` and
    ``difficulty`` are Python floats (collated to float64 ``(B,)``); ``difficulty`` is the metric's
    calibrated expected error, NaN when the metric has no calibration, and absent only with
    ``difficulty=False``.

    Images are a :class:`PIL.Image.Image`, a tensor :math:`(C, H, W)` or :math:`(H, W)` (``uint8`` or
    float in [0, 1], not normalised), or a numpy array :math:`(H, W[, C])`, with ``C`` in {1, 3}.

    Args:
        dataset: any map-style dataset with ``__len__``. Wrap a ``Subset`` *around* the
            ``QualityDataset`` to key scores by the indices of the full dataset (the usual split
            setup); a ``QualityDataset`` around a ``Subset``/``ConcatDataset`` keys them by its own
            indices.
        metric: the quality metric, or ``None`` for the deferred mode (or with ``metrics``).
        metrics: several metrics instead of ``metric`` (see :class:`~qualoader.engine.ScoringEngine`).
        image_key: position of the image in tuple samples (default ``0``) or its key in dict
            samples (default ``"image"``).
        store: a :class:`ScoreStore` (its table for each metric is created when missing), a
            :class:`ScoreTable` (one metric) or a store folder; must hold ``len(dataset)`` samples.
            Read-only here.
        output: ``"auto"`` (keep the structure), ``"dict"`` or ``"tuple"``.
        difficulty: ``None`` or ``True`` (default): always a difficulty field (NaN without a
            calibration); ``False``: no difficulty field.
        dataset_id: identifies an in-memory dataset for the store instead of a sampled content
            hash (see :func:`~qualoader.data.identity.identify_dataset`).
        return_index: also append the sample index (always carried in the deferred mode, where
            QualityLoader removes it unless this is ``True``).

    Raises:
        TypeError: wrong argument types; at ``__getitem__``, an unsupported sample structure.
        ValueError: a store for another dataset length, an unknown ``output``; at ``__getitem__``,
            an image of the wrong shape.
        StoreError: a store of another dataset (see :meth:`~qualoader.data.ScoreStore.match_dataset`).
        SampleLoadError: at ``__getitem__``, an unreadable image (the message names its file).

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> from qualoader.metrics import create_metric
        >>> images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
        >>> data = QualityDataset(TensorDataset(images, torch.arange(4)), create_metric("brightness"))
        >>> image, label, quality, difficulty = data[0]  # difficulty: NaN, brightness has no calibration
        >>> quality, difficulty
        (0.0, nan)
        >>> data = QualityDataset(TensorDataset(images, torch.arange(4)), metrics="brightness,contrast")
        >>> image, label, quality, difficulty = data[0]  # dicts {name: float}, one decode for both
        >>> quality, difficulty
        ({'brightness': 0.0, 'contrast': 0.0}, {'brightness': nan, 'contrast': nan})
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        metric: QualityMetric | None = None,
        *,
        metrics: MetricSpec | None = None,
        image_key: int | str | None = None,
        store: ScoreStore | ScoreTable | str | os.PathLike[str] | None = None,
        output: str = "auto",
        difficulty: bool | None = None,
        return_index: bool = False,
        dataset_id: str | None = None,
    ) -> None:
        if not isinstance(dataset, Sized) or not hasattr(dataset, "__getitem__"):
            raise TypeError(
                f"dataset should be a map-style Dataset with __getitem__ and __len__, but got dataset of type {type(dataset).__name__}"
            )
        chosen = metric_list(metric, metrics)
        _check_image_key(image_key)
        check_choice(output, "output", OUTPUTS)
        check_type(return_index, "return_index", bool, "a bool")
        self.dataset = dataset
        self.metrics: dict[str, QualityMetric] = {m.name: m for m in chosen}  #: name -> metric (empty when deferred)
        self.metric = chosen[0] if chosen else None  #: the first metric (the only one with ``metric=``)
        self.multi = metrics is not None  #: ``quality``/``difficulty`` are dicts per metric
        self.image_key = image_key
        self.output = output
        self.return_index = return_index
        self._length = len(dataset)
        self.tables: dict[str, ScoreTable] | None = None  #: name -> table, ``None`` without a store
        self.engine: ScoringEngine | None = None
        if not chosen:
            if store is not None or difficulty is not None or dataset_id is not None:
                raise ValueError("store, difficulty and dataset_id should be None when metric=None "
                                 "(deferred mode: give them to QualityLoader), "
                                 f"but got store={store!r}, difficulty={difficulty!r}, dataset_id={dataset_id!r}")
            self.difficulty = False
        else:
            self.difficulty = resolve_difficulty(chosen[0], difficulty)
            self.tables = tables_for(store, chosen, dataset, dataset_id=dataset_id, image_key=image_key)
            self.engine = engine_for(chosen, chosen[0].device)

    @property
    def table(self) -> ScoreTable | None:
        """The first metric's table (the only one with ``metric=``), or ``None`` without a store."""
        return None if self.tables is None or self.metric is None else self.tables[self.metric.name]

    @property
    def deferred(self) -> bool:
        """``True`` when quality is left to :class:`~qualoader.data.QualityLoader` (no metric here)."""
        return self.metric is None

    def __len__(self) -> int:
        return self._length

    def score_sample(self, index: int) -> float | dict[str, float]:
        """Quality of sample ``index`` (a dict per metric with ``metrics=``): stored scores, else the metrics on that image (not stored)."""
        if self.metric is None:
            raise RuntimeError("score_sample needs a metric, but got a deferred QualityDataset (metric=None)")
        stored = self._stored(index)
        if any(value is None for value in stored.values()):
            stored = self._complete(stored, sample_image(self._load(index), self.image_key, f"dataset[{index}]"), index)
        return stored if self.multi else stored[self.metric.name]  # type: ignore[return-value]

    def _stored(self, index: int) -> dict[str, float | None]:
        return {name: (self.tables[name].get(index) if self.tables is not None else None) for name in self.metrics}

    def _complete(self, stored: dict[str, float | None], image: Any, index: int) -> dict[str, float]:
        """``stored`` with its gaps filled by one engine call on ``image`` for the metrics it lacks."""
        assert self.engine is not None
        names = [name for name, value in stored.items() if value is None]
        tensor = image_to_tensor(image, f"dataset[{index}] image")
        scores = self.engine.score(tensor.unsqueeze(0), names, difficulty=False).scores
        return {name: float(scores[name][0]) if value is None else value for name, value in stored.items()}

    def _load(self, index: int) -> Any:
        return load_sample(self.dataset, index)  # unreadable images raise SampleLoadError naming the file

    def __getitem__(self, index: int) -> Any:
        sample = self._load(index)
        image = sample_image(sample, self.image_key, f"dataset[{index}]")
        if self.metric is None:
            return add_fields(sample, [("index", index)], self.output, self.image_key)
        stored = self._stored(index)
        quality = self._complete(stored, image, index) if any(value is None for value in stored.values()) else stored
        hardness = {
            name: float(difficulty_of(metric, torch.tensor([quality[name]], dtype=torch.float64))[0])
            for name, metric in self.metrics.items()
        } if self.difficulty else {}
        first = self.metric.name
        fields: list[tuple[str, Any]] = [("quality", quality if self.multi else quality[first])]
        if self.difficulty:
            fields.append(("difficulty", hardness if self.multi else hardness[first]))
        if self.return_index:
            fields.append(("index", index))
        return add_fields(sample, fields, self.output, self.image_key)

    def __repr__(self) -> str:
        what = "deferred" if self.metric is None else f"metrics={list(self.metrics)!r}" if self.multi else f"metric={self.metric.name!r}"
        return f"QualityDataset({type(self.dataset).__name__} of {self._length}, {what}, output={self.output!r})"
