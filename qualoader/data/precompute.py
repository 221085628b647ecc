"""``precompute``: one resumable scoring pass over a dataset that fills a score store."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from qualoader._validation import check_positive_int, check_type
from qualoader.data._samples import image_to_tensor, sample_image
from qualoader.data.dataset import table_for
from qualoader.data.loader import score_images
from qualoader.data.store import ScoreStore, ScoreTable
from qualoader.metrics.base import QualityMetric

__all__ = ["collate_indexed_images", "precompute"]


class _IndexedImages(Dataset[tuple[int, Tensor]]):
    """``(index, image (C, H, W))`` pairs of a dataset's samples (picklable for workers)."""

    def __init__(self, dataset: Dataset[Any], image_key: int | str | None) -> None:
        self.dataset = dataset
        self.image_key = image_key

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Tensor]:
        image = sample_image(self.dataset[index], self.image_key, f"dataset[{index}]")
        return index, image_to_tensor(image, f"dataset[{index}] image")


def collate_indexed_images(items: list[tuple[int, Tensor]]) -> tuple[Tensor, Tensor | list[Tensor]]:
    """Collate ``(index, image)`` pairs: indices :math:`(B,)` and a stack :math:`(B, C, H, W)`, or a list when sizes differ."""
    index = torch.tensor([i for i, _ in items], dtype=torch.int64)
    images = [image for _, image in items]
    first = images[0]
    if all(image.shape == first.shape and image.dtype == first.dtype for image in images):
        return index, torch.stack(images)
    return index, images


def precompute(
    dataset: Dataset[Any],
    metric: QualityMetric,
    store: ScoreStore | ScoreTable | str | os.PathLike[str],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    image_key: int | str | None = None,
    progress: bool = True,
) -> ScoreTable:
    """Score every sample of ``dataset`` that the store does not hold yet, batch by batch.

    Resumable: each batch is written (atomically, see :mod:`qualoader.data.store`) as soon as it is
    scored, and a new run skips the indices already scored, so an interrupted pass resumes where
    it stopped and ends with the same table as an uninterrupted one. Workers load and decode;
    scoring runs in this process on ``device``, one metric call per batch (per image size when
    sizes differ inside a batch).

    Args:
        dataset: map-style dataset of :math:`N` samples (tuples, dicts or images, as for
            :class:`~qualoader.data.QualityDataset`).
        metric: a no-reference metric; moved to ``device``.
        store: a :class:`ScoreStore` (its table for ``metric`` is created when missing), a
            :class:`ScoreTable`, or a folder path (a store of ``len(dataset)`` samples is opened or created).
        batch_size: images per metric call.
        num_workers: DataLoader worker processes for loading.
        device: where to score; ``None`` keeps the metric's device.
        image_key: position (tuples) or key (dicts) of the image in a sample.
        progress: show a tqdm progress bar.

    Returns:
        The filled :class:`ScoreTable` (``table.complete`` is ``True``).

    Raises:
        TypeError: wrong argument types, unsupported sample structure.
        ValueError: a store for another dataset length, images of the wrong shape or range.

    Example:
        >>> table = precompute(train, create_metric("sharpness"), "runs/scores", batch_size=256, num_workers=4)
        >>> table.scores().shape
        (60000,)
    """
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"dataset should be a map-style Dataset with __getitem__ and __len__, but got dataset of type {type(dataset).__name__}")
    check_type(metric, "metric", QualityMetric, "a QualityMetric")
    if metric.requires_reference:
        raise ValueError(f"metric should be a no-reference metric, but got the full-reference metric {metric.name!r}")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(num_workers, "num_workers", allow_zero=True)
    check_type(progress, "progress", bool, "a bool")
    length = len(dataset)  # type: ignore[arg-type]
    if store is None:
        raise TypeError("store should be a ScoreStore, a ScoreTable or a store folder, but got store=None (precompute fills a store)")
    table = table_for(store, metric, length)
    assert table is not None
    target = torch.device(device) if device is not None else metric.device
    metric = metric.to(target).eval()
    missing = table.missing()
    if missing.size == 0:
        return table
    loader = DataLoader(
        _IndexedImages(dataset, image_key),
        batch_size=batch_size,
        sampler=missing.tolist(),
        num_workers=num_workers,
        collate_fn=collate_indexed_images,
        pin_memory=target.type == "cuda",
    )
    with tqdm(total=length, initial=length - missing.size, disable=not progress, unit="img", desc=f"precompute {metric.name}") as bar:
        for index, images in loader:
            table.write(index, score_images(metric, images, target))
            bar.update(int(index.shape[0]))
    return table
