"""The output folder of ``qualoader tag``: refusing inputs, locking, staging and publishing a set at once.

A set of shards and sidecars is written into a *staging folder* and published in one step, so that
a reader (or a kill -9 at any instant) sees either the complete old set or the complete new set:

* **Exchange** (Linux, the usual case): the staging folder is a hidden sibling of the output folder
  (``.qualoader-staging-<name>.XXXXXXXX`` beside it, same file system) and publishing swaps the two
  folders with one ``renameat2(RENAME_EXCHANGE)``; the old set then sits under the staging name and
  is removed. The output folder keeps its path, so ``out/tagged-{000000..000009}.tar`` patterns
  keep working with plain ``webdataset``.
* **File by file** (fallback): where no sibling can be made (the parent is not writable, the output
  folder is a mount point) or the platform cannot exchange, the staging folder lies inside the
  output folder and the files are renamed one by one; every file is complete, but a kill during
  those renames can leave old and new shards side by side.

An ``flock`` on the output folder (and on the staging folder, which becomes the output folder)
keeps two writers apart; folders left by a killed run are removed by the next run.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from qualoader._atomic import fsync_folder
from qualoader.webdataset.tag_format import SIDECAR_SUFFIX

__all__ = [
    "PAUSE_VARIABLE",
    "STAGING_PREFIX",
    "check_inputs_outside",
    "interrupts_deferred",
    "lock_folder",
    "publish_folder",
    "remove_leftovers",
    "staging_folder",
    "staging_folders",
]

#: Name prefix of the staging folder a shard set is written into (beside the output folder, or inside it).
STAGING_PREFIX = ".qualoader-staging-"
_INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM})
_RANDOM_CHARS = 8  # tempfile.mkdtemp's random part
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
# The exchange is refused by the file system (or kernel), not by the folders: publish file by file instead.
_NO_EXCHANGE = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV, errno.EPERM})
#: Test hook (fault injection): ``<step>:<marker path>`` pauses publishing before step ``<step>`` (0, 1, ...),
#: creating the marker file first, so a test can kill the process at exactly that point.
PAUSE_VARIABLE = "QUALOADER_PUBLISH_PAUSE"
_PAUSE_S = 60.0  # a forgotten pause only delays the run, it never hangs it


def check_inputs_outside(out: Path, inputs: Sequence[Path]) -> None:
    """Refuse an output folder holding any input: by resolved path (symlinks) or by file identity (hard links).

    Raises:
        ValueError: ``out`` is, or holds, one of ``inputs``.
    """
    existing = [path for path in inputs if path.exists()]  # a missing input fails later, at reading, under the handler
    out_real = out.resolve()
    identities: dict[tuple[int, int], Path] = {}
    for path in existing:
        if path.resolve().is_relative_to(out_real):
            raise ValueError(
                f"out_dir should not hold any input shard (its files are replaced), but got out_dir={str(out)!r} holding input "
                f"{str(path)!r}"
            )
        stat = path.stat()
        # (device, inode) catches hard links, which resolve() cannot: a different path to the same file.
        identities[(stat.st_dev, stat.st_ino)] = path
    if identities and out.is_dir():
        for entry in out.iterdir():
            try:
                stat = entry.stat()
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) in identities:
                raise ValueError(
                    f"out_dir should not hold any input shard (its files are replaced), but got out_dir={str(out)!r} "
                    f"holding {entry.name!r}, the same file as input {str(identities[(stat.st_dev, stat.st_ino)])!r}"
                )


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while a publish or clean-up runs, so it is never left half done."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def lock_folder(folder: Path) -> int | None:
    """Take a non-blocking ``flock`` on ``folder``; returns the descriptor to close (``None`` where there is no flock).

    Raises:
        ValueError: another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return None
    handle = os.open(folder, os.O_RDONLY)
    try:
        # Non-blocking: a second writer fails at once with a clear message instead of waiting for the first.
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        os.close(handle)
        raise ValueError(
            f"out_dir should not be in use by another writer, but got out_dir={str(folder)!r}, which another process is writing into"
        ) from error
    return handle


def _sibling_prefix(out: Path) -> str:
    return f"{STAGING_PREFIX}{out.name}."


def _is_staging(entry: Path, prefix: str) -> bool:
    # The exact length tells "out" apart from "out.b" (whose prefix starts with out's).
    return entry.name.startswith(prefix) and len(entry.name) == len(prefix) + _RANDOM_CHARS and entry.is_dir() and not entry.is_symlink()


def staging_folders(out: Path) -> list[Path]:
    """Staging folders of ``out`` that exist now, beside it and inside it (a live run's, or a killed run's)."""
    beside = sorted(entry for entry in out.parent.iterdir() if _is_staging(entry, _sibling_prefix(out))) if out.parent.is_dir() else []
    inside = (
        sorted(entry for entry in out.iterdir() if entry.name.startswith(STAGING_PREFIX) and entry.is_dir() and not entry.is_symlink())
        if out.is_dir()
        else []
    )
    return beside + inside


def remove_leftovers(out: Path) -> None:
    """Remove staging folders (and old sets) a killed run left beside or inside ``out``; call it holding ``out``'s lock."""
    for entry in staging_folders(out):
        shutil.rmtree(entry, ignore_errors=True)


def _can_exchange() -> bool:
    return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "renameat2")


def staging_folder(out: Path) -> tuple[Path, bool]:
    """Make the staging folder of ``out`` (an existing folder); returns ``(folder, beside)``.

    ``beside`` is True for a sibling that :func:`publish_folder` exchanges with ``out`` in one step,
    False for a folder inside ``out`` (published file by file).
    """
    if _can_exchange():
        try:
            # Same file system as out: a mount point at out would make the exchange fail (EXDEV).
            if out.stat().st_dev == out.parent.stat().st_dev:
                staging = Path(tempfile.mkdtemp(prefix=_sibling_prefix(out), dir=out.parent))
                # mkdtemp makes 0700; the folder becomes the output folder, which keeps its permissions
                os.chmod(staging, out.stat().st_mode & 0o7777)
                return staging, True
        except OSError:  # no write access to the parent: stage inside out
            pass
    return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out)), False


def _pause(step: int) -> None:
    """The fault-injection hook (see ``PAUSE_VARIABLE``); a no-op unless the variable names this step."""
    setting = os.environ.get(PAUSE_VARIABLE)
    if not setting:
        return
    at, _, marker = setting.partition(":")
    if at.strip() == str(step) and marker:
        Path(marker).touch()
        time.sleep(_PAUSE_S)


def _exchange(first: Path, second: Path) -> None:
    """Swap two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(first), None, str(second))


def publish_folder(out: Path, staging: Path, beside: bool, names: Sequence[str]) -> None:
    """Publish the complete set ``names`` (file names in ``staging``) as the content of ``out``.

    ``out`` must hold only files of a previous set (checked by the caller). With ``beside`` the
    two folders are exchanged in one step and the old set is removed; otherwise (or where the file
    system refuses the exchange) the files are renamed into ``out`` one by one and old files the
    new set lacks are removed last. Interrupts are held back throughout.
    """
    with interrupts_deferred():
        step = 0
        if beside:
            _pause(step)
            step += 1
            try:
                _exchange(staging, out)
            except OSError as error:
                if error.errno not in _NO_EXCHANGE:
                    raise
            else:
                fsync_folder(out.parent)
                _pause(step)
                shutil.rmtree(staging, ignore_errors=True)  # the old set, now under the staging name
                return
        old = [entry for entry in out.iterdir() if entry != staging]
        for name in names:
            _pause(step)
            step += 1
            # an old sidecar must never describe a new shard, even for the instant between two renames
            (out / (name + SIDECAR_SUFFIX)).unlink(missing_ok=True)
            os.replace(staging / name, out / name)
        for entry in old:  # only once the new set is complete
            if entry.name not in names:
                entry.unlink(missing_ok=True)
        fsync_folder(out)
        shutil.rmtree(staging, ignore_errors=True)
