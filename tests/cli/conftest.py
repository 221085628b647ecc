"""Fixtures of the command tests that build quality profiles: reference networks saved locally, labelled folders and shards."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from qualoader.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist
from qualoader.reference import DEFAULT_CHECKPOINT, FashionCNN, load_state_dict_file


def trained_fashion_cnn() -> nn.Module:
    """The embedded network's architecture and trained weights, as a plain module."""
    model = FashionCNN(num_classes=10)
    model.load_state_dict(load_state_dict_file(DEFAULT_CHECKPOINT))
    return model.eval()


@pytest.fixture
def always_class_zero(tmp_path: Path) -> Path:
    """``state_dict`` of a FashionCNN that predicts class 0 for every image (BatchNorm kept, so bn-shift scores it)."""
    model = copy.deepcopy(trained_fashion_cnn())
    last = [module for module in model.modules() if isinstance(module, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.arange(10, 0, -1, dtype=torch.float32))
    torch.save(model.state_dict(), tmp_path / "always_zero.pt")
    return tmp_path / "always_zero.pt"


@pytest.fixture
def write_image_folder(tmp_path: Path) -> Callable[..., Path]:
    """``write_image_folder({folder name: Fashion-MNIST class index}, per_class)``: PNGs of real test images."""

    def write(classes: dict[str, int], per_class: int = 12, name: str = "folder") -> Path:
        images, labels = load_fashion_mnist("test")
        root = tmp_path / name
        for folder, index in classes.items():
            (root / folder).mkdir(parents=True)
            for i, image in enumerate(images[labels == index][:per_class]):
                Image.fromarray(image[0].numpy()).save(root / folder / f"{i:03d}.png")
        return root

    return write


@pytest.fixture
def fashion_class_names() -> tuple[str, ...]:
    return tuple(FASHION_MNIST_CLASSES)
