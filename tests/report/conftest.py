"""Real images written to disk for the report tests: an ImageFolder tree and WebDataset shards."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def fashion_images(fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 60 real Fashion-MNIST test images, half of them blurred by a 3x3 box filter."""
    images, labels = fashion_mnist_test
    images = images[:60].clone()
    blurred = torch.nn.functional.avg_pool2d(images[:30].float(), 3, stride=1, padding=1, count_include_pad=False)
    images[:30] = blurred.round().to(torch.uint8)
    return images, labels[:60]


@pytest.fixture
def image_folder(tmp_path: Path, photos: torch.Tensor, fashion_images: tuple[torch.Tensor, torch.Tensor]) -> Path:
    """ImageFolder tree: ``photos/*.png`` (RGB 64 px skimage photos) and ``fashion/*.png`` (grey 28 px)."""
    root = tmp_path / "images"
    (root / "photos").mkdir(parents=True)
    (root / "fashion").mkdir()
    small = torch.nn.functional.interpolate(photos[:6], size=(64, 64), mode="area")
    for index, photo in enumerate((small * 255).round().to(torch.uint8)):
        Image.fromarray(photo.permute(1, 2, 0).numpy()).save(root / "photos" / f"photo{index}.png")
    for index, image in enumerate(fashion_images[0][:20]):
        Image.fromarray(image[0].numpy()).save(root / "fashion" / f"item{index:02d}.png")
    return root


@pytest.fixture
def shards(tmp_path: Path, fashion_images: tuple[torch.Tensor, torch.Tensor]) -> list[Path]:
    """Three shards written by webdataset's ShardWriter: 20 samples each, the first two tagged."""
    import webdataset as wds

    folder = tmp_path / "shards"
    folder.mkdir()
    images, labels = fashion_images
    with wds.ShardWriter(str(folder / "part-%06d.tar"), maxcount=20, verbose=0) as writer:
        for index in range(60):
            sample = {"__key__": f"sample{index:04d}", "png": _png(images[index, 0].numpy()), "cls": str(int(labels[index])).encode()}
            if index < 40:
                sample["quality.json"] = json.dumps({"sharpness": {"score": float(index), "fingerprint": "test"}}).encode()
            writer.write(sample)
    return sorted(folder.glob("*.tar"))
