"""Per-sample provenance of a store's scores: which bytes each sample's scores were computed from.

``root/content.npy`` holds one record per sample (:data:`PROVENANCE_DTYPE`):

* ``digest``: 16-byte BLAKE2b of the file's size and bytes, the content every scored cell of that
  sample (in every table) was computed from; all zero when not known (never hashed, or dropped).
* ``size``, ``mtime_ns``: the file's size and modification time when the store last matched its
  dataset (:data:`UNKNOWN_STAT` when not known).

Writes that carry a :class:`FileDigest` (``precompute`` computes it in the workers that read the file
to decode it) are *claimed* against these records under the store lock (:func:`claim`): a write
whose file version (size, modification time or bytes) is not the one the store holds for that sample
is dropped and the sample's cells in every table are forgotten, so two overlapping runs that read
different versions of a file can never leave a cell of one version next to a record of the other.
:func:`verify` checks an already-scored sample against the bytes on disk, which catches edits that
keep the size and the modification time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qualoader._atomic import fsync_folder
from qualoader._file_versions import FileDigest, file_digest
from qualoader.data._lock import store_lock
from qualoader.data._storefiles import REBUILD, StoreError, allocate, as_indices, disk_error, write_filled_npy

if TYPE_CHECKING:  # pragma: no cover
    from qualoader.data.table import ScoreTable

__all__ = ["PROVENANCE_DTYPE", "UNKNOWN_STAT", "FileDigest", "Provenance", "file_digest", "file_digests"]

#: One record per sample: content digest (zero = unknown), size and mtime last matched.
PROVENANCE_DTYPE = np.dtype([("digest", "V16"), ("size", "<i8"), ("mtime_ns", "<i8")])
#: ``size`` / ``mtime_ns`` of a record whose file has never been matched (a store made before digests, or in-memory data).
UNKNOWN_STAT = -2
_ZERO = np.void(bytes(16))


def file_digests(paths: Sequence[str]) -> list[FileDigest | None]:
    """:func:`file_digest` of many files on a few threads (hashlib releases the GIL while hashing)."""
    if len(paths) < 8:
        return [file_digest(path) for path in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(file_digest, paths))


class Provenance:
    """The ``content.npy`` records of the store at ``root`` (see the module docs); every method runs under the store lock.

    Args:
        root: the store folder.
        length: the store's number of samples.
    """

    def __init__(self, root: Path, length: int) -> None:
        self.root = Path(root)
        self.length = length
        self.path = self.root / "content.npy"

    @staticmethod
    def create(path: Path, length: int, sizes: Sequence[int] | None = None, mtimes_ns: Sequence[int] | None = None) -> None:
        """Write a new records file (real writes, no sparse file) through a temporary name; unknown digests."""
        temp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
        try:
            write_filled_npy(temp, PROVENANCE_DTYPE, length, 0)
            if sizes is not None and mtimes_ns is not None:
                records = np.load(temp, mmap_mode="r+", allow_pickle=False)
                records["size"] = np.asarray(sizes, dtype=np.int64)
                records["mtime_ns"] = np.asarray(mtimes_ns, dtype=np.int64)
                records.flush()
                del records
            os.replace(temp, path)
            fsync_folder(path.parent)
        except OSError as error:
            raise disk_error(error, str(path)) from error
        finally:
            temp.unlink(missing_ok=True)

    def records(self) -> np.ndarray:
        """The records, memory-mapped for writing (created with unknown records for a store made before digests)."""
        with store_lock(self.root):
            if not self.path.exists():
                self.create(self.path, self.length, [UNKNOWN_STAT] * self.length, [UNKNOWN_STAT] * self.length)
            allocate(self.path)
            try:
                records = np.load(self.path, mmap_mode="r+", allow_pickle=False)
            except (ValueError, OSError, EOFError) as error:
                what = f"{str(self.path)!r} should be a readable .npy array, but got a corrupt file ({error}); {REBUILD}"
                raise StoreError(what) from error
            if records.dtype != PROVENANCE_DTYPE or records.shape != (self.length,):
                raise StoreError(
                    f"{str(self.path)!r} should hold {self.length} provenance records, but got {records.dtype} {records.shape}; {REBUILD}"
                )
            return records

    def match(self, changed: np.ndarray, sizes: Sequence[int], mtimes_ns: Sequence[int]) -> None:
        """Record the stats of a newly matched dataset and forget the digests of ``changed`` samples (their cells were dropped)."""
        with store_lock(self.root):
            records = self.records()
            records["size"] = np.asarray(sizes, dtype=np.int64)
            records["mtime_ns"] = np.asarray(mtimes_ns, dtype=np.int64)
            records["digest"][changed] = _ZERO
            records.flush()

    def same_content(self, indices: np.ndarray, paths: Sequence[str]) -> np.ndarray:
        """Which of ``indices`` hold a known digest equal to the bytes of their file in ``paths`` now (bool :math:`(K,)`)."""
        digests = self.records()["digest"][indices].copy()
        known = digests != _ZERO
        found = file_digests([paths[int(i)] for i in indices[known]])
        same = np.zeros(indices.shape, dtype=bool)
        same[np.flatnonzero(known)] = [d is not None and np.void(d.digest) == old for d, old in zip(found, digests[known])]
        return same

    def _judge(self, indices: np.ndarray, found: Sequence[FileDigest | None], adopt: bool) -> np.ndarray:
        """Bool :math:`(K,)`: whether each version read (``found``) is the one its record vouches for (unknown digests adopted)."""
        records = self.records()
        ok = np.zeros(indices.shape, dtype=bool)
        for k, (index, version) in enumerate(zip(indices.tolist(), found)):
            if version is None:
                continue
            record = records[index]
            stat_known = int(record["size"]) != UNKNOWN_STAT
            if stat_known and (int(record["size"]), int(record["mtime_ns"])) != (version.size, version.mtime_ns):
                continue  # the file changed after the store matched it: this read is of another version
            if record["digest"] == _ZERO:
                if adopt:
                    records["digest"][index] = np.void(version.digest)
                    ok[k] = True
            elif bytes(record["digest"]) == version.digest:
                ok[k] = True
        records.flush()
        return ok

    def _drop(self, indices: np.ndarray, tables: Callable[[], list[ScoreTable]]) -> None:
        if indices.size:
            records = self.records()
            for table in tables():
                table.invalidate(indices)  # cells first: a crash in between leaves an unknown digest, never a vouched stale cell
            records["digest"][indices] = _ZERO
            records.flush()

    def claim(self, indices: object, found: Sequence[FileDigest | None], tables: Callable[[], list[ScoreTable]]) -> np.ndarray:
        """Before writing scores computed from ``found``: which rows may be written (bool :math:`(K,)`).

        Call it and the writes under one :func:`~qualoader.data._lock.store_lock`. A row whose version
        is not the store's (another size or mtime than last matched, or other bytes than the digest
        the store's cells were computed from) is refused and that sample's cells in every table are
        forgotten (it is scored again from the file as it is then); an unknown digest is adopted.
        """
        index = as_indices(indices, self.length)
        with store_lock(self.root):
            ok = self._judge(index, found, adopt=True)
            self._drop(index[~ok & np.array([f is not None for f in found], dtype=bool)], tables)
            return ok

    def verify(self, indices: object, found: Sequence[FileDigest | None], tables: Callable[[], list[ScoreTable]]) -> np.ndarray:
        """Check already-scored samples against their bytes now: the indices whose cells were dropped (int64 :math:`(M,)`).

        A sample whose record has no digest yet (scored before digests existed, or by a path that
        does not hash) adopts the one read; an unreadable file is left to the next decode.
        """
        index = as_indices(indices, self.length)
        with store_lock(self.root):
            ok = self._judge(index, found, adopt=True)
            dropped = index[~ok & np.array([f is not None for f in found], dtype=bool)]
            self._drop(dropped, tables)
            return dropped
