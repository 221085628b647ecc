"""Where the images of a report come from: an image folder, Fashion-MNIST, or WebDataset shards.

A source is a list of :class:`Sample` records. Each sample can decode its image on demand
(:meth:`Sample.decode`), so a report streams over a dataset and only keeps scores in memory;
the few example thumbnails are decoded again at the end. Shard samples also carry the scores of
their ``quality.json`` member when the shards were tagged (``qualoader tag``).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from qualoader._validation import check_positive_int, check_type
from qualoader.decoding import check_scorable, decode_image  # the one decoder, re-exported for the report API
from qualoader.webdataset.reading import open_shard, split_member_name
from qualoader.webdataset.tag_format import TAG_MEMBER
from qualoader.webdataset.tag_format import tag_scores as parse_quality_tags  # the tag format's lenient reader, re-exported

__all__ = [
    "IMAGE_EXTENSIONS",
    "Sample",
    "Source",
    "decode_image",
    "load_source",
    "parse_quality_tags",
]

IMAGE_EXTENSIONS = frozenset({"bmp", "gif", "jpeg", "jpg", "pgm", "png", "ppm", "tif", "tiff", "webp"})
_FASHION_PREFIX = "fashion-mnist:"


def _printable(text: str) -> str:
    """``text`` with undecodable bytes of a file name (surrogate escapes) shown as U+FFFD."""
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that no file name decoding makes
        return text.encode("utf-8", "replace").decode("utf-8")


@dataclass
class Sample:
    """One image of a source: its key, its shard (``None`` outside shards), tags, and how to decode it."""

    key: str
    shard: str | None
    locator: Any
    tags: dict[str, float] = field(default_factory=dict)
    label: str | None = None
    image: Tensor | None = None  # (C, H, W) uint8, kept only for in-memory sources

    def __post_init__(self) -> None:
        # Shown in the page and the JSON: a file name that is not UTF-8 (kept by Python as lone surrogates)
        # would make writing them fail, so it is shown with U+FFFD; the locator keeps the real name.
        self.key = _printable(self.key)
        self.shard = None if self.shard is None else _printable(self.shard)
        self.label = None if self.label is None else _printable(self.label)

    def decode(self, min_size: int = 1) -> Tensor:
        """The image :math:`(C, H, W)`: ``uint8``, or ``float32`` in [0, 1] for 16-bit sources (see :mod:`qualoader.decoding`).

        Raises:
            ImageDecodeError: (a ``ValueError``) not an image, or one that fails
                :func:`~qualoader.decoding.check_scorable` (``min_size``: the metrics' smallest input).
        """
        if self.image is not None:
            return check_scorable(self.image, self.key, min_size=min_size)
        if isinstance(self.locator, Path):
            return decode_image(self.locator.read_bytes(), min_size=min_size)
        shard, member = self.locator
        # Nothing is held open between decodes, at the cost of re-opening the shard and re-reading its
        # headers on every call (extractfile by name scans the member list).
        with tarfile.open(shard) as archive:
            handle = archive.extractfile(member)
            if handle is None:
                raise ValueError(f"member should be a regular file, but got member={member!r} in {shard}")
            return decode_image(handle.read(), min_size=min_size)


@dataclass
class Source:
    """The samples of a report and a description of where they come from.

    Attributes:
        kind: ``"folder"``, ``"fashion-mnist"`` or ``"shards"``.
        description: human-readable origin (paths or dataset name).
        samples: the (at most ``max_images``) samples to report on.
        total: how many samples the source has in all.
        problems: unreadable members or files that were skipped, with the reason.
    """

    kind: str
    description: str
    samples: list[Sample]
    total: int
    problems: list[str] = field(default_factory=list)


def _fashion_mnist(spec: str, max_images: int) -> Source:
    from qualoader.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist

    split = spec[len(_FASHION_PREFIX) :]
    images, labels = load_fashion_mnist(split)
    count = min(max_images, images.shape[0])
    samples = [
        Sample(key=f"{split}/{index:05d}", shard=None, locator=index, label=FASHION_MNIST_CLASSES[int(labels[index])], image=images[index])
        for index in range(count)
    ]
    return Source("fashion-mnist", f"Fashion-MNIST {split} split", samples, images.shape[0])


def _folder(root: Path, max_images: int) -> Source:
    files = sorted(
        # Sorted: rglob follows directory order, which differs between file systems, and max_images must
        # pick the same files everywhere.
        path for path in root.rglob("*") if path.is_file() and path.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS
    )
    if not files:
        raise ValueError(
            f"source should be a folder with images ({', '.join(sorted(IMAGE_EXTENSIONS))}), but got source={str(root)!r} with none"
        )
    samples = []
    for path in files[:max_images]:
        relative = path.relative_to(root)
        # ImageFolder's convention: the first sub-folder is the class; files at the top have none.
        label = relative.parts[0] if len(relative.parts) > 1 else None
        samples.append(Sample(key=str(relative.with_suffix("")), shard=None, locator=path, label=label))
    return Source("folder", str(root), samples, len(files))


def _read_shard(shard: Path, archive: tarfile.TarFile, samples: list[Sample], problems: list[str], max_images: int) -> int:
    """Append the samples of one open shard (up to ``max_images`` in all); return its image-sample count."""
    grouped: dict[str, dict[str, tarfile.TarInfo]] = {}
    last: tarfile.TarInfo | None = None
    try:
        for member in archive:
            if member.isfile():
                key, extension = split_member_name(member.name)  # the tag format's rule
                # lower case: the report matches image extensions (".PNG" is a PNG too)
                grouped.setdefault(key, {})[extension.lower()] = last = member
    except (tarfile.TarError, OSError) as error:
        if last is not None:  # the sample in progress may lack members: dropped, as the strict reader drops it
            grouped.pop(split_member_name(last.name)[0], None)
        # Recorded, not raised: the samples read before the damage are still worth a report.
        problems.append(f"{shard.name}: truncated or corrupt shard after {len(grouped)} samples ({error})")
    total = 0
    for key, members in grouped.items():
        # Last part of a multi-dot extension ("seg.png"), which says what the bytes are.
        image_extension = next((ext for ext in members if ext.rpartition(".")[2] in IMAGE_EXTENSIONS), None)
        if image_extension is None:
            problems.append(f"{shard.name}/{key}: no image member (members: {', '.join(sorted(members))})")
            continue
        # Counted past max_images too, so the report can say "n of total".
        total += 1
        if len(samples) >= max_images:
            continue
        tags: dict[str, float] = {}
        if TAG_MEMBER in members:
            handle = archive.extractfile(members[TAG_MEMBER])
            try:
                tags = parse_quality_tags(handle.read() if handle else b"")
            except ValueError as error:
                problems.append(f"{shard.name}/{key}: quality.json ignored ({error})")
        label = None
        for extension in ("cls", "label", "class"):
            if extension in members and (handle := archive.extractfile(members[extension])) is not None:
                label = handle.read().decode(errors="replace").strip()
                break
        samples.append(Sample(key=key, shard=shard.name, locator=(shard, members[image_extension].name), tags=tags, label=label))
    return total


def _shards(paths: Sequence[Path], max_images: int) -> Source:
    samples: list[Sample] = []
    problems: list[str] = []
    total = 0
    for shard in paths:
        try:
            # The strict reader: a truncated shard is a listed problem, never a shorter shard read quietly.
            with open_shard(shard) as archive:
                total += _read_shard(shard, archive, samples, problems, max_images)
        except (tarfile.TarError, OSError) as error:
            problems.append(f"{shard.name}: unreadable shard ({error})")
    if not samples:
        raise ValueError(
            f"source should be shards with image samples, but got {len(paths)} shard(s) without any: {'; '.join(problems[:3])}"
        )
    return Source("shards", ", ".join(path.name for path in paths), samples, total, problems)


def load_source(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], max_images: int = 5000) -> Source:
    """Open what a report is about.

    Args:
        source: ``"fashion-mnist:test"`` / ``"fashion-mnist:train"``; a folder of images (flat or
            ``ImageFolder``-style class sub-folders, searched recursively); one or more WebDataset
            ``.tar`` shards; or a folder holding ``.tar`` shards.
        max_images: report on at most this many images (the first ones, in sorted order).

    Returns:
        A :class:`Source`.

    Raises:
        TypeError: ``source`` is not a string, path or sequence of them.
        FileNotFoundError: a path does not exist.
        ValueError: no images found, or a Fashion-MNIST split other than train/test.
    """
    check_positive_int(max_images, "max_images")
    items = [source] if isinstance(source, (str, os.PathLike)) else source
    check_type(items, "source", (list, tuple), "a path, 'fashion-mnist:<split>' or a sequence of shard paths")
    if not items:
        raise ValueError("source should name at least one dataset or shard, but got source=[]")
    for item in items:
        check_type(item, "source[i]", (str, os.PathLike), "a path or 'fashion-mnist:<split>'")
    first = str(items[0])
    if len(items) == 1 and first.startswith(_FASHION_PREFIX):
        split = first[len(_FASHION_PREFIX) :]
        if split not in ("train", "test"):
            raise ValueError(f"source should be 'fashion-mnist:train' or 'fashion-mnist:test', but got source={first!r}")
        return _fashion_mnist(first, max_images)
    paths = [Path(item) for item in items]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"source should be an existing folder or shard, but got source={str(path)!r}, which does not exist")
    if len(paths) == 1 and paths[0].is_dir():
        shards = sorted(paths[0].glob("*.tar"))
        return _shards(shards, max_images) if shards else _folder(paths[0], max_images)
    not_tar = [str(path) for path in paths if path.suffix != ".tar"]
    if not_tar:
        raise ValueError(f"source should be a single folder or .tar shards, but got source with non-shard paths {not_tar[:3]}")
    # Sorted like a folder's shards, so max_images picks the same images whatever order the paths came in.
    return _shards(sorted(paths), max_images)
