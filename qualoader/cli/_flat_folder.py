"""A flat folder of images as a torchvision ``ImageFolder`` (imported only by the commands that read folders: it imports torchvision)."""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets import ImageFolder

__all__ = ["FlatImageFolder", "has_class_folders"]


def has_class_folders(root: Path) -> bool:
    """Whether ``root`` is laid out as ``root/<class>/<image>``: sub-folders and no image directly in it."""
    from qualoader.report.sources import IMAGE_EXTENSIONS

    entries = list(root.iterdir())
    flat_images = any(entry.is_file() and entry.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS for entry in entries)
    return not flat_images and any(entry.is_dir() for entry in entries)


class FlatImageFolder(ImageFolder):
    """Every image under ``root`` as one class (target 0), in torchvision's order, with its file manifest (``samples``).

    ``find_classes`` names the root itself: ``os.path.join(root, "")`` is the root, which
    torchvision then walks like a class folder.
    """

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return [""], {"": 0}
