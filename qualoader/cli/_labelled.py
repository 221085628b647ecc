"""Labelled images for ``qualoader calibrate``: a SOURCE read into one tensor, labels mapped to a network's label set.

* ``fashion-mnist[:split]``: its class names are looked up in the network's labels;
* an ImageFolder ``root/<class>/<image>``: each folder name is a label name, or a class index;
* webdataset shards: the member ``<key>.<label_key>`` (``cls`` by default) holds a label name or
  a class index as text.

A label that names no output of the network is a :class:`~qualoader.cli._errors.UserError` that
lists the offending labels and the network's; nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader.cli._errors import UserError
from qualoader.cli._sources import Source

__all__ = ["LabelledImages", "load_labelled", "source_class_names"]

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"})
_SHARD_IMAGE_KEYS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "ppm", "pgm")


@dataclass(frozen=True)
class LabelledImages:
    """Images :math:`(N, C, H, W)` float32 in [0, 1] at the network's input size and channels, labels :math:`(N,)` int64."""

    images: Tensor
    labels: Tensor
    description: str
    #: ``(height, width)`` of each image before it was resized (``None``: all were at the input size).
    sizes: list[tuple[int, int]] | None = None


def _class_folders(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def source_class_names(source: Source) -> tuple[str, ...] | None:
    """The class names a SOURCE itself defines (Fashion-MNIST's, an ImageFolder's folder names), else ``None``."""
    if source.kind == "fashion-mnist":
        from qualoader.datasets import FASHION_MNIST_CLASSES

        return tuple(FASHION_MNIST_CLASSES)
    if source.kind == "folder" and source.folder is not None:
        names = tuple(path.name for path in _class_folders(source.folder))
        return names or None
    return None


def _label_index(value: str, labels: Sequence[str]) -> int | None:
    """The output index a label names: a label name, else a class index written as digits."""
    if value in labels:
        return list(labels).index(value)
    if value.isdigit() and int(value) < len(labels):
        return int(value)
    return None


def _map_labels(values: Sequence[str], labels: Sequence[str], what: str) -> Tensor:
    index = {value: _label_index(value, labels) for value in sorted(set(values))}
    unknown = [value for value, found in index.items() if found is None]
    if unknown:
        shown = ", ".join(repr(value) for value in unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        network = ", ".join(labels[:12]) + (f", ... ({len(labels)} in all)" if len(labels) > 12 else "")
        raise UserError(
            f"{what} should name the network's outputs (a label name or an index below {len(labels)}), but got {shown}, "
            f"outside the network's label set: {network} (pass --labels to name the outputs)"
        )
    return torch.tensor([index[value] for value in values], dtype=torch.int64)


def _fit_input(image: Tensor, size: tuple[int, int], channels: int) -> Tensor:
    """One decoded image :math:`(C, H, W)` as float32 :math:`(channels, *size)` in [0, 1]."""
    from qualoader.profiles.domain import _to_channels  # the one grey/RGB conversion of the domain guard

    image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    image = _to_channels(image.unsqueeze(0), channels)
    if tuple(image.shape[-2:]) != tuple(size):
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
    return image[0].clamp(0.0, 1.0)


def _fit_all(images: Iterable[Tensor], size: tuple[int, int], channels: int) -> tuple[Tensor, list[tuple[int, int]]]:
    """The images fitted to the input (see :func:`_fit_input`) and their sizes before, for the profile's input domain."""
    fitted, sizes = [], []
    for image in images:
        sizes.append((int(image.shape[-2]), int(image.shape[-1])))
        fitted.append(_fit_input(image, size, channels))
    return torch.stack(fitted), sizes


def _choose(n: int, max_images: int, seed: int) -> list[int]:
    """A seeded subset of at most ``max_images`` of ``range(n)``, in order."""
    if n <= max_images:
        return list(range(n))
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_images].tolist())


def _read(decode: Callable[[Any], Tensor], source: Any, where: str) -> Tensor:
    """Decode one image; an unreadable one is a one-line :class:`UserError` naming its file (or shard and key)."""
    from qualoader.decoding import ImageDecodeError

    try:
        return decode(source)
    except (ImageDecodeError, OSError) as error:
        raise UserError(f"--data should hold readable images, but got {where}: {error}") from error


def _shard_samples(read: Callable[[str], Iterator[Any]], url: str) -> Iterator[Any]:
    """The samples of one shard; a truncated, corrupt or unreadable shard is a one-line :class:`UserError` naming it."""
    import tarfile

    try:
        for raw in read(url):
            if raw.problem is not None:
                raise UserError(f"--data should hold readable shards, but got {url!r}: {raw.problem}")
            yield raw
    except (tarfile.TarError, OSError) as error:  # CorruptShardError is a tarfile.ReadError
        raise UserError(f"--data should hold readable shards, but got {url!r}: {error}") from error


def load_labelled(
    source: Source,
    labels: Sequence[str],
    size: tuple[int, int],
    channels: int,
    *,
    split: str = "train",
    label_key: str = "cls",
    max_images: int = 1000,
    seed: int = 0,
) -> LabelledImages:
    """Read a seeded subset of ``source`` with labels as indices into ``labels`` (see the module docstring).

    Raises:
        UserError: a label outside ``labels``, an ImageFolder without class folders, a shard sample
            without an image or a ``label_key`` member, no image at all, an unreadable image or a
            truncated or corrupt shard (each named).
    """
    from qualoader.decoding import decode_image, load_image

    if source.kind == "fashion-mnist":
        from qualoader.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist

        images, targets = load_fashion_mnist(split)
        chosen = torch.tensor(_choose(images.shape[0], max_images, seed), dtype=torch.int64)
        names = [FASHION_MNIST_CLASSES[int(t)] for t in targets[chosen]]
        mapped = _map_labels(names, labels, f"the Fashion-MNIST class names of SOURCE={source.text!r}")
        batch = torch.stack([_fit_input(image, size, channels) for image in images[chosen]])
        return LabelledImages(batch, mapped, f"fashion-mnist:{split}")
    if source.kind == "folder":
        root = Path(source.folder or source.text)  # parse_source sets folder for this kind
        folders = _class_folders(root)
        files = [(path, folder.name) for folder in folders for path in sorted(folder.rglob("*")) if path.suffix.lower() in _IMAGE_SUFFIXES]
        if not files:
            raise UserError(
                f"SOURCE should be an ImageFolder (root/<class>/<image>) whose folder names are the labels, but got SOURCE={source.text!r} "
                "with no image inside a class folder"
            )
        mapped = _map_labels([name for _, name in files], labels, f"the class folders of SOURCE={source.text!r}")
        chosen = _choose(len(files), max_images, seed)
        batch, sizes = _fit_all((_read(load_image, files[i][0], str(files[i][0])) for i in chosen), size, channels)
        return LabelledImages(batch, mapped[chosen], f"imagefolder:{root}", sizes)
    from qualoader.webdataset.reading import raw_samples

    samples = []
    for url in source.shards:
        for raw in _shard_samples(raw_samples, url):
            sample = raw.as_webdataset()
            image_key = next((key for key in _SHARD_IMAGE_KEYS if key in sample), None)
            if image_key is None:
                raise UserError(
                    f"shard samples should hold an image member ({', '.join(_SHARD_IMAGE_KEYS)}), but got sample {raw.key!r} of {url!r} "
                    f"with members {sorted(k for k in sample if not k.startswith('__'))}"
                )
            if label_key not in sample:
                raise UserError(
                    f"--label-key should name a member of every shard sample, but got --label-key={label_key!r} and sample {raw.key!r} of "
                    f"{url!r} without it"
                )
            try:
                label = sample[label_key].decode("utf-8").strip()
            except UnicodeDecodeError as error:
                raise UserError(f"--label-key members should be UTF-8 text, but got sample {raw.key!r} of {url!r}: {error}") from error
            samples.append((sample[image_key], label, f"{url}: sample {raw.key!r}"))
    if not samples:
        raise UserError(f"SOURCE should hold at least one sample, but got SOURCE={source.text!r} with none")
    mapped = _map_labels([value for _, value, _ in samples], labels, f"the {label_key!r} members of SOURCE={source.text!r}")
    chosen = _choose(len(samples), max_images, seed)
    batch, sizes = _fit_all((_read(decode_image, samples[i][0], samples[i][2]) for i in chosen), size, channels)
    return LabelledImages(batch, mapped[chosen], f"webdataset:{source.text}:{label_key}", sizes)
