"""``QualityDataset``: wrap a map-style dataset so every sample carries its quality (or its index)."""

from __future__ import annotations

import os
from collections.abc import Sized
from typing import Any

import torch
from torch.utils.data import Dataset

from qualoader._validation import check_choice, check_type
from qualoader.data._samples import OUTPUTS, add_fields, image_to_tensor, sample_image
from qualoader.data.store import ScoreStore, ScoreTable
from qualoader.metrics.base import QualityMetric

__all__ = ["QualityDataset", "resolve_difficulty", "table_for"]


def resolve_difficulty(metric: QualityMetric, difficulty: bool | None) -> bool:
    """Whether to annotate difficulty: ``None`` = when ``metric`` is calibrated, ``True`` = required, ``False`` = never.

    Raises:
        TypeError: ``difficulty`` is not a bool or None.
        ValueError: ``difficulty=True`` for a metric without calibration.
    """
    if difficulty is not None and not isinstance(difficulty, bool):
        raise TypeError(f"difficulty should be a bool or None, but got difficulty of type {type(difficulty).__name__}")
    if difficulty is True and metric.calibration is None:
        raise ValueError(
            f"difficulty should be False or None for the uncalibrated metric {metric.name!r}, but got difficulty=True; "
            "attach a calibration (metric.calibration = DifficultyCalibration...) or use a calibrated metric"
        )
    return metric.calibration is not None if difficulty is None else difficulty


def _check_image_key(image_key: Any) -> None:
    if image_key is not None and (isinstance(image_key, bool) or not isinstance(image_key, (int, str))):
        raise TypeError(f"image_key should be an int (tuple samples), a str (dict samples) or None, but got image_key of type {type(image_key).__name__}")


def table_for(store: ScoreStore | ScoreTable | str | os.PathLike[str] | None, metric: QualityMetric, length: int) -> ScoreTable | None:
    """The table of ``metric`` in ``store`` (created when missing), checked against ``length`` samples.

    ``store`` may be a :class:`ScoreStore`, a :class:`ScoreTable`, a store folder (opened, or
    created for ``length`` samples) or ``None`` (no store).
    """
    if store is None:
        return None
    if isinstance(store, (str, os.PathLike)):
        store = ScoreStore(store, length)
    check_type(store, "store", (ScoreStore, ScoreTable), "a ScoreStore, a ScoreTable, a store folder or None")
    if isinstance(store, ScoreStore):
        if store.length != length:
            raise ValueError(f"store should hold scores for len(dataset)={length} samples, but got store.length={store.length} (a store for another dataset)")
        return store.table(metric, create=True)
    if store.length != length:
        raise ValueError(f"store should hold scores for len(dataset)={length} samples, but got store.length={store.length} (a table for another dataset)")
    store.check_metric(metric)
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

    Output: dict samples gain the keys ``"quality"`` and ``"difficulty"`` (and ``"index"``); tuple
    and list samples gain trailing elements ``(*sample, quality, difficulty[, index])``; a bare
    image becomes ``(image, quality, difficulty)``. ``output="dict"`` turns tuples into
    ``{"image": sample[0], "target": sample[1:], ...}`` (the single target unwrapped) and bare
    images into ``{"image": image, ...}``. ``quality`` is a Python float (collated to float64
    ``(B,)``) and ``difficulty`` is omitted when it is not annotated (see ``difficulty``).

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
        difficulty: ``None`` annotates ``metric.difficulty(quality)`` when the metric has a
            calibration and omits it otherwise; ``True`` requires a calibration; ``False`` never.
        return_index: also append the sample index (always carried in the deferred mode, where
            QualityLoader removes it unless this is ``True``).

    Raises:
        TypeError: wrong argument types; at ``__getitem__``, an unsupported sample structure.
        ValueError: a store for another dataset length, ``difficulty=True`` without calibration,
            an unknown ``output``; at ``__getitem__``, an image of the wrong shape.

    Example:
        >>> data = QualityDataset(fashion_mnist, create_metric("sharpness"))
        >>> image, label, quality = data[0]
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
            if store is not None or difficulty is not None:
                raise ValueError("store and difficulty should be None when metric=None (deferred mode: give them to QualityLoader), "
                                 f"but got store={store!r}, difficulty={difficulty!r}")
            self.table: ScoreTable | None = None
            self.difficulty = False
        else:
            self.difficulty = resolve_difficulty(metric, difficulty)
            self.table = table_for(store, metric, self._length)

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
        return self._score_image(sample_image(self.dataset[index], self.image_key, f"dataset[{index}]"), index)

    def _score_image(self, image: Any, index: int) -> float:
        assert self.metric is not None
        tensor = image_to_tensor(image, f"dataset[{index}] image")
        with torch.no_grad():
            return float(self.metric(tensor.unsqueeze(0).to(self.metric.device))[0])

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        image = sample_image(sample, self.image_key, f"dataset[{index}]")
        if self.metric is None:
            return add_fields(sample, [("index", index)], self.output, self.image_key)
        quality = self.table.get(index) if self.table is not None else None
        if quality is None:
            quality = self._score_image(image, index)
        fields: list[tuple[str, Any]] = [("quality", quality)]
        if self.difficulty:
            fields.append(("difficulty", float(self.metric.difficulty(torch.tensor([quality], dtype=torch.float64))[0])))
        if self.return_index:
            fields.append(("index", index))
        return add_fields(sample, fields, self.output, self.image_key)

    def __repr__(self) -> str:
        what = f"metric={self.metric.name!r}" if self.metric is not None else "deferred"
        return f"QualityDataset({type(self.dataset).__name__} of {self._length}, {what}, output={self.output!r})"
