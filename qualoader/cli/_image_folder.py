"""An image folder as a dataset, without torchvision: the ``precompute`` command's reader of SOURCE folders.

Importing torchvision costs seconds before the first image (``import torchvision`` loads its models
and ``torch._dynamo``); the command needs only the file list and a resize. The list is the one
torchvision's ``ImageFolder`` makes (same extensions, same order), so stores built before keep their
manifest, and a flat folder (images directly in it) is read too, as one class.

Importing this module does not import torch: ``precompute`` lists the folder (and starts decoding
it, :mod:`qualoader.cli._head_start`) while torch is still loading.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

__all__ = ["IMAGE_SUFFIXES", "ImageFiles", "Resize", "image_samples"]

#: torchvision's ``IMG_EXTENSIONS``: the files its ``ImageFolder`` lists, so a store's manifest does not change.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _has_class_folders(root: Path) -> bool:
    """``root/<class>/<image>``: sub-folders and no image directly in ``root``."""
    entries = list(os.scandir(root))
    flat_images = any(entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES) for entry in entries)
    return not flat_images and any(entry.is_dir() for entry in entries)


def image_samples(root: str) -> tuple[list[str], list[tuple[str, int]]]:
    """``(classes, samples)`` of :class:`ImageFiles` for ``root``: class names and ``[(path, class index)]`` in its order.

    Raises:
        FileNotFoundError: no image file under ``root``.
    """
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir()) if _has_class_folders(Path(root)) else [""]
    samples: list[tuple[str, int]] = []
    for index, name in enumerate(classes):
        # os.path.join(root, "") is root itself: the flat case walks everything under it
        for folder, _, names in sorted(os.walk(os.path.join(root, name), followlinks=True)):
            samples += [(os.path.join(folder, file), index) for file in sorted(names) if file.lower().endswith(IMAGE_SUFFIXES)]
    if not samples:
        raise FileNotFoundError(f"SOURCE should be a folder with images ({', '.join(IMAGE_SUFFIXES)}), but got SOURCE={root!r} with none")
    return classes, samples


class ImageFiles:
    """The images under ``root``: ``(loader(path), class index)`` per file, in torchvision ``ImageFolder`` order.

    A map-style dataset (``__len__``, ``__getitem__``), not a subclass of torch's ``Dataset``, so that
    listing a folder imports no torch.

    With class folders (``root/<class>/<image>``, no image directly in ``root``) the classes are the
    sorted folder names and each folder is walked recursively; otherwise every image under ``root``
    belongs to one class (index 0). ``root`` and ``samples`` (``[(path, class index)]``) are the
    attributes :func:`qualoader.data.identify_dataset` reads a folder's file manifest from.

    Args:
        root: the folder.
        transform: applied to each loaded image (e.g. :class:`Resize`).
        loader: reads one file (e.g. :func:`qualoader.decoding.load_image`, an image :math:`(C, H, W)`).
        listing: ``image_samples(root)`` made earlier (the head start lists the folder before torch is
            imported; one listing serves both), else the folder is listed now.

    Raises:
        FileNotFoundError: no image file under ``root``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[Any], Any] | None = None,
        *,
        loader: Callable[[str], Any],
        listing: tuple[list[str], list[tuple[str, int]]] | None = None,
    ) -> None:
        self.root = os.fspath(root)
        self.classes, self.samples = listing if listing is not None else image_samples(self.root)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.targets = [index for _, index in self.samples]
        self.transform = transform
        self.loader = loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        image = self.loader(path)
        return (self.transform(image) if self.transform is not None else image), target


class Resize:
    """Resize an image :math:`(C, H, W)` to ``size x size`` as torchvision's ``Resize`` does a tensor.

    Bilinear with antialiasing, ``align_corners=False``; a ``uint8`` image is resized in float and
    rounded back, so the pixels equal torchvision's (tested) and earlier stores keep their meaning.
    A picklable class, not a closure, for DataLoader workers.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Tensor) -> Tensor:
        import torch
        import torch.nn.functional as F

        batch = image.unsqueeze(0).float()
        resized = F.interpolate(batch, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        if image.dtype == torch.uint8:
            return resized.round_().clamp_(0, 255).to(torch.uint8)[0]
        return resized.to(image.dtype)[0]
