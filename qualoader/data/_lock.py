"""The store's lock: one exclusive ``fcntl.flock`` on ``root/.lock``, re-entrant within a process.

Creating a store or a table, writing scores and changing the recorded identity hold it, so two
processes never interleave their writes. Readers take no lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from qualoader.data._storefiles import disk_error

__all__ = ["store_lock"]

_LOCKS: dict[str, list[Any]] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def store_lock(root: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the exclusive ``fcntl.flock`` of the store at ``root`` (re-entrant within a process).

    flock locks belong to open file descriptions, so a second ``open`` + ``flock`` in the same
    process would wait for itself: nested calls share one descriptor and count their depth.
    """
    key = os.path.realpath(root)
    with _LOCKS_GUARD:
        entry = _LOCKS.get(key)
        if entry is None or entry[3] != os.getpid():  # a forked child never inherits the parent's depth
            entry = [threading.RLock(), None, 0, os.getpid()]
            _LOCKS[key] = entry
    with entry[0]:
        if entry[2] == 0:
            try:
                handle = os.open(os.path.join(key, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise disk_error(error, os.path.join(key, ".lock")) from error
            fcntl.flock(handle, fcntl.LOCK_EX)
            entry[1] = handle
        entry[2] += 1
        try:
            yield
        finally:
            entry[2] -= 1
            if entry[2] == 0:
                os.close(entry[1])  # closing the descriptor releases the flock
                entry[1] = None

