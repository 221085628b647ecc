"""Which version of a file was read: its size, modification time and a digest of its bytes (no torch import).

One digest for every path that reads an image file to score it: the ``precompute`` workers, the
score store's checks (:mod:`qualoader.data._provenance`) and the command line's head start
(:mod:`qualoader.cli._head_start`, which runs before torch is imported), so a file read by any of
them is recognised by the others.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["FileDigest", "file_digest", "read_file"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileDigest:
    """The version of a file that was read: BLAKE2b-128 of its size and bytes, its size and modification time (ns)."""

    digest: bytes
    size: int
    mtime_ns: int


def _hasher(size: int) -> hashlib.blake2b:
    # the size first: a file and its truncation never share a digest prefix state
    return hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)


def _open_regular(path: str | os.PathLike[str]) -> tuple[BinaryIO, os.stat_result]:
    """Open a regular file for reading, with its ``fstat``; anything else (a FIFO, a device, a folder) is an ``OSError``.

    Opened without blocking: a FIFO named like an image would otherwise wait forever for a writer.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise OSError(f"{os.fspath(path)!r} should be a regular file, but got a file of mode {stat.filemode(status.st_mode)}")
    return os.fdopen(descriptor, "rb"), status


def file_digest(path: str | os.PathLike[str]) -> FileDigest | None:
    """Hash a file's size and bytes (BLAKE2b, 16 bytes) with the size and mtime of the same open file; ``None`` when unreadable.

    Size and modification time come from ``fstat`` of the descriptor that is read, so the three
    describe one version of the file (an unreadable file is left to the decoder to name).
    """
    try:
        file, status = _open_regular(path)
        with file:
            hasher = _hasher(status.st_size)
            while chunk := file.read(_CHUNK):
                hasher.update(chunk)
    except OSError:
        return None
    return FileDigest(hasher.digest(), int(status.st_size), int(status.st_mtime_ns))


def read_file(path: str | os.PathLike[str]) -> tuple[bytes, FileDigest]:
    """A file's bytes and the :class:`FileDigest` of exactly those bytes (one read, one open file).

    Raises:
        OSError: the file cannot be read, or is not a regular file.
    """
    file, status = _open_regular(path)
    with file:
        data = file.read()
    hasher = _hasher(len(data))
    hasher.update(data)
    # the size of the bytes read, not fstat's: a file that grew or shrank while it was read is described by what was read
    return data, FileDigest(hasher.digest(), len(data), int(status.st_mtime_ns))
