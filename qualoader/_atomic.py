"""Atomic file writes: a reader never sees a half-written file under its final name.

A regular destination is written to a hidden temporary file beside it (``.<name>.XXXXXXXX.tmp``),
flushed and renamed over it. The file gets the permissions a plain ``open(path, "w")`` would give:
an existing file keeps its mode, a new one gets ``0o666`` less the process's umask (a temporary
file alone would be ``0o600``).

A destination that is not a regular file is never replaced by a rename: a FIFO, a character device
(``/dev/null``, a terminal) or a path through ``/proc`` (``/proc/self/fd/1``, ``/dev/stdout``) is
*written through*: opened for writing and streamed into, as a shell redirection would. Folders,
sockets and block devices are refused.

Temporary files left by a killed writer (kill -9, power loss) are removed by the next write to the
same destination. A writer holds an exclusive ``flock`` on its temporary file while it writes, so a
live writer's file is never taken for a stale one; a file that can be locked but is empty and
younger than :data:`STALE_AFTER_S` is also left alone (its writer may not have locked it yet).

A whole folder of outputs (a report) is built in a *staging folder* beside its destination
(:func:`staging_folder`, ``.<name>.XXXXXXXX.partial``) by the same rule: its writer locks it, and the
next staging of the same destination removes the ones no live writer holds. A staging folder is
locked before it gets that name (it is made as ``.<name>.XXXXXXXX.birth``, locked, then renamed), so
an unlocked one is always a dead writer's, empty or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "STALE_AFTER_S",
    "atomic_writer",
    "current_umask",
    "fsync_folder",
    "new_file_mode",
    "staging_folder",
    "write_bytes_atomic",
    "write_json_atomic",
    "writes_through",
]

#: An empty, unlocked temporary file younger than this may belong to a writer between creating and locking it.
STALE_AFTER_S = 60.0

_SUFFIX = ".tmp"
_STAGING_SUFFIX = ".partial"  # a staging folder, locked from its first moment under this name
_BIRTH_SUFFIX = ".birth"  # a staging folder between mkdtemp and its lock (an instant, unless its writer was killed there)
_RANDOM_CHARS = 8  # tempfile.mkstemp's random part, drawn from:
_RANDOM_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make the renames in ``folder`` durable: a crash right after ``os.replace`` must not undo them."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    except OSError:  # some file systems refuse fsync on a folder; the renames still happened
        pass
    finally:
        os.close(handle)


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:  # Linux reports it without changing it (os.umask can only be read by setting it, which races with threads)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: str | os.PathLike[str]) -> int:
    """The permission bits ``open(path, "w")`` would leave: the existing regular file's, else ``0o666 & ~umask``."""
    try:
        info = os.stat(path)
    except OSError:
        return 0o666 & ~current_umask()
    return stat.S_IMODE(info.st_mode) if stat.S_ISREG(info.st_mode) else 0o666 & ~current_umask()


def _through_proc(path: Path) -> bool:
    """Whether ``path`` is, or leads by symbolic links to, a file under ``/proc`` (``/dev/stdout``, ``/proc/self/fd/1``)."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        parent = os.path.realpath(os.path.dirname(current))
        current = os.path.join(parent, os.path.basename(current))
        if current == "/proc" or current.startswith("/proc/"):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.join(parent, os.readlink(current))
    return False


def writes_through(path: str | os.PathLike[str]) -> bool:
    """Whether a write to ``path`` streams into the file in place instead of renaming a new file over it.

    True for a FIFO, a character device and a path through ``/proc``; False for a regular file or a
    missing one.

    Raises:
        IsADirectoryError: ``path`` is a folder.
        ValueError: ``path`` is a socket or a block device.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"path should be a file, but got path={str(path)!r}, which is a folder")
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return True
    if not stat.S_ISREG(mode):
        raise ValueError(
            f"path should be a regular file, a FIFO or a character device, but got path={str(path)!r}, which is a socket or block device"
        )
    return _through_proc(path)


def _is_temporary_of(name: str, destination: str, suffix: str = _SUFFIX) -> bool:
    """Whether ``name`` has the exact shape of a temporary (``suffix``) of ``destination`` made here (others' files never do)."""
    prefix = f".{destination}."
    if not (name.startswith(prefix) and name.endswith(suffix) and len(name) == len(prefix) + _RANDOM_CHARS + len(suffix)):
        return False
    return all(char in _RANDOM_ALPHABET for char in name[len(prefix) : len(prefix) + _RANDOM_CHARS])


def _remove_stale(path: Path, suffix: str = _SUFFIX, *, folders: bool = False, locked_from_birth: bool = False) -> None:
    """Remove the temporaries (``suffix``) of ``path`` that no live writer holds (see the module's docstring).

    ``folders`` chooses what is removed: staging folders, else temporary files (never the other kind).
    ``locked_from_birth``: such a temporary is locked before it has this name, so one that can be
    locked is stale even when empty and young.
    """
    import fcntl

    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        if not _is_temporary_of(name, path.name, suffix):
            continue
        temp = path.parent / name
        try:
            handle = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer lives (and where there are no locks)
            info = os.fstat(handle)
            if not (stat.S_ISDIR(info.st_mode) if folders else stat.S_ISREG(info.st_mode)):
                continue
            used = bool(os.listdir(handle)) if folders else info.st_size > 0
            if locked_from_birth or used or time.time() - info.st_mtime > STALE_AFTER_S:
                if folders:
                    shutil.rmtree(temp, ignore_errors=True)
                else:
                    temp.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(handle)


@contextlib.contextmanager
def staging_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A new hidden folder beside ``path`` in which to build ``path``'s content, locked while the block runs.

    The folder (``.<name>.XXXXXXXX.partial``, mode 0700 as ``mkdtemp`` makes it) is the caller's to
    publish (rename) before the block ends; on an error it is removed. Staging folders of ``path`` left
    by a killed writer are removed first; a live writer's never are (it holds the lock).

    Raises:
        OSError: the folder cannot be made (no write access to ``path``'s folder, no space).
    """
    path = Path(path)
    _remove_stale(path, _STAGING_SUFFIX, folders=True, locked_from_birth=True)
    _remove_stale(path, _BIRTH_SUFFIX, folders=True)
    birth = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=_BIRTH_SUFFIX, dir=path.parent))
    staging = birth.with_name(birth.name[: -len(_BIRTH_SUFFIX)] + _STAGING_SUFFIX)
    try:
        handle = os.open(birth, os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        birth.rmdir()
        raise
    try:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)  # held through the rename: the lock belongs to the folder, not its name
        except OSError:  # a file system without locks: no one else can lock it either, so no one removes it
            pass
        try:
            os.rename(birth, staging)
        except BaseException:
            birth.rmdir()
            raise
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file whose content appears at ``path`` only when the block ends without an error.

    A regular (or missing) destination: a temporary file beside it, flushed, given
    :func:`new_file_mode` and renamed over ``path``; on an error it is removed and ``path`` is
    untouched. A FIFO, a character device or a path through ``/proc`` (:func:`writes_through`):
    the destination itself, opened for writing (it is never replaced).

    Raises:
        IsADirectoryError: ``path`` is a folder.
        ValueError: ``path`` is a socket or a block device.
        OSError: the writes fail (no space, read-only file system, ...).
    """
    path = Path(path)
    if writes_through(path):
        # O_TRUNC only on a regular file reached through /proc: a device or a FIFO has nothing to truncate
        flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_TRUNC if stat.S_ISREG(os.stat(path).st_mode) else 0)
        with os.fdopen(os.open(path, flags), "wb") as file:
            yield file
        return
    _remove_stale(path)
    mode = new_file_mode(path)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            try:
                import fcntl

                fcntl.flock(file.fileno(), fcntl.LOCK_EX)  # marks the file as live for _remove_stale
            except OSError:  # a file system without locks: the size and age rule still protects it
                pass
            os.fchmod(file.fileno(), mode)
            yield file
            file.flush()
            os.fsync(file.fileno())
            os.replace(temp, path)  # while still locked: the name never holds an unlocked, incomplete file
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` with :func:`atomic_writer`.

    The temporary file lives beside the destination because ``os.replace`` is only atomic within
    one file system.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    with atomic_writer(path) as file:
        file.write(data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], payload: Any, *, indent: int = 1) -> Path:
    """Write ``payload`` as strict JSON (NaN and Inf refused) to ``path`` atomically.

    Raises:
        ValueError: ``payload`` holds NaN or Inf (not valid JSON; nothing is written).
    """
    text = json.dumps(payload, indent=indent, allow_nan=False) + "\n"
    return write_bytes_atomic(path, text.encode())
