"""Local, offline sources of real images: Fashion-MNIST (Debian package) and scikit-image photos.

Nothing here downloads. When the files are missing, the error says what to install.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader._validation import check_choice, check_positive_int

__all__ = [
    "FASHION_MNIST_CLASSES",
    "PHOTO_NAMES",
    "fashion_mnist_root",
    "load_fashion_mnist",
    "load_photos",
]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Natural photos that ship inside scikit-image itself (no pooch download needed).
PHOTO_NAMES: tuple[str, ...] = (
    "astronaut", "camera", "cat", "chelsea", "coffee", "coins", "rocket", "hubble_deep_field",
    "immunohistochemistry", "moon", "clock", "grass", "gravel", "brick", "retina",
)
_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def fashion_mnist_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding the Fashion-MNIST idx files: ``root``, ``$QUALOADER_FASHION_MNIST``, or the Debian path.

    Raises:
        FileNotFoundError: the files are not there; the message says how to install them.
    """
    folder = Path(root or os.environ.get("QUALOADER_FASHION_MNIST", _DEFAULT_ROOT))
    first = folder / _FILES["test"][0]
    if not (first.exists() or first.with_suffix(".gz").exists() or Path(f"{first}.gz").exists()):
        raise FileNotFoundError(
            f"root should be a folder with the Fashion-MNIST idx files (t10k-images-idx3-ubyte[.gz], ...), "
            f"but got root={str(folder)!r} without them. Install them with "
            f"'sudo apt-get install dataset-fashion-mnist' (puts them in {_DEFAULT_ROOT}) "
            "or pass root= / set QUALOADER_FASHION_MNIST to a folder that has them."
        )
    return folder


def _read_idx(path: Path) -> np.ndarray:
    gz = Path(f"{path}.gz")
    opener = gzip.open if gz.exists() else open
    with opener(gz if gz.exists() else path, "rb") as handle:
        data = handle.read()
    magic = int.from_bytes(data[:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte
        raise ValueError(f"path should be an idx file of unsigned bytes, but got path={str(path)!r} with magic {magic:#x}")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str = "test", root: str | os.PathLike[str] | None = None) -> tuple[Tensor, Tensor]:
    """Load the real Fashion-MNIST split as tensors.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        root: folder with the idx files (see :func:`fashion_mnist_root`).

    Returns:
        ``(images, labels)``: images :math:`(N, 1, 28, 28)` ``uint8``, labels :math:`(N,)` ``int64``.

    Example:
        >>> images, labels = load_fashion_mnist("test")
        >>> images.shape
        torch.Size([10000, 1, 28, 28])
    """
    check_choice(split, "split", _FILES)
    folder = fashion_mnist_root(root)
    image_file, label_file = _FILES[split]
    images = torch.from_numpy(_read_idx(folder / image_file).copy()).unsqueeze(1)
    labels = torch.from_numpy(_read_idx(folder / label_file).astype(np.int64))
    return images, labels


def load_photos(size: int = 128, names: tuple[str, ...] = PHOTO_NAMES) -> Tensor:
    """Real photos from scikit-image, centre-cropped square and resized (needs ``scikit-image``).

    Args:
        size: output side length in pixels.
        names: which photos (see :data:`PHOTO_NAMES`); grey ones are repeated to 3 channels.

    Returns:
        Float tensor :math:`(N, 3, size, size)` in [0, 1].
    """
    check_positive_int(size, "size")
    try:
        import skimage.data
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("load_photos needs scikit-image: pip install 'qualoader[dev]' or pip install scikit-image") from error
    batch = []
    for name in names:
        check_choice(name, "names[i]", PHOTO_NAMES)
        array = np.asarray(getattr(skimage.data, name)())
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        image = torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1).float().div(255.0)
        side = min(image.shape[1:])
        top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
        image = image[:, top : top + side, left : left + side]
        image = F.interpolate(image[None], size=(size, size), mode="area")[0]
        batch.append(image.clamp_(0.0, 1.0))
    return torch.stack(batch)
