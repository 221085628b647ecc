"""Shared pieces of the engine benchmarks: a folder of real photo PNGs and a timed folder-scoring pass.

``make_photo_folder`` cuts random crops of the scikit-image photos (random side, position and
horizontal flip, resized to the target size; a fixed seed), so every run scores the same real
pixels. ``score_folder`` decodes and scores a list of files with a DataLoader: on CPU each of its
worker processes decodes *and* scores its batches (so "2 processes" means 2 processes doing all
the work, as CleanVision's ``n_jobs=2``); on CUDA the workers decode and the main process scores.
Not imported by the package.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from qualoader.datasets import PHOTO_NAMES
from qualoader.decoding import load_image
from qualoader.engine import ScoringEngine, parse_metric_spec
from qualoader.metrics import create_metric, metric_info


def photo_arrays() -> list[np.ndarray]:
    """The scikit-image photos as ``uint8`` arrays ``(H, W)`` or ``(H, W, 3)``."""
    import skimage.data

    arrays = []
    for name in PHOTO_NAMES:
        array = np.asarray(getattr(skimage.data, name)())
        if array.ndim == 3:
            array = array[..., :3]
        arrays.append(np.ascontiguousarray(array.astype(np.uint8)))
    return arrays


def make_photo_folder(folder: Path, count: int, size: int | tuple[int, int] = 224, seed: int = 0) -> list[Path]:
    """Write ``count`` PNG crops of real photos to ``folder``; ``size`` is a side or a ``(low, high)`` range of sides.

    Returns:
        The file paths, sorted.
    """
    rng = np.random.default_rng(seed)
    sizes = np.random.default_rng([seed, 1])  # separate stream: the same seed gives the same crops at any size
    arrays = photo_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        array = arrays[int(rng.integers(len(arrays)))]
        height, width = array.shape[:2]
        side = int(rng.integers(min(height, width) // 3, min(height, width) + 1))  # a random rescale
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = array[top : top + side, left : left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if isinstance(size, tuple):
            out_h, out_w = int(sizes.integers(size[0], size[1] + 1)), int(sizes.integers(size[0], size[1] + 1))
        else:
            out_h = out_w = size
        image = Image.fromarray(np.ascontiguousarray(crop)).resize((out_w, out_h), Image.Resampling.BILINEAR)
        path = folder / f"{index:05d}.png"
        image.save(path, format="PNG")
        paths.append(path)
    return paths


def build_engine(metrics: str, device: str = "cpu", downscale: int = 1) -> ScoringEngine:
    """An engine of the metric specification ``metrics``; classical measures at ``downscale`` (1: full resolution)."""
    if downscale == 1:
        return ScoringEngine(metrics, device)
    reduced = {"downscale": downscale}
    built = [create_metric(name, device, **(reduced if metric_info(name).accepts_downscale else {})) for name in parse_metric_spec(metrics)]
    return ScoringEngine(built, device)


class _Batches(Dataset[Any]):
    """Item ``i``: the ``i``-th batch of files, decoded (and scored when ``metrics`` is given and ``score_here``)."""

    def __init__(
        self, files: Sequence[Path], batch_size: int, metrics: str | None, score_here: bool, loader: Callable[[Any], Any], downscale: int
    ) -> None:
        self.files = [str(f) for f in files]
        self.batch_size = batch_size
        self.metrics = metrics
        self.score_here = score_here
        self.loader = loader
        self.downscale = downscale
        self._engine: ScoringEngine | None = None

    def __len__(self) -> int:
        return math.ceil(len(self.files) / self.batch_size)

    def __getitem__(self, index: int) -> Any:
        images = [self.loader(path) for path in self.files[index * self.batch_size : (index + 1) * self.batch_size]]
        if self.metrics is None or not self.score_here:
            return images
        if self._engine is None:  # one engine per worker process, built on first use
            self._engine = build_engine(self.metrics, "cpu", self.downscale)
        return self._engine.score(images).scores


def _identity(batch: Any) -> Any:
    return batch


def score_folder(
    files: Sequence[Path],
    metrics: str | None,
    *,
    workers: int = 2,
    batch_size: int = 64,
    device: str = "cpu",
    loader: Callable[[Any], Any] = load_image,
    downscale: int = 1,
) -> tuple[float, dict[str, torch.Tensor]]:
    """Decode (and score with the engine, ``metrics=None``: decode only) every file; returns ``(seconds, scores)``.

    ``downscale`` > 1 scores the classical measures at that reduced resolution (their ``downscale``).
    """
    on_cpu = torch.device(device).type == "cpu"
    dataset = _Batches(files, batch_size, metrics, on_cpu, loader, downscale)
    engine = None if (on_cpu or metrics is None) else build_engine(metrics, device, downscale)
    start = time.perf_counter()
    collected: dict[str, list[torch.Tensor]] = {}
    for item in DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_identity):
        if engine is not None:
            item = engine.score(item).scores
        if isinstance(item, dict):
            for name, values in item.items():
                collected.setdefault(name, []).append(values)
    seconds = time.perf_counter() - start
    return seconds, {name: torch.cat(parts) for name, parts in collected.items()}


class FileImages(Dataset[Any]):
    """Map-style dataset of decoded image files (``uint8`` or ``float32`` tensors :math:`(C, H, W)`)."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = [str(f) for f in files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.files[index])


def precompute_seconds(
    files: Sequence[Path], metric: str, store: Path, *, workers: int = 2, batch_size: int = 64, device: str = "cpu"
) -> float:
    """Seconds of one :func:`qualoader.data.precompute` pass over ``files`` into a new store at ``store``."""
    from qualoader.data import precompute
    from qualoader.metrics import create_metric

    built = create_metric(metric, device=device)
    start = time.perf_counter()
    precompute(FileImages(files), built, str(store), batch_size=batch_size, num_workers=workers, device=device, progress=False)
    return time.perf_counter() - start


def best_of(repeats: int, run: Callable[[], tuple[float, Any]]) -> tuple[float, Any]:
    """Fastest of ``repeats`` runs: ``(seconds, result of that run)``."""
    best: tuple[float, Any] | None = None
    for _ in range(repeats):
        result = run()
        if best is None or result[0] < best[0]:
            best = result
    assert best is not None
    return best


def machine() -> str:
    """A one-line description of this machine."""
    import os
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"
