"""A head start for ``qualoader precompute DIR``: decode the folder's first images while torch is imported.

A command that scores spends about a second importing torch before any image is read. On a first
run over a folder (no store yet), ``precompute`` forks one process before that import; the process
reads, hashes and decodes the folder's images in order into shared memory, with the same functions
as the scoring pass (:func:`qualoader._file_versions.read_file`, :func:`qualoader.decoding.decode_array`),
so each image comes with the version (:class:`~qualoader._file_versions.FileDigest`) of the very
bytes it was decoded from. When the command is ready to score, it stops the process and scores what
it decoded; the images it did not reach, or could not decode, are read by the usual pass, which
reports them as it always does.

Started only where it cannot cost anything: on Linux (``fork`` of a process that has not loaded
torch, so no thread or lock is copied half-way), with at least two CPU cores, and never once torch
is imported, nor when ``QUALOADER_HEAD_START=0``. The shared memory is an anonymous mapping of at most
``capacity`` bytes (pages are allocated as they are written); the process stops when it is full.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import mmap

    import numpy as np

    from qualoader._file_versions import FileDigest

__all__ = ["DEFAULT_CAPACITY", "DecodedFile", "HeadStart", "can_start"]

#: Bytes of decoded pixels the head start may hold: about 1700 RGB images of 224 px.
DEFAULT_CAPACITY = 256 << 20
# One record per decoded image, sent once its pixels are in the shared memory: index, offset,
# dtype code, channels, height, width, digest, size, mtime_ns.
_RECORD = struct.Struct("<QQBIII16sqq")
_DTYPES = ("uint8", "float32")
# Each image starts on a cache line: float32 pixels are aligned, and no two images share a line.
_ALIGN = 64
#: Seconds a stopped process may take to finish its image before it is killed.
_STOP_SECONDS = 10.0


@dataclass(frozen=True)
class DecodedFile:
    """One decoded image: its position in the path list, its pixels :math:`(C, H, W)` and the version of the bytes decoded."""

    index: int
    pixels: np.ndarray
    version: FileDigest


def can_start() -> bool:
    """Whether a head start can help here: Linux, two cores or more, torch not imported yet, and not turned off.

    ``QUALOADER_HEAD_START=0`` in the environment turns it off (to compare timings, or to keep the memory).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = os.environ.get("QUALOADER_HEAD_START", "1") != "0"
    return wanted and sys.platform.startswith("linux") and cores >= 2 and "torch" not in sys.modules


class HeadStart:
    """A forked process decoding ``paths`` in order into shared memory until :meth:`collect` stops it.

    Use as a context manager (or call :meth:`close`): the process is stopped and reaped on every
    path out, and it stops by itself when this process ends.

    Args:
        paths: the image files, in the order of the dataset's indices.
        capacity: most bytes of decoded pixels to hold.
    """

    def __init__(self, paths: Sequence[str], capacity: int = DEFAULT_CAPACITY) -> None:
        import mmap

        self.paths = list(paths)
        self._memory = mmap.mmap(-1, capacity)  # anonymous and shared: the child's writes are seen here
        stop_read, self._stop = os.pipe()
        self._records, records_write = os.pipe()
        _widen(records_write)
        self._pid: int | None = os.fork()
        if self._pid == 0:  # pragma: no cover - runs in the child, which leaves with os._exit
            os.close(self._stop)
            os.close(self._records)
            _decode_into(self.paths, self._memory, stop_read, records_write)
        os.close(stop_read)
        os.close(records_write)
        self._decoded: list[DecodedFile] | None = None

    def collect(self, *, wait: bool = False) -> list[DecodedFile]:
        """Stop the process and return the images it decoded, in path order (later calls return the same list).

        Args:
            wait: let the process decode every path first (or fill its memory) instead of stopping it now.
        """
        if self._decoded is None and self._pid is None:
            self._decoded = []  # closed before anything was collected
        if self._decoded is None:
            import numpy as np

            from qualoader._file_versions import FileDigest

            if not wait:
                self._stop_child()
            data = self._read_records(None if wait else _STOP_SECONDS)
            self._reap()
            decoded = []
            for start in range(0, len(data) - len(data) % _RECORD.size, _RECORD.size):
                index, offset, dtype, channels, height, width, digest, size, mtime_ns = _RECORD.unpack_from(data, start)
                count = channels * height * width
                pixels = np.frombuffer(self._memory, dtype=_DTYPES[dtype], count=count, offset=offset).reshape(channels, height, width)
                decoded.append(DecodedFile(index, pixels, FileDigest(digest, size, mtime_ns)))
            self._decoded = decoded
        return self._decoded

    def close(self) -> None:
        """Stop and reap the process (the decoded images stay readable)."""
        self._stop_child()
        if self._pid is not None:
            self._read_records(_STOP_SECONDS)  # drained first: a child blocked on a full pipe could not see the stop
            self._reap()

    def _read_records(self, timeout: float | None) -> bytes:
        """Every record up to the end of the pipe (the child's exit), then stop it for good.

        A child still running ``timeout`` seconds after the stop (stuck reading a file on a hung
        mount, say) is killed: the records it sent are kept.
        """
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        chunks = []
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._records], [], [], wait)[0]:
                assert self._pid is not None
                os.kill(self._pid, signal.SIGKILL)  # its pipe ends with it: the next reads reach the end
                deadline = None
                continue
            chunk = os.read(self._records, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        self._stop_child()
        return b"".join(chunks)

    def _stop_child(self) -> None:
        if self._stop >= 0:
            os.close(self._stop)  # end of file on the child's stop pipe
            self._stop = -1

    def _reap(self) -> None:
        if self._pid is not None:
            os.waitpid(self._pid, 0)
            self._pid = None
            os.close(self._records)

    def __enter__(self) -> HeadStart:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


def _widen(descriptor: int) -> None:
    """Let the records pipe hold a record for every image that fits ``capacity`` (64 KiB, Linux's default, holds 900).

    The child blocks on a full pipe until :meth:`HeadStart.collect` reads it, which costs nothing but
    the images it could have decoded meanwhile.
    """
    import fcntl

    try:
        fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (OSError, AttributeError):  # above /proc/sys/fs/pipe-max-size, or not Linux: the default size
        pass


def _decode_into(paths: list[str], memory: mmap.mmap, stop: int, records: int) -> None:  # pragma: no cover - the child
    """The child's whole life: decode until stopped, out of room or out of paths, then ``os._exit``."""
    # Ctrl-C is the parent's to handle (it stops this process by closing the stop pipe)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import io

        import numpy as np
        from PIL import Image

        from qualoader._file_versions import read_file
        from qualoader.decoding import decode_array

        offset = 0
        capacity = len(memory)
        for index, path in enumerate(paths):
            if select.select([stop], [], [], 0)[0]:  # readable: the parent closed it (or ended)
                break
            try:
                data, version = read_file(path)
                with Image.open(io.BytesIO(data)) as header:  # the size, before a pixel is decoded
                    if offset + header.width * header.height > capacity:
                        break  # even one grey byte per pixel would not fit
                pixels = decode_array(data)
            except (OSError, ValueError, MemoryError, SyntaxError, Image.DecompressionBombError):
                continue  # the scoring pass reads it again and names the problem
            if pixels.dtype.name not in _DTYPES or offset + pixels.nbytes > capacity:
                break
            np.frombuffer(memory, dtype=pixels.dtype, count=pixels.size, offset=offset)[:] = pixels.reshape(-1)
            channels, height, width = pixels.shape
            record = _RECORD.pack(index, offset, _DTYPES.index(pixels.dtype.name), channels, height, width,
                                  version.digest, version.size, version.mtime_ns)
            os.write(records, record)  # after the pixels: a record the parent reads names finished pixels
            offset += -(-pixels.nbytes // _ALIGN) * _ALIGN
    except BaseException:  # noqa: BLE001 - whatever happens here, the parent reads the rest itself
        pass
    finally:
        os._exit(0)  # never the parent's atexit handlers or buffered output
