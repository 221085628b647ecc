"""PNG figures of a quality report (matplotlib, Agg backend) and example thumbnails (PIL)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DIFFICULTY_EDGES",
    "plot_difficulty",
    "plot_distribution",
    "plot_shards",
    "save_thumbnail",
]

#: Bucket edges of the expected error (difficulty) histogram.
DIFFICULTY_EDGES: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_distribution(scores: np.ndarray, name: str, higher_is_better: bool, path: Path) -> None:
    """Histogram of the finite raw scores :math:`(N,)` of one metric, with its median marked."""
    plt = _pyplot()
    finite = scores[np.isfinite(scores)]
    figure, axis = plt.subplots(figsize=(5.5, 3.2))
    axis.hist(finite, bins=min(50, max(5, finite.size // 10)), color="tab:blue", alpha=0.85)
    if finite.size:
        axis.axvline(float(np.median(finite)), color="black", linestyle="--", linewidth=1, label="median")
        axis.legend(fontsize=8)
    axis.set_xlabel(f"{name} ({'higher' if higher_is_better else 'lower'} = better)", fontsize=9)
    axis.set_ylabel("images", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_difficulty(difficulty: np.ndarray, name: str, path: Path) -> list[int]:
    """Bar chart of images per difficulty bucket (:data:`DIFFICULTY_EDGES`); returns the counts."""
    plt = _pyplot()
    finite = np.clip(difficulty[np.isfinite(difficulty)], 0.0, 1.0)
    counts, _ = np.histogram(finite, bins=np.asarray(DIFFICULTY_EDGES))
    labels = [f"{low:.2f}-{high:.2f}" for low, high in itertools.pairwise(DIFFICULTY_EDGES)]
    figure, axis = plt.subplots(figsize=(5.5, 3.2))
    axis.bar(labels, counts, color=plt.get_cmap("RdYlGn_r")(np.linspace(0.1, 0.9, len(labels))))
    axis.set_xlabel(f"expected error of the reference network ({name} calibration)", fontsize=9)
    axis.set_ylabel("images", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return counts.tolist()


def plot_shards(scores: np.ndarray, shards: Sequence[str], name: str, path: Path, max_shards: int = 40) -> None:
    """Box plot of one metric's scores :math:`(N,)` per shard (the first ``max_shards`` shards)."""
    plt = _pyplot()
    names = list(dict.fromkeys(shards))[:max_shards]
    shard_array = np.asarray(shards)
    data = [scores[(shard_array == shard) & np.isfinite(scores)] for shard in names]
    figure, axis = plt.subplots(figsize=(max(5.5, 0.35 * len(names) + 2), 3.4))
    axis.boxplot(data, showfliers=False)
    axis.set_xticks(range(1, len(names) + 1), names, rotation=60, ha="right", fontsize=7)
    axis.set_ylabel(name, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def save_thumbnail(image: Tensor, path: Path, size: int = 96) -> None:
    """Save image :math:`(C, H, W)` (``uint8``, or float in [0, 1]) as a PNG whose longer side is ``size`` pixels."""
    from PIL import Image

    if image.is_floating_point():  # 16-bit sources decode to float in [0, 1] (qualoader.decoding)
        image = image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    array = image.detach().cpu().numpy()
    picture = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    scale = size / max(picture.size)
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), resample)
    picture.save(path, format="PNG")
