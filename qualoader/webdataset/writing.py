"""Writing shards: image tensors as webdataset shards, and the staged shard sets of ``qualoader tag``.

* :func:`write_image_shards` writes image tensors (PNG members) with webdataset's ``ShardWriter``,
  each shard under a temporary name until it is complete.
* :class:`StagedShardSet` writes a set of tar shards and their sidecar indexes so that no reader
  ever sees a partial file or a partial set under a final name: every file is written into a
  staging folder, fsync-ed, and the set is published in one step only once it is complete (the
  output folder and its staging folder are exchanged; see :mod:`qualoader.webdataset.publishing`).
  The output folder must be new or empty; ``overwrite=True`` accepts a folder of shards and
  sidecars and replaces it as a whole.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch
import webdataset as wds
from torch import Tensor

from qualoader._validation import (
    check_choice,
    check_images,
    check_positive_int,
    check_type,
)
from qualoader.webdataset.publishing import (
    STAGING_PREFIX,
    interrupts_deferred,
    lock_folder,
    publish_folder,
    remove_leftovers,
    staging_folder,
)
from qualoader.webdataset.tag_format import SIDECAR_SUFFIX, SidecarIndex, SkippedSample

__all__ = ["STAGING_PREFIX", "StagedShardSet", "encode_image", "write_image_shards"]

# pax headers of the input that describe its own sparse layout; the copy is written dense
_SPARSE_PAX = "GNU.sparse."
_DERIVED_PAX = frozenset({"path", "linkpath", "size", "mtime", "uid", "gid", "uname", "gname"})

_FORMATS = frozenset({"png", "jpg", "webp"})
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


def encode_image(image: Tensor, image_format: str = "png") -> bytes:
    """Encode one image :math:`(C, H, W)` (``uint8``, or float in [0, 1]), ``C`` in {1, 3}.

    Returns:
        The encoded file bytes (PNG is lossless: decoding gives the ``uint8`` pixels back).
    """
    from PIL import Image

    check_choice(image_format, "image_format", _FORMATS)
    check_type(image, "image", Tensor, "a torch.Tensor of shape (C, H, W)")
    pixels = check_images(image.unsqueeze(0) if image.ndim == 3 else image, "image")[0]
    array = (pixels.detach().cpu().double() * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    # PIL refuses an (H, W, 1) array: grey images go in as (H, W).
    Image.fromarray(np.ascontiguousarray(array[:, :, 0] if array.shape[2] == 1 else array)).save(buffer, format=_PIL_FORMAT[image_format])
    return buffer.getvalue()


def write_image_shards(
    images: Tensor | Sequence[Tensor],
    pattern: str | os.PathLike[str],
    *,
    labels: Tensor | Sequence[int] | None = None,
    keys: Sequence[str] | None = None,
    maxcount: int = 1000,
    image_format: str = "png",
) -> list[Path]:
    """Write images (and labels) as webdataset shards: members ``<key>.png`` (and ``<key>.cls``).

    Args:
        images: :math:`(N, C, H, W)` tensor, or a sequence of :math:`(C, H, W)` tensors of any
            sizes; ``uint8`` or float in [0, 1], ``C`` in {1, 3}.
        pattern: ``ShardWriter`` pattern with one ``%d`` field, e.g. ``"out/data-%06d.tar"``.
        labels: one int per image (written as ASCII ``cls`` members), or ``None``.
        keys: one sample key per image (default ``"%08d" % i``); no dots.
        maxcount: samples per shard.
        image_format: ``"png"`` (lossless), ``"jpg"`` or ``"webp"``.

    Returns:
        The written shard paths, in order.

    Example:
        >>> from qualoader.datasets import load_fashion_mnist
        >>> images, labels = load_fashion_mnist("test")
        >>> write_image_shards(images[:100], "fm-%06d.tar", labels=labels[:100], maxcount=50)
        [PosixPath('fm-000000.tar'), PosixPath('fm-000001.tar')]
    """
    pattern = os.fspath(pattern)
    check_type(pattern, "pattern", str, "a ShardWriter pattern (str)")
    try:
        # Probed here for an error that names the argument; ShardWriter's own `pattern % n` raises a bare TypeError.
        pattern % 0
    except TypeError as error:
        raise ValueError(f"pattern should contain one %d field, but got pattern={pattern!r}") from error
    check_positive_int(maxcount, "maxcount")
    check_choice(image_format, "image_format", _FORMATS)
    count = len(images)
    if labels is not None and len(labels) != count:
        raise ValueError(f"labels should have one entry per image ({count}), but got len(labels)={len(labels)}")
    # No dots: readers take the key up to the first dot, so "a.b" would be read as key "a".
    if keys is not None and (len(keys) != count or len(set(keys)) != count or any("." in k or not k for k in keys)):
        raise ValueError(f"keys should be {count} distinct non-empty keys without '.', but got keys={list(keys)[:5]!r}...")
    files = _AtomicFiles()
    writer = wds.ShardWriter(pattern, maxcount=maxcount, verbose=0, opener=files.open, post=files.publish)
    try:
        for i in range(count):
            sample = {"__key__": keys[i] if keys is not None else f"{i:08d}", image_format: encode_image(images[i], image_format)}
            if labels is not None:
                sample["cls"] = str(int(labels[i])).encode("ascii")
            writer.write(sample)
    except BaseException:
        writer.post = None  # close the tar stream of the shard in progress without publishing it
        writer.close()
        files.discard()
        raise
    writer.close()
    return files.published


class _AtomicFiles:
    """``ShardWriter`` opener and post hook: each shard goes to a temporary name beside its final
    one and is renamed (after fsync) only when the writer closes it complete."""

    def __init__(self) -> None:
        self.open_files: dict[str, tuple[io.BufferedWriter, str]] = {}
        self.published: list[Path] = []

    def open(self, name: str) -> io.BufferedWriter:
        final = Path(name)
        # Beside the final name (same file system, so the rename is atomic), hidden and ending in .tmp so no
        # "*.tar" glob picks up a partial shard.
        handle, temp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        file = os.fdopen(handle, "wb")
        self.open_files[name] = (file, temp)
        return file

    def publish(self, name: str) -> None:
        file, temp = self.open_files.pop(name)
        file.flush()
        os.fsync(file.fileno())
        file.close()
        os.replace(temp, name)
        self.published.append(Path(name))

    def discard(self) -> None:
        for file, temp in self.open_files.values():
            file.close()
            Path(temp).unlink(missing_ok=True)
        self.open_files.clear()


def _copy_member(info: tarfile.TarInfo, size: int) -> tarfile.TarInfo:
    """A fresh header with the member's name, type, link, mode, owner and time, custom pax records, and ``size``."""
    copy = tarfile.TarInfo(info.name)
    for name in ("mode", "uid", "gid", "mtime", "linkname", "uname", "gname", "devmajor", "devminor"):
        setattr(copy, name, getattr(info, name))
    copy.size = size
    # GNU sparse members are read back dense, so they are written as plain files
    copy.type = tarfile.REGTYPE if info.isreg() else info.type
    # pax records tarfile derives from the fields are dropped: tarfile gives an existing record
    # priority, so a stale "size" would make the copy unreadable
    copy.pax_headers = {k: v for k, v in info.pax_headers.items() if k not in _DERIVED_PAX and not k.startswith(_SPARSE_PAX)}
    return copy


class StagedShardSet:
    """A set of tar shards and sidecar indexes written to a staging folder, then published at once.

    Use it as a context manager: leaving the block normally publishes the set (:meth:`finish`),
    an exception (``KeyboardInterrupt`` and ``SystemExit`` included) removes the staging folder
    and leaves the output folder as it was.

    Args:
        out: output folder (created when missing).
        name_pattern: shard file names with one ``%d`` field, e.g. ``"tagged-%06d.tar"``.
        maxcount: most samples per shard.
        maxsize: most member bytes per shard (a new shard starts once a shard reaches it).
        overwrite: accept a folder holding a previous set (only ``*.tar`` files and their
            ``*.tar.quality.json`` sidecars) and replace it once the new set is complete.
        new_index: makes the (empty) sidecar index of a shard from its file name.

    Raises:
        ValueError: ``out`` is not a folder, is in use by another writer, is not empty (without
            ``overwrite``) or holds other things than shards and sidecars (with ``overwrite``).
    """

    def __init__(
        self,
        out: Path,
        name_pattern: str,
        *,
        maxcount: int,
        maxsize: int,
        overwrite: bool,
        new_index: Callable[[str], SidecarIndex],
    ) -> None:
        self.out = out
        self.name_pattern = name_pattern
        self.maxcount = maxcount
        self.maxsize = maxsize
        self.overwrite = overwrite
        self.new_index = new_index
        self.staged: list[str] = []  # shard file names, in order
        self.published: list[tuple[Path, Path]] = []  # (shard, sidecar) final paths, once finished
        self.index: SidecarIndex | None = None
        self._pending: list[SkippedSample] = []
        self._file: io.BufferedWriter | None = None
        self._tar: tarfile.TarFile | None = None
        self._names: set[str] = set()
        self._count = self._size = 0
        self._locks: list[int | None] = []
        self._created = False
        self._real = out
        self._beside = False
        self._old: list[Path] = []
        self.staging: Path | None = None

    def __enter__(self) -> Self:
        try:
            self._open()
        except BaseException:
            self.abort()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: object) -> None:
        if kind is None:
            if self.staging is not None:
                self.finish()
        else:
            self.abort()

    def _open(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"out_dir should be a folder, but got out_dir={str(self.out)!r}, which is a file")
        self._created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        # The real folder is what gets exchanged: an out_dir that is a symlink stays a symlink to it.
        self._real = self.out.resolve()
        self._locks.append(lock_folder(self._real))
        remove_leftovers(self._real)  # left by a killed run: we hold the lock, so no live writer owns them
        self._old = sorted(self._real.iterdir())
        names = [entry.name for entry in self._old]
        if self._old and not self.overwrite:
            raise ValueError(
                f"out_dir should be a new or empty folder (use --overwrite / overwrite=True to replace a previous output), "
                f"but got out_dir={str(self.out)!r} holding {len(names)} entries: {names[:5]}"
            )
        foreign = [
            e.name
            for e in self._old
            # Anything but shards and sidecars is refused even with overwrite: a mistyped out_dir must not be
            # emptied of someone's other files.
            if e.is_symlink() or not e.is_file() or not (e.name.endswith(".tar") or e.name.endswith(".tar" + SIDECAR_SUFFIX))
        ]
        if foreign:
            raise ValueError(
                f"out_dir should hold only shards (*.tar) and sidecars (*.tar{SIDECAR_SUFFIX}) to be overwritten, "
                f"but got out_dir={str(self.out)!r} also holding {foreign[:5]}"
            )
        self.staging, self._beside = staging_folder(self._real)
        if self._old and not self._beside:  # the all-or-nothing guarantee is weaker: say so
            warnings.warn(
                f"out_dir {str(self.out)!r} cannot be swapped in one step (a mount point, a parent folder without write access, "
                "or no renameat2): the old set is replaced file by file, so a kill during publishing can leave old and new shards mixed",
                RuntimeWarning,
                stacklevel=3,
            )
        if self._beside:  # it becomes the output folder at publishing: a second writer must find it locked too
            self._locks.append(lock_folder(self.staging))

    def _unlock(self) -> None:
        for handle in self._locks:
            if handle is not None:
                os.close(handle)  # closing the descriptor releases the flock
        self._locks = []

    # -- writing -----------------------------------------------------------------------------

    def needs_new_shard(self) -> bool:
        """Whether the next sample starts a new shard (none open, or ``maxcount``/``maxsize`` reached)."""
        return self._tar is None or self._count >= self.maxcount or self._size >= self.maxsize

    def names_before_next(self) -> set[str]:
        """Member names the shard receiving the next sample already holds (hard links may point at them)."""
        return set() if self.needs_new_shard() else self._names

    def write_sample(self, members: Sequence[tuple[tarfile.TarInfo, bytes]]) -> str:
        """Append one sample's members (headers copied, bytes unchanged); returns the shard file name."""
        tar = self._next_shard() if self._tar is None or self.needs_new_shard() else self._tar
        for info, data in members:
            regular = info.isreg()
            tar.addfile(_copy_member(info, len(data) if regular else 0), io.BytesIO(data) if regular else None)
            self._names.add(info.name)
            self._size += len(data)
        self._count += 1
        return self.staged[-1]

    def skip(self, entry: SkippedSample) -> None:
        """List a skipped sample in the sidecar of the current shard (or the next one opened)."""
        if self.index is None:
            self._pending.append(entry)
        else:
            self.index.skip(entry)

    def _staging_folder(self) -> Path:
        if self.staging is None:
            raise RuntimeError("the shard set should be open (used as a context manager), but got one that is closed")
        return self.staging

    def _next_shard(self) -> tarfile.TarFile:
        self._close_shard()
        name = self.name_pattern % len(self.staged)
        self._file = open(self._staging_folder() / name, "wb")  # noqa: SIM115 - closed in _close_shard
        self.staged.append(name)
        # PAX: member names of any length or encoding, and the input's own pax records, survive the copy.
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - closed in _close_shard
        self._names, self._count, self._size = set(), 0, 0
        self.index = self.new_index(name)
        for entry in self._pending:
            self.index.skip(entry)
        self._pending = []
        return self._tar

    def _close_shard(self) -> None:
        if self._tar is None or self._file is None or self.index is None or self.staging is None:
            return
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._tar = self._file = None
        sidecar = self.staging / (self.staged[-1] + SIDECAR_SUFFIX)
        with open(sidecar, "wb") as file:
            file.write(self.index.to_json().encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())

    # -- publishing --------------------------------------------------------------------------

    def finish(self) -> list[tuple[Path, Path]]:
        """Close the last shard and publish the set; returns ``(shard, sidecar)`` final paths."""
        if self._pending and self._tar is None:  # nothing was written: one empty shard lists the skips
            self._next_shard()
        self._close_shard()
        staging = self._staging_folder()
        names = [name for shard in self.staged for name in (shard, shard + SIDECAR_SUFFIX)]
        with interrupts_deferred():
            publish_folder(self._real, staging, self._beside, names)
            self.published.extend((self.out / shard, self.out / (shard + SIDECAR_SUFFIX)) for shard in self.staged)
            self.staging = None
            self._unlock()
        return self.published

    def abort(self) -> None:
        """Drop everything staged; the output folder keeps what it held (and goes if it was created empty)."""
        with interrupts_deferred():
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._tar = self._file = None
            if self.staging is not None:
                shutil.rmtree(self.staging, ignore_errors=True)
                self.staging = None
            if self._created:
                with contextlib.suppress(OSError):
                    self.out.rmdir()  # only when still empty
            self._unlock()
