"""Local, offline sources of real images: Fashion-MNIST and scikit-image photos.

Nothing here downloads. Fashion-MNIST comes from a full local copy of the idx files (the Debian
package ``dataset-fashion-mnist``, or ``$QUALOADER_FASHION_MNIST``) or, when there is none, from
the sample bundled inside the package: the first 3000 TEST and the first 2000 TRAIN images with
their labels (``qualoader/assets/fashion_mnist_sample.npz``, 1.9 MB). Fashion-MNIST is by Han Xiao,
Kashif Rasul and Roland Vollgraf, Zalando Research (2017), under the MIT licence
(https://github.com/zalandoresearch/fashion-mnist); ``qualoader/assets/fashion_mnist_sample.txt``
says so beside the file, and ``tools/build_fashion_mnist_sample.py`` rebuilds it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader._validation import check_choice, check_positive_int

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SAMPLE",
    "FASHION_MNIST_SIZES",
    "FASHION_MNIST_SOURCES",
    "PHOTO_NAMES",
    "FashionMNISTSampleWarning",
    "fashion_mnist_digest",
    "fashion_mnist_root",
    "fashion_mnist_source",
    "load_fashion_mnist",
    "load_photos",
]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Images per split of the full dataset.
FASHION_MNIST_SIZES: dict[str, int] = {"train": 60000, "test": 10000}
#: The bundled sample: a prefix of each split, so ``images[:k]`` agrees with the full copy.
FASHION_MNIST_SAMPLE: Path = Path(__file__).resolve().parent / "assets" / "fashion_mnist_sample.npz"
#: ``source=`` of :func:`load_fashion_mnist`: the full copy when found else the sample, only the full copy, only the sample.
FASHION_MNIST_SOURCES: frozenset[str] = frozenset({"auto", "full", "sample"})
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
# One warning per process and split: a training script that reloads the data every epoch should not repeat it.
_WARNED: set[str] = set()


class FashionMNISTSampleWarning(UserWarning):
    """``load_fashion_mnist(source="auto")`` found no full copy and returned the bundled sample."""


def fashion_mnist_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding the full Fashion-MNIST idx files: ``root``, ``$QUALOADER_FASHION_MNIST``, or the Debian path.

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


def fashion_mnist_source(source: str = "auto", root: str | os.PathLike[str] | None = None) -> str:
    """Which copy :func:`load_fashion_mnist` reads with these arguments: ``"full"`` or ``"sample"``.

    ``"auto"`` is ``"full"`` when :func:`fashion_mnist_root` finds the idx files and ``"sample"``
    otherwise; an explicit ``root`` always means the full copy in that folder.

    Raises:
        ValueError: ``source`` is not in :data:`FASHION_MNIST_SOURCES`, or ``root`` is given with ``source="sample"``.
        FileNotFoundError: ``source="full"`` (or ``root`` given) and the files are missing.

    Example:
        >>> fashion_mnist_source("sample")
        'sample'
    """
    check_choice(source, "source", FASHION_MNIST_SOURCES)
    if source == "sample":
        if root is not None:
            raise ValueError(f"root should be None with source='sample' (the sample is bundled), but got root={str(root)!r}")
        return "sample"
    if source == "full" or root is not None:
        fashion_mnist_root(root)
        return "full"
    try:
        fashion_mnist_root()
    except FileNotFoundError:
        return "sample"
    return "full"


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


def _load_sample(split: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(FASHION_MNIST_SAMPLE, allow_pickle=False) as archive:
        return archive[f"{split}_images"], archive[f"{split}_labels"]


def fashion_mnist_digest(split: str = "test", root: str | os.PathLike[str] | None = None, source: str = "auto") -> str:
    """A short content digest of the files :func:`load_fashion_mnist` reads with these arguments (16 hex digits).

    BLAKE2b of the split's image and label files as stored (the idx files, gzipped or not, or the
    bundled sample), so a store can tell a changed copy from the one it scored although the split,
    the limit and the sample count are the same. About 0.1 s for the 47 MB TRAIN images.

    Example:
        >>> len(fashion_mnist_digest("test", source="sample"))
        16
    """
    check_choice(split, "split", _FILES)
    hasher = hashlib.blake2b(f"{split}\n".encode(), digest_size=8)
    if fashion_mnist_source(source, root) == "sample":
        files = [FASHION_MNIST_SAMPLE]
    else:
        folder = fashion_mnist_root(root)
        files = [Path(f"{folder / name}.gz") if Path(f"{folder / name}.gz").exists() else folder / name for name in _FILES[split]]
    for path in files:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
        hasher.update(b"\0")
    return hasher.hexdigest()


def load_fashion_mnist(
    split: str = "test", root: str | os.PathLike[str] | None = None, source: str = "auto"
) -> tuple[Tensor, Tensor]:
    """Load real Fashion-MNIST as tensors: the full split, or the bundled sample when there is no full copy.

    With ``source="auto"`` (the default) and no full copy found (see :func:`fashion_mnist_source`),
    the bundled sample is returned and a :class:`FashionMNISTSampleWarning` says so, once per
    process and split. The sample holds the first 3000 test and the first 2000 train images
    (Zalando Research, MIT licence; see the module docstring).

    Args:
        split: ``"train"`` (60,000 images; 2000 in the sample) or ``"test"`` (10,000; 3000 in the sample).
        root: folder with the full idx files (see :func:`fashion_mnist_root`); implies the full copy.
        source: ``"auto"``, ``"full"`` (only the full copy: ``FileNotFoundError`` without it) or
            ``"sample"`` (only the bundled sample, no warning).

    Returns:
        ``(images, labels)``: images :math:`(N, 1, 28, 28)` ``uint8``, labels :math:`(N,)` ``int64``.

    Example:
        >>> images, labels = load_fashion_mnist("test", source="sample")
        >>> images.shape, labels.shape
        (torch.Size([3000, 1, 28, 28]), torch.Size([3000]))
    """
    check_choice(split, "split", _FILES)
    if fashion_mnist_source(source, root) == "sample":
        image_array, label_array = _load_sample(split)
        if source == "auto" and split not in _WARNED:
            _WARNED.add(split)
            warnings.warn(
                f"no full Fashion-MNIST copy in {os.environ.get('QUALOADER_FASHION_MNIST', str(_DEFAULT_ROOT))!r} "
                f"($QUALOADER_FASHION_MNIST, else {_DEFAULT_ROOT}), so load_fashion_mnist({split!r}) "
                f"returns the bundled sample: the first {len(label_array)} of the {FASHION_MNIST_SIZES[split]} {split} images. "
                "Install the full dataset with 'sudo apt-get install dataset-fashion-mnist' or set QUALOADER_FASHION_MNIST; "
                "pass source='sample' to choose the sample without this warning.",
                FashionMNISTSampleWarning,
                stacklevel=2,
            )
        images = torch.from_numpy(image_array.copy()).unsqueeze(1)
        return images, torch.from_numpy(label_array.astype(np.int64))
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
