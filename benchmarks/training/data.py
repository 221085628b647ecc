"""Data of the training benchmark: mixed-quality Fashion-MNIST TRAIN, a validation split and three TEST sets.

* TRAIN (``train_size`` of the 60,000 TRAIN images, a seeded subset) is split into a validation
  part (``val_size`` images) and the training part. In both, a seeded share (``degraded_share``,
  default 50%) of the images is degraded by one corruption of the *training families* (noise,
  blur, digital) at a severity drawn uniformly from 1-5, each image its own draw.
* The *held-out families* (weather and ``extra``) never touch TRAIN or validation.
* TEST (the 10,000 TEST images, or a seeded subset of ``test_size``): clean; every image under a
  training-family corruption; every image under a held-out-family corruption (random corruption
  and severity 1-5 per image).

Everything is drawn from ``seed``, so the data are the same for every arm and every training seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qualoader.corruptions import CORRUPTION_FAMILIES, corrupt

__all__ = ["HELD_OUT_FAMILIES", "INSTALL_HINT", "TRAIN_FAMILIES", "BenchmarkData", "build_data", "degrade", "family_corruptions"]

#: Families whose corruptions degrade the training data.
TRAIN_FAMILIES = ("noise", "blur", "digital")
#: Families kept out of training and selection entirely; only the held-out TEST set uses them.
HELD_OUT_FAMILIES = ("weather", "extra")

INSTALL_HINT = (
    "The training benchmark needs the real Fashion-MNIST files. Install them with\n"
    "    sudo apt-get install dataset-fashion-mnist\n"
    "(Debian/Ubuntu; puts them in /usr/share/datasets/fashion-mnist) or set QUALOADER_FASHION_MNIST\n"
    "to a folder holding t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], train-*[.gz]."
)


@dataclass
class BenchmarkData:
    """Tensors of one benchmark run; images are float :math:`(N, 1, 28, 28)` in [0, 1], labels int64 :math:`(N,)`."""

    train_images: Tensor
    train_labels: Tensor
    #: bool :math:`(N_{train},)`: which training images were degraded.
    train_degraded: Tensor
    val_images: Tensor
    val_labels: Tensor
    #: test set name ("clean", "train-families", "held-out") -> (images, labels)
    tests: dict[str, tuple[Tensor, Tensor]]


def family_corruptions(families: Sequence[str]) -> list[str]:
    """Corruption names of the given families, in the library's order."""
    return [name for name, family in CORRUPTION_FAMILIES.items() if family in families]


def degrade(images: Tensor, share: float, corruptions: Sequence[str], generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Degrade a seeded ``share`` of float images :math:`(N, 1, 28, 28)`, each by a random corruption and severity 1-5.

    Returns the new images :math:`(N, 1, 28, 28)` and the bool mask :math:`(N,)` of degraded ones.
    """
    count = images.shape[0]
    chosen = torch.randperm(count, generator=generator)[: round(share * count)]
    which = torch.randint(len(corruptions), (chosen.numel(),), generator=generator)
    severity = torch.randint(1, 6, (chosen.numel(),), generator=generator)
    out = images.clone()
    # One library call per (corruption, severity) group: per-image calls would cost ~100x more on CPU.
    for c, name in enumerate(corruptions):
        for s in range(1, 6):
            members = chosen[(which == c) & (severity == s)]
            if members.numel():
                out[members] = corrupt(images[members], name, s, generator=generator).to(out.dtype)
    mask = torch.zeros(count, dtype=torch.bool)
    mask[chosen] = True
    return out, mask


def build_data(*, train_size: int, val_size: int, test_size: int, degraded_share: float, seed: int) -> BenchmarkData:
    """Load Fashion-MNIST and build the benchmark's splits (see the module docstring); exits with a hint without the files."""
    from qualoader.datasets import load_fashion_mnist

    try:
        train_images, train_labels = load_fashion_mnist("train")
        test_images, test_labels = load_fashion_mnist("test")
    except FileNotFoundError as error:
        raise SystemExit(f"{INSTALL_HINT}\n({error})") from error
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(train_images.shape[0], generator=generator)[: min(train_size, train_images.shape[0])]
    images, labels = train_images[order].float().div_(255.0), train_labels[order]
    training = family_corruptions(TRAIN_FAMILIES)
    images, degraded = degrade(images, degraded_share, training, generator)
    val, train = slice(0, val_size), slice(val_size, None)
    test_order = torch.randperm(test_images.shape[0], generator=generator)[: min(test_size, test_images.shape[0])]
    clean, test_y = test_images[test_order].float().div_(255.0), test_labels[test_order]
    tests = {
        "clean": (clean, test_y),
        "train-families": (degrade(clean, 1.0, training, generator)[0], test_y),
        "held-out": (degrade(clean, 1.0, family_corruptions(HELD_OUT_FAMILIES), generator)[0], test_y),
    }
    return BenchmarkData(images[train], labels[train], degraded[train], images[val], labels[val], tests)
