"""Data of the alignment benchmark: Fashion-MNIST splits, the corruption suite and the corrupted conditions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from qualoader.calibration import iterate_sweep

__all__ = ["INSTALL_HINT", "conditions", "corrupted_conditions", "load_corruptions", "load_data", "sample_indices"]

INSTALL_HINT = (
    "The alignment benchmark needs the real Fashion-MNIST files. Install them with\n"
    "    sudo apt-get install dataset-fashion-mnist\n"
    "(Debian/Ubuntu; puts them in /usr/share/datasets/fashion-mnist) or set QUALOADER_FASHION_MNIST\n"
    "to a folder holding t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], train-*[.gz]."
)


def load_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fashion-MNIST ``(train_images, train_labels, test_images, test_labels)``, uint8 :math:`(N, 1, 28, 28)` and :math:`(N,)`.

    Exits with the install instructions when the files are missing: the benchmark measures the real
    data, so the bundled 3000-image sample is not enough.
    """
    from qualoader.datasets import load_fashion_mnist

    try:
        train_images, train_labels = load_fashion_mnist("train")
        test_images, test_labels = load_fashion_mnist("test")
    except FileNotFoundError as error:
        raise SystemExit(f"{INSTALL_HINT}\n({error})") from error
    return train_images, train_labels, test_images, test_labels


def load_corruptions() -> tuple[list[str], dict[str, str]]:
    """Names of the corruption suite and the family of each (``noise``, ``blur``, ``digital``, ``weather``, ``extra``)."""
    from qualoader.corruptions import CORRUPTION_FAMILIES, list_corruptions

    return list(list_corruptions()), dict(CORRUPTION_FAMILIES)


def sample_indices(total: int, count: int, seed: int) -> Tensor:
    """The first ``count`` of a permutation of ``range(total)`` drawn from ``seed``: a seeded random subset :math:`(count,)`."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count]


def conditions(corruptions: Sequence[str], severities: Sequence[int]) -> list[tuple[str, int]]:
    """``[("clean", 0), (corruption, severity), ...]`` in the order the benchmark reports them."""
    return [("clean", 0)] + [(name, severity) for name in corruptions for severity in severities]


def corrupted_conditions(
    clean: Tensor, labels: Tensor, model: nn.Module, conditions: Sequence[tuple[str, int]], seed: int
) -> Iterator[Tensor]:
    """The images of every condition, in order: float :math:`(N, 1, 28, 28)` in [0, 1] per condition.

    Each condition is one call of the library's sweep (:func:`qualoader.calibration.iterate_sweep`)
    over the whole image set, with its own generator seeded from ``seed`` and the condition's index.
    Why not one sweep over every condition: the library draws all conditions from a single generator,
    batch by batch, so its corrupted pixels differ from the ones behind the committed figures; a
    generator per condition also lets a condition be reproduced alone. ``model`` is only the sweep's
    ``reference`` (set to eval mode while it runs); correctness is measured by the caller.
    """
    for index, (name, severity) in enumerate(conditions):
        if name == "clean":
            yield clean
            continue
        generator = torch.Generator().manual_seed(seed * 100_003 + index)
        _, batches = iterate_sweep(clean, labels, model, [name], [severity], generator, batch_size=clean.shape[0])
        (_, images, _, _, _), = batches
        yield images
