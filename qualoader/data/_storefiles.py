"""The files of a score store: formats, cross-checked JSON headers, atomic writes, preallocated arrays.

Shared by :mod:`qualoader.data.table` and :mod:`qualoader.data.store`; every JSON read goes through
:func:`qualoader._json.read_json` (size and depth limits), every write is atomic.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from qualoader._atomic import fsync_folder, write_bytes_atomic
from qualoader._json import read_json

__all__ = [
    "HEADER_KEYS",
    "REBUILD",
    "SCORED",
    "SKIPPED",
    "STORE_FORMAT",
    "STORE_KEYS",
    "TABLE_FORMAT",
    "UNSCORED",
    "VERSION",
    "StoreError",
    "allocate",
    "as_indices",
    "disk_error",
    "read_json_object",
    "read_store_meta",
    "table_dirname",
    "write_filled_npy",
    "write_json_atomic",
]

STORE_FORMAT = "qualoader.score_store"
TABLE_FORMAT = "qualoader.score_table"
VERSION = 2
STORE_KEYS = frozenset({"format", "version", "length", "dataset_id", "uid", "identity"})
HEADER_KEYS = frozenset(
    {"format", "version", "metric", "fingerprint", "config", "higher_is_better", "calibration", "length", "dataset_id", "store_uid"}
)
REBUILD = "delete that folder to rebuild it"
#: Values of a table's ``scored.npy`` flags.
UNSCORED, SCORED, SKIPPED = 0, 1, 2


class StoreError(ValueError):
    """A score store or table is corrupt, or does not match the dataset or metric it is used with."""


def disk_error(error: OSError, what: str) -> OSError:
    """A one-line ``OSError`` saying what could not be written and why (full disk, file size limit, ...)."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    hint = "; free some disk space or use another folder" if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
    return OSError(error.errno, f"{what} could not be written ({reason}){hint}; nothing half-written was kept")


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (the project's temp + fsync + rename), then persist the rename."""
    text = json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n"
    try:
        write_bytes_atomic(path, text.encode())
        fsync_folder(path.parent)
    except OSError as error:
        raise disk_error(error, str(path)) from error


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """Read a store's JSON file through the bounded reader (size and depth limits): a corrupt or hostile file is a StoreError."""
    try:
        payload = read_json(path, what=f"{what} {str(path)!r}")
    except FileNotFoundError as error:
        raise StoreError(f"{what} should exist at {str(path)!r}, but got no such file; {REBUILD}") from error
    except ValueError as error:
        raise StoreError(f"{error}; {REBUILD}") from error
    if not isinstance(payload, dict):
        raise StoreError(f"{what} should be a JSON object, but got {type(payload).__name__} in {str(path)!r}; {REBUILD}")
    return payload


def allocate(path: Path) -> None:
    """Give a file real blocks for its whole size before it is memory-mapped for writing.

    A sparse file (a hole left by ``truncate``, a ``cp --sparse`` copy) that is mapped and written on a
    full disk kills the process with SIGBUS; ``posix_fallocate`` fails with ENOSPC instead, a clear error.
    """
    try:
        with open(path, "r+b") as file:
            status = os.fstat(file.fileno())
            if status.st_blocks * 512 < status.st_size:
                os.posix_fallocate(file.fileno(), 0, status.st_size)
    except FileNotFoundError:
        return  # the caller's own open names the missing file
    except OSError as error:
        raise disk_error(error, str(path)) from error


def write_filled_npy(path: Path, dtype: np.dtype, length: int, value: float) -> None:
    """Write a ``.npy`` array of ``length`` copies of ``value`` with real writes, then fsync.

    ``open_memmap(mode="w+")`` would only truncate the file to its size (sparse): on a full disk
    the first store to a page then kills the process with SIGBUS. Real writes fail with ENOSPC/EFBIG.
    """
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)}
        )
        chunk = np.zeros(min(length, 1 << 20), dtype=dtype) if value == 0 else np.full(min(length, 1 << 20), value, dtype=dtype)
        remaining = length
        while remaining:
            count = min(remaining, chunk.size)
            file.write(chunk[:count].tobytes())
            remaining -= count
        file.flush()
        os.fsync(file.fileno())



def table_dirname(metric_name: str, fingerprint: str) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', metric_name) or 'metric'}-{fingerprint}"


def as_indices(indices: Any, length: int) -> np.ndarray:
    """Validate indices (int tensor, array or sequence) into an int64 numpy array within [0, length)."""
    if isinstance(indices, Tensor):
        indices = indices.detach().cpu().numpy()
    array = np.asarray(indices)
    if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
        raise TypeError(f"indices should be integers, but got indices of dtype {array.dtype}")
    array = array.astype(np.int64, copy=False).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= length):
        raise ValueError(f"indices should be in [0, {length}), but got indices in [{array.min()}, {array.max()}]")
    return array


def read_store_meta(root: Path) -> dict[str, Any]:
    meta_path = root / "store.json"
    meta = read_json_object(meta_path, "the store header")
    length = meta.get("length")
    if (
        meta.get("format") != STORE_FORMAT
        or meta.get("version") != VERSION
        or set(meta) != STORE_KEYS
        or isinstance(length, bool)
        or not isinstance(length, int)
        or length <= 0
    ):
        raise StoreError(
            f"the store header should be a {STORE_FORMAT} version {VERSION} header with keys {sorted(STORE_KEYS)}, "
            f"but got {str(meta_path)!r} with {dict(sorted(meta.items()))}; {REBUILD}"
        )
    identity = meta["identity"]
    if identity is not None and (not isinstance(identity, dict) or set(identity) != {"kind", "digest", "manifest"}):
        raise StoreError(
            f"the store header's identity should be null or have kind, digest and manifest, "
            f"but got identity={identity!r} in {str(meta_path)!r}; {REBUILD}"
        )
    return meta

