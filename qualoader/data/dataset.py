"""``QualityDataset``: wrap a map-style dataset so every sample carries its quality (or its index)."""

from __future__ import annotations

import os
from collections.abc import Sized
from typing import Any

import torch
from torch.utils.data import Dataset

from qualoader._validation import check_choice, check_type
from qualoader.data._samples import OUTPUTS, add_fields, image_to_tensor, load_sample, sample_image
from qualoader.data.identity import identify_dataset
from qualoader.data.store import ScoreStore, ScoreTable
from qualoader.metrics.base import QualityMetric

__all__ = ["QualityDataset", "difficulty_of", "resolve_difficulty", "table_for"]


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
        raise TypeError(f"image_key should be an int (tuple samples), a str (dict samples) or None, but got image_key of type {type(image_key).__name__}")


def table_for(
    store: ScoreStore | ScoreTable | str | os.PathLike[str] | None,
    metric: QualityMetric,
    dataset: Any,
    *,
    dataset_id: str | None = None,
    image_key: int | str | None = None,
) -> ScoreTable | None:
    """The table of ``metric`` in ``store`` (created when missing), checked against ``dataset``.

    ``store`` may be a :class:`ScoreStore`, a :class:`ScoreTable`, a store folder (opened, or
    created for ``dataset``) or ``None`` (no store). The store's length is checked first, then the
    dataset's identity (:func:`~qualoader.data.identity.identify_dataset` with ``dataset_id`` and
    ``image_key``) is matched with the store's (:meth:`ScoreStore.match_dataset`): changed files are
    rescored, another dataset is refused. Without ``dataset_id``, a store opened with one
    (``ScoreStore(root, n, dataset_id=...)``) lends it, so every path that uses that store
    identifies an in-memory dataset the same way.
    """
    if store is None:
        return None
    length = len(dataset)
    if not isinstance(store, (str, os.PathLike)):
        check_type(store, "store", (ScoreStore, ScoreTable), "a ScoreStore, a ScoreTable, a store folder or None")
        if store.length != length:
            what = "store" if isinstance(store, ScoreStore) else "table"
            raise ValueError(f"store should hold scores for len(dataset)={length} samples, but got store.length={store.length} (a {what} for another dataset)")
        if isinstance(store, ScoreTable):
            store.check_metric(metric)
    if dataset_id is not None:
        check_type(dataset_id, "dataset_id", str, "a str or None")
    elif isinstance(store, ScoreStore):
        dataset_id = store.dataset_id
    elif isinstance(store, ScoreTable):
        dataset_id = store.header["dataset_id"]
    identity = identify_dataset(dataset, dataset_id=dataset_id, image_key=image_key)
    if isinstance(store, (str, os.PathLike)):
        return ScoreStore(store, identity=identity).table(metric, create=True)
    if isinstance(store, ScoreStore):
        store.match_dataset(identity)
        return store.table(metric, create=True)
    ScoreStore(store.path.parent).match_dataset(identity)
    return store


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
        metric: the quality metric, or ``None`` for the deferred mode.
        image_key: position of the image in tuple samples (default ``0``) or its key in dict
            samples (default ``"image"``).
        store: a :class:`ScoreStore` (its table for ``metric`` is created when missing), a
            :class:`ScoreTable` or a store folder; must hold ``len(dataset)`` samples. Read-only here.
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
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        metric: QualityMetric | None = None,
        *,
        image_key: int | str | None = None,
        store: ScoreStore | ScoreTable | str | os.PathLike[str] | None = None,
        output: str = "auto",
        difficulty: bool | None = None,
        return_index: bool = False,
        dataset_id: str | None = None,
    ) -> None:
        if not isinstance(dataset, Sized) or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"dataset should be a map-style Dataset with __getitem__ and __len__, but got dataset of type {type(dataset).__name__}")
        if metric is not None:
            check_type(metric, "metric", QualityMetric, "a QualityMetric or None")
            if metric.requires_reference:
                raise ValueError(f"metric should be a no-reference metric, but got the full-reference metric {metric.name!r}")
        _check_image_key(image_key)
        check_choice(output, "output", OUTPUTS)
        check_type(return_index, "return_index", bool, "a bool")
        self.dataset = dataset
        self.metric = metric
        self.image_key = image_key
        self.output = output
        self.return_index = return_index
        self._length = len(dataset)
        if metric is None:
            if store is not None or difficulty is not None or dataset_id is not None:
                raise ValueError("store, difficulty and dataset_id should be None when metric=None (deferred mode: give them to QualityLoader), "
                                 f"but got store={store!r}, difficulty={difficulty!r}, dataset_id={dataset_id!r}")
            self.table: ScoreTable | None = None
            self.difficulty = False
        else:
            self.difficulty = resolve_difficulty(metric, difficulty)
            self.table = table_for(store, metric, dataset, dataset_id=dataset_id, image_key=image_key)

    @property
    def deferred(self) -> bool:
        """``True`` when quality is left to :class:`~qualoader.data.QualityLoader` (no metric here)."""
        return self.metric is None

    def __len__(self) -> int:
        return self._length

    def score_sample(self, index: int) -> float:
        """Quality of sample ``index``: the stored score, else the metric on that image (not stored)."""
        if self.metric is None:
            raise RuntimeError("score_sample needs a metric, but got a deferred QualityDataset (metric=None)")
        if self.table is not None:
            stored = self.table.get(index)
            if stored is not None:
                return stored
        return self._score_image(sample_image(self._load(index), self.image_key, f"dataset[{index}]"), index)

    def _load(self, index: int) -> Any:
        return load_sample(self.dataset, index)  # unreadable images raise SampleLoadError naming the file

    def _score_image(self, image: Any, index: int) -> float:
        assert self.metric is not None
        tensor = image_to_tensor(image, f"dataset[{index}] image")
        with torch.no_grad():
            return float(self.metric(tensor.unsqueeze(0).to(self.metric.device))[0])

    def __getitem__(self, index: int) -> Any:
        sample = self._load(index)
        image = sample_image(sample, self.image_key, f"dataset[{index}]")
        if self.metric is None:
            return add_fields(sample, [("index", index)], self.output, self.image_key)
        quality = self.table.get(index) if self.table is not None else None
        if quality is None:
            quality = self._score_image(image, index)
        fields: list[tuple[str, Any]] = [("quality", quality)]
        if self.difficulty:
            fields.append(("difficulty", float(difficulty_of(self.metric, torch.tensor([quality], dtype=torch.float64))[0])))
        if self.return_index:
            fields.append(("index", index))
        return add_fields(sample, fields, self.output, self.image_key)

    def __repr__(self) -> str:
        what = f"metric={self.metric.name!r}" if self.metric is not None else "deferred"
        return f"QualityDataset({type(self.dataset).__name__} of {self._length}, {what}, output={self.output!r})"
