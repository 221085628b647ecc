"""Persistent per-sample score store: one numpy memmap per metric fingerprint, keyed by sample index.

Layout of a store folder (``length`` = number of samples of the dataset)::

    root/
      store.json                      format, version, length, dataset_id, uid, identity (written last)
      samples-<digest>.json           the dataset identity: per-sample paths (folders) or keys, sizes, mtimes
      .lock                           fcntl lock file (creation, writes, identity changes)
      <metric>-<fingerprint>/         one ScoreTable per metric configuration
        header.json                   metric name, fingerprint, config, calibration at creation, length, dataset_id, store_uid
        scores.npy                    float64 (N,), the scores
        scored.npy                    uint8 (N,): 0 missing, 1 scored, 2 skipped (unreadable sample)
        skipped.json                  why each skipped sample was skipped (index -> message naming its file)

Guarantees:

* **The store knows its dataset.** ``store.json`` records a :class:`~qualoader.data.identity.DatasetIdentity`
  built from content (a folder's manifest of relative paths, sizes and modification times; or a
  user-given ``dataset_id``; or a sampled content hash), and the store keeps the manifest, so every
  sample's path (folders) or key is recorded. :meth:`ScoreStore.match_dataset` (called by
  ``precompute``, :class:`~qualoader.data.QualityDataset` and :class:`~qualoader.data.QualityLoader`)
  compares a dataset with it. **Choice: exactly the changed samples are rescored** when that can
  be known, i.e. a folder with the same files in the same order of which some were rewritten or
  touched: their scores are dropped from every table (flags cleared under the lock) before the new
  manifest is recorded, so they are scored again and stale scores are never served. Any other
  difference (files added, removed or renamed, another ``dataset_id``, another content hash,
  another length) is refused with a :class:`StoreError`. A store that records no identity (made by
  ``ScoreStore(root, length)``, filled by the caller's own ``table.write``) adopts the first
  dataset matched with it and is checked from then on; ``precompute``, ``QualityDataset`` and
  ``QualityLoader`` record the identity before they write a score.
* **Cross-checked metadata.** Every table header names the store's ``uid``, length and
  ``dataset_id``, and is checked against ``store.json``, its folder name and its arrays' shapes; the
  manifest must hash to the digest in ``store.json``. A mismatch or a corrupt file raises
  :class:`StoreError`. A folder that holds tables but no ``store.json`` is refused, never re-adopted.
* **No stale metric.** A table is found by ``metric.fingerprint()`` (name, config, weights and,
  for a metric built from a quality profile, the profile's ``score_identity``; not the calibration,
  which is applied at read time), so a changed metric or profile never reads another's scores,
  and re-calibrating a metric keeps its table (nothing is rescored). The header's ``calibration``
  is the one the metric had when the table was created and is not updated afterwards: readers
  given the metric (:class:`~qualoader.data.QualityDataset`, :class:`~qualoader.data.QualityLoader`,
  ``describe(store, metrics=[metric])``) compute difficulty from its *current* calibration, and
  only readers without a metric (``describe(store)``, exports) fall back to the header's.
* **Atomic, crash-safe writes.** JSON files are written to a temporary file, fsynced and
  ``os.replace``-d; ``store.json`` is written last, so a store whose creation was interrupted does
  not read as a store. A new table is built in a temporary folder with its arrays preallocated by
  real writes (not a sparse ``truncate``: a full disk then fails the write with an ``OSError``
  instead of a later ``SIGBUS`` in a memory-mapped store) and renamed into place.
  :meth:`ScoreTable.write` writes and flushes the scores *before* it sets and flushes their flags,
  so a crash can leave a computed score unflagged (it is recomputed) but never a flag without its
  score.
* **Concurrent processes.** Creating a store, creating a table, writing scores and changing the
  identity hold an exclusive ``fcntl.flock`` on ``root/.lock``, so two processes creating the
  same store agree on one ``store.json`` (the second checks its dataset against the first's) and
  writers never interleave. Readers take no lock: arrays are mapped lazily, once per process (a
  table pickled into DataLoader workers re-opens its files there) and see writes through the
  shared page cache.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from qualoader._atomic import write_bytes_atomic
from qualoader._validation import check_positive_int, check_type
from qualoader.data.identity import DatasetIdentity
from qualoader.metrics.base import QualityMetric

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import pyarrow

__all__ = ["SCORED", "SKIPPED", "UNSCORED", "ScoreStore", "ScoreTable", "StoreError", "store_lock"]

_STORE_FORMAT = "qualoader.score_store"
_TABLE_FORMAT = "qualoader.score_table"
_VERSION = 2
_STORE_KEYS = frozenset({"format", "version", "length", "dataset_id", "uid", "identity"})
_HEADER_KEYS = frozenset(
    {"format", "version", "metric", "fingerprint", "config", "higher_is_better", "calibration", "length", "dataset_id", "store_uid"}
)
_REBUILD = "delete that folder to rebuild it"
#: Values of a table's ``scored.npy`` flags.
UNSCORED, SCORED, SKIPPED = 0, 1, 2


class StoreError(ValueError):
    """A score store or table is corrupt, or does not match the dataset or metric it is used with."""


# -- files -------------------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder`` (a crash right after ``os.replace`` must not undo it)."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(handle)


def _disk_error(error: OSError, what: str) -> OSError:
    """A one-line ``OSError`` saying what could not be written and why (full disk, file size limit, ...)."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    hint = "; free some disk space or use another folder" if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
    return OSError(error.errno, f"{what} could not be written ({reason}){hint}; nothing half-written was kept")


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (the project's temp + fsync + rename), then persist the rename."""
    text = json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n"
    try:
        write_bytes_atomic(path, text.encode())
        _fsync_dir(path.parent)
    except OSError as error:
        raise _disk_error(error, str(path)) from error


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise StoreError(f"{what} should exist at {str(path)!r}, but got no such file; {_REBUILD}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoreError(f"{what} should be valid JSON, but got a corrupt file {str(path)!r} ({error}); {_REBUILD}") from error
    if not isinstance(payload, dict):
        raise StoreError(f"{what} should be a JSON object, but got {type(payload).__name__} in {str(path)!r}; {_REBUILD}")
    return payload


def _write_filled_npy(path: Path, dtype: np.dtype, length: int, value: float) -> None:
    """Write a ``.npy`` array of ``length`` copies of ``value`` with real writes, then fsync.

    ``open_memmap(mode="w+")`` would only truncate the file to its size (sparse): on a full disk
    the first store to a page then kills the process with SIGBUS. Real writes fail with ENOSPC/EFBIG.
    """
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)}
        )
        chunk = np.full(min(length, 1 << 20), value, dtype=dtype)
        remaining = length
        while remaining:
            count = min(remaining, chunk.size)
            file.write(chunk[:count].tobytes())
            remaining -= count
        file.flush()
        os.fsync(file.fileno())


# -- lock --------------------------------------------------------------------------------------
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
                raise _disk_error(error, os.path.join(key, ".lock")) from error
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


def _table_dirname(metric_name: str, fingerprint: str) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', metric_name) or 'metric'}-{fingerprint}"


def _as_indices(indices: Any, length: int) -> np.ndarray:
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


def _read_store_meta(root: Path) -> dict[str, Any]:
    meta_path = root / "store.json"
    meta = _read_json(meta_path, "the store header")
    length = meta.get("length")
    if (
        meta.get("format") != _STORE_FORMAT
        or meta.get("version") != _VERSION
        or set(meta) != _STORE_KEYS
        or isinstance(length, bool)
        or not isinstance(length, int)
        or length <= 0
    ):
        raise StoreError(
            f"the store header should be a {_STORE_FORMAT} version {_VERSION} header with keys {sorted(_STORE_KEYS)}, "
            f"but got {str(meta_path)!r} with {dict(sorted(meta.items()))}; {_REBUILD}"
        )
    identity = meta["identity"]
    if identity is not None and (not isinstance(identity, dict) or set(identity) != {"kind", "digest", "manifest"}):
        raise StoreError(
            f"the store header's identity should be null or have kind, digest and manifest, "
            f"but got identity={identity!r} in {str(meta_path)!r}; {_REBUILD}"
        )
    return meta


class ScoreTable:
    """Scores of one metric configuration for every sample of one dataset (see module docs).

    Open an existing table with ``ScoreTable(path)``; :meth:`ScoreStore.table` creates them.

    Args:
        path: the table folder (holding ``header.json``, ``scores.npy``, ``scored.npy``) inside its store.

    Raises:
        StoreError: missing or corrupt header or arrays, a header that does not match its arrays,
            or one that does not match its store's ``store.json``.

    Example:
        >>> import tempfile
        >>> from qualoader.metrics import create_metric
        >>> table = ScoreStore(tempfile.mkdtemp(), length=3).table(create_metric("sharpness"), create=True)
        >>> table.write([0, 1], [0.5, 0.75])
        >>> table.read([0, 1, 2])
        (array([0.5 , 0.75,  nan]), array([ True,  True, False]))
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        header = _read_json(self.path / "header.json", "the table header")
        if header.get("format") != _TABLE_FORMAT or header.get("version") != _VERSION or set(header) != _HEADER_KEYS:
            raise StoreError(
                f"the table header should be a {_TABLE_FORMAT} version {_VERSION} header with keys {sorted(_HEADER_KEYS)}, "
                f"but got {str(self.path / 'header.json')!r} with format={header.get('format')!r}, version={header.get('version')!r}, "
                f"keys={sorted(header)}; {_REBUILD}"
            )
        length = header["length"]
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise StoreError(
                f"the table header should have a positive int length, but got length={length!r} in {str(self.path)!r}; {_REBUILD}"
            )
        self.header: dict[str, Any] = header
        self._check_store(_read_store_meta(self.path.parent))
        self._maps: tuple[int, bool, np.ndarray, np.ndarray, np.memmap, np.memmap] | None = None
        self._arrays(writable=False)  # fail now, in the constructing process, on corrupt arrays

    def _check_store(self, meta: dict[str, Any]) -> None:
        """Cross-check this header against its store's ``store.json``."""
        for key, store_key in (("store_uid", "uid"), ("length", "length"), ("dataset_id", "dataset_id")):
            if self.header[key] != meta[store_key]:
                raise StoreError(
                    f"the table header's {key} should be the store's {store_key}={meta[store_key]!r}, but got {key}={self.header[key]!r} "
                    f"in {str(self.path / 'header.json')!r} (a table of another store or dataset); {_REBUILD}"
                )

    # -- metadata ------------------------------------------------------------------------------
    @property
    def length(self) -> int:
        """Number of samples (valid indices are ``0 .. length - 1``)."""
        return int(self.header["length"])

    @property
    def metric_name(self) -> str:
        """Registry name of the metric that wrote the scores."""
        return str(self.header["metric"])

    @property
    def fingerprint(self) -> str:
        """``metric.fingerprint()`` of the metric that wrote the scores."""
        return str(self.header["fingerprint"])

    @property
    def config(self) -> dict[str, Any]:
        """``metric.get_config()`` of the metric that wrote the scores."""
        return dict(self.header["config"])

    @property
    def higher_is_better(self) -> bool:
        """Direction of the scores."""
        return bool(self.header["higher_is_better"])

    @property
    def calibration_state(self) -> dict[str, Any] | None:
        """``metric.calibration.state_dict()`` as it was when the table was created, else ``None``.

        Not updated when the metric is re-calibrated (the fingerprint leaves calibrations out, so
        the table is kept): prefer the metric's current ``calibration`` where the metric is known.
        """
        return self.header["calibration"]

    # -- arrays --------------------------------------------------------------------------------
    def _open_array(self, name: str, dtype: np.dtype, writable: bool) -> np.ndarray:
        path = self.path / name
        try:
            array = np.load(path, mmap_mode="r+" if writable else "r", allow_pickle=False)
        except FileNotFoundError as error:
            raise StoreError(f"the table should have {name}, but got no file {str(path)!r}; {_REBUILD}") from error
        except (ValueError, OSError, EOFError) as error:
            raise StoreError(
                f"{name} should be a readable .npy array, but got a corrupt file {str(path)!r} ({error}); {_REBUILD}"
            ) from error
        if array.shape != (self.length,) or array.dtype != dtype:
            raise StoreError(
                f"{name} should hold {dtype} ({self.length},) as its header says, but got {array.dtype} {array.shape} "
                f"in {str(path)!r}; {_REBUILD}"
            )
        return array

    def _arrays(self, writable: bool) -> tuple[np.ndarray, np.ndarray]:
        """The (scores, scored) arrays of this process, mapped on first use (re-mapped after fork/pickle).

        Plain ``ndarray`` views of the memmaps: indexing them skips ``np.memmap``'s Python-level
        ``__getitem__`` (the per-sample read path).
        """
        pid = os.getpid()
        if self._maps is None or self._maps[0] != pid or (writable and not self._maps[1]):
            scores = self._open_array("scores.npy", np.dtype(np.float64), writable)
            scored = self._open_array("scored.npy", np.dtype(np.uint8), writable)
            self._maps = (pid, writable, scores.view(np.ndarray), scored.view(np.ndarray), scores, scored)  # type: ignore[arg-type]
        return self._maps[2], self._maps[3]

    def _writable(self) -> tuple[np.memmap, np.memmap]:
        self._arrays(writable=True)
        assert self._maps is not None
        return self._maps[4], self._maps[5]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}

    def read(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        """Scores and validity of some samples.

        Args:
            indices: integer indices :math:`(K,)` (tensor, numpy array or sequence).

        Returns:
            ``(scores, scored)``: float64 :math:`(K,)` with NaN where not scored (or skipped), and bool :math:`(K,)`.
        """
        index = _as_indices(indices, self.length)
        scores, scored = self._arrays(writable=False)
        valid = scored[index] == SCORED
        return np.where(valid, scores[index], np.nan), valid

    def get(self, index: int) -> float | None:
        """Score of one sample, or ``None`` when it has not been scored (or was skipped)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < self.length:
            raise ValueError(f"index should be an int in [0, {self.length}), but got index={index!r}")
        maps = self._maps
        if maps is None or maps[0] != os.getpid():
            self._arrays(writable=False)
            maps = self._maps
            assert maps is not None
        return float(maps[2][index]) if maps[3][index] == SCORED else None

    def write(self, indices: Any, values: Any) -> None:
        """Store scores (scores flushed before their flags are set and flushed), under the store lock.

        Args:
            indices: integer indices :math:`(K,)`.
            values: finite scores :math:`(K,)` (tensor, numpy array or sequence).

        Raises:
            ValueError: lengths differ, or a score is NaN/Inf (never stored as valid).
        """
        index = _as_indices(indices, self.length)
        if isinstance(values, Tensor):
            values = values.detach().cpu().double().numpy()
        array = np.asarray(values, dtype=np.float64).reshape(-1)
        if array.shape != index.shape:
            raise ValueError(f"values should have one score per index ({index.size}), but got {array.size} values")
        if not np.isfinite(array).all():
            raise ValueError(f"values should be finite scores, but got values with {int((~np.isfinite(array)).sum())} NaN/Inf")
        if index.size == 0:
            return
        with store_lock(self.path.parent):
            scores, scored = self._writable()
            scores[index] = array
            scores.flush()
            scored[index] = SCORED
            scored.flush()

    def skip(self, indices: Any, reasons: list[str]) -> None:
        """Record samples that could not be read: NaN score, flag ``SKIPPED``, the reason in ``skipped.json``.

        Skipped samples are not :meth:`missing` (a resumed ``precompute`` does not retry them) and
        not scored (:meth:`read` gives NaN and ``False``). A file that is fixed later changes its
        manifest entry, so :meth:`ScoreStore.match_dataset` clears its flag and it is scored again.

        Args:
            indices: integer indices :math:`(K,)`.
            reasons: one message per index (naming the sample's file).
        """
        index = _as_indices(indices, self.length)
        if len(reasons) != index.size:
            raise ValueError(f"reasons should have one message per index ({index.size}), but got {len(reasons)} reasons")
        if index.size == 0:
            return
        with store_lock(self.path.parent):
            known = self._skip_reasons()
            known.update({str(int(i)): str(r) for i, r in zip(index, reasons)})
            _write_json_atomic(self.path / "skipped.json", known)  # reasons first: a flag never lacks its reason
            scores, scored = self._writable()
            scores[index] = np.nan
            scores.flush()
            scored[index] = SKIPPED
            scored.flush()

    def invalidate(self, indices: Any) -> None:
        """Forget the scores of some samples (they become missing and are scored again), under the store lock."""
        index = _as_indices(indices, self.length)
        if index.size == 0:
            return
        with store_lock(self.path.parent):
            scores, scored = self._writable()
            scored[index] = UNSCORED  # flags first: a crash in between leaves a stale value that no flag vouches for
            scored.flush()
            scores[index] = np.nan
            scores.flush()

    def _skip_reasons(self) -> dict[str, str]:
        path = self.path / "skipped.json"
        return _read_json(path, "the skipped-samples list") if path.exists() else {}

    def skipped(self) -> dict[int, str]:
        """``{index: reason}`` of the samples skipped as unreadable, ascending by index."""
        flags = self._arrays(writable=False)[1]
        reasons = self._skip_reasons()
        out = {}
        for index in np.flatnonzero(flags == SKIPPED).tolist():
            out[index] = reasons.get(str(index), "skipped (reason not recorded)")
        return out

    def scores(self) -> np.ndarray:
        """A copy of every score, float64 :math:`(N,)`, NaN where not scored."""
        scores, scored = self._arrays(writable=False)
        return np.where(scored == SCORED, scores, np.nan)

    def scored(self) -> np.ndarray:
        """A copy of the validity mask, bool :math:`(N,)`."""
        return self._arrays(writable=False)[1] == SCORED

    def missing(self) -> np.ndarray:
        """Indices neither scored nor skipped yet, int64 :math:`(M,)`, ascending."""
        return np.flatnonzero(self._arrays(writable=False)[1] == UNSCORED).astype(np.int64)

    @property
    def num_scored(self) -> int:
        """How many samples have a score."""
        return int(np.count_nonzero(self._arrays(writable=False)[1] == SCORED))

    @property
    def num_skipped(self) -> int:
        """How many samples were skipped as unreadable."""
        return int(np.count_nonzero(self._arrays(writable=False)[1] == SKIPPED))

    @property
    def complete(self) -> bool:
        """Whether every sample was scored (or skipped as unreadable)."""
        return not bool((self._arrays(writable=False)[1] == UNSCORED).any())

    def check_metric(self, metric: QualityMetric) -> None:
        """Raise :class:`StoreError` unless ``metric`` has this table's fingerprint."""
        fingerprint = metric.fingerprint()
        if fingerprint != self.fingerprint:
            raise StoreError(
                f"metric should have the fingerprint {self.fingerprint} of the table at {str(self.path)!r} "
                f"({self.metric_name}, config {self.config}), but got metric {metric.name!r} with fingerprint {fingerprint} "
                f"(config {metric.get_config()}); a changed metric needs its own table (ScoreStore.table(metric, create=True))"
            )

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (
            f"ScoreTable({str(self.path)!r}, metric={self.metric_name!r}, fingerprint={self.fingerprint!r}, "
            f"scored={self.num_scored}/{self.length})"
        )

    # -- creation ------------------------------------------------------------------------------
    @classmethod
    def _create(cls, path: Path, header: dict[str, Any]) -> None:
        """Build the table in a temporary folder and rename it to ``path`` (the caller holds the store lock)."""
        temp = path.parent / f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            temp.mkdir(parents=True)
            length = int(header["length"])
            _write_filled_npy(temp / "scores.npy", np.dtype(np.float64), length, np.nan)
            _write_filled_npy(temp / "scored.npy", np.dtype(np.uint8), length, UNSCORED)
            _write_json_atomic(temp / "header.json", header)
            os.rename(temp, path)
            _fsync_dir(path.parent)
        except OSError as error:
            raise _disk_error(error, f"the score table {str(path)!r}") from error
        finally:
            if temp.exists():
                shutil.rmtree(temp, ignore_errors=True)


class ScoreStore:
    """A folder of :class:`ScoreTable` s for one dataset of ``length`` samples, one per metric configuration.

    Args:
        root: the store folder; created (with ``store.json``) when it does not exist.
        length: number of samples, ``len(dataset)``. Required to create a store without
            ``identity``; when opening an existing one it is checked (``None`` accepts the stored length).
        dataset_id: optional label of the dataset (e.g. ``"imagefolder:size=64"``: what the
            identity cannot see, such as a transform), stored at creation and checked when given.
        identity: the dataset's :class:`~qualoader.data.identity.DatasetIdentity`
            (``identify_dataset(dataset)``): recorded at creation, matched when opening (see
            :meth:`match_dataset`). ``precompute``, ``QualityDataset`` and ``QualityLoader`` pass it.

    Raises:
        StoreError: ``store.json`` is corrupt, ``length`` / ``dataset_id`` / ``identity`` differ from
            the stored ones, or the folder holds tables but no ``store.json``.
        ValueError: creating a store without ``length`` or ``identity``.
        OSError: the disk is full (nothing that reads as a store is left behind).

    Example:
        >>> import tempfile, torch
        >>> from torch.utils.data import TensorDataset
        >>> from qualoader.data import identify_dataset
        >>> from qualoader.metrics import create_metric
        >>> dataset = TensorDataset(torch.zeros(10, 1, 8, 8), torch.arange(10))
        >>> store = ScoreStore(tempfile.mkdtemp(), identity=identify_dataset(dataset, dataset_id="zeros-v1"))
        >>> store.length, store.table(create_metric("sharpness"), create=True).num_scored
        (10, 0)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        length: int | None = None,
        *,
        dataset_id: str | None = None,
        identity: DatasetIdentity | None = None,
    ) -> None:
        check_type(root, "root", (str, os.PathLike), "a folder path (str or os.PathLike)")
        if length is not None:
            check_positive_int(length, "length")
        if dataset_id is not None:
            check_type(dataset_id, "dataset_id", str, "a str or None")
        if identity is not None:
            check_type(identity, "identity", DatasetIdentity, "a DatasetIdentity or None")
            if length is not None and length != identity.length:
                raise ValueError(f"length should be the identity's length {identity.length}, but got length={length}")
            length = identity.length
        self.root = Path(root)
        self.rescored: np.ndarray = np.empty(0, dtype=np.int64)  #: indices dropped by the last match_dataset (changed files)
        if not (self.root / "store.json").exists():
            if length is None:
                raise ValueError(f"length should be given to create a new store, but got length=None and no store at {str(self.root)!r}")
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise _disk_error(error, str(self.root)) from error
            with store_lock(self.root):
                if not (self.root / "store.json").exists():  # another process may have created it while we waited
                    self._create(length, dataset_id, identity)
        meta = _read_store_meta(self.root)
        stored_length = meta["length"]
        if length is not None and length != stored_length:
            raise StoreError(
                f"length should be the store's dataset length {stored_length}, but got length={length}; "
                f"the store at {str(self.root)!r} holds scores for another dataset (use another folder)"
            )
        if dataset_id is not None and dataset_id != meta["dataset_id"]:
            raise StoreError(
                f"dataset_id should be the store's {meta['dataset_id']!r}, but got dataset_id={dataset_id!r}; "
                "use another folder for another dataset"
            )
        self.length: int = stored_length
        self.dataset_id: str | None = meta["dataset_id"]
        self.uid: str = str(meta["uid"])
        if identity is not None:
            self.match_dataset(identity)

    # -- creation and identity -----------------------------------------------------------------
    def _create(self, length: int, dataset_id: str | None, identity: DatasetIdentity | None) -> None:
        """Write a new store (the caller holds the lock): the manifest first, ``store.json`` last."""
        leftovers = [
            p.name for p in self.root.iterdir() if not p.name.startswith(".") and not re.fullmatch(r"samples-[0-9a-f]+\.json", p.name)
        ]
        if leftovers:
            raise StoreError(
                f"root should be an empty folder or a score store, but got {str(self.root)!r} "
                f"holding {sorted(leftovers)[:5]} and no store.json "
                "(a store whose store.json was deleted is never re-adopted: its scores may belong to another dataset); "
                "use another folder or delete this one"
            )
        meta = {
            "format": _STORE_FORMAT,
            "version": _VERSION,
            "length": length,
            "dataset_id": dataset_id,
            "uid": uuid.uuid4().hex,
            "identity": None,
        }
        if identity is not None:
            meta["identity"] = self._write_manifest(identity)
        _write_json_atomic(self.root / "store.json", meta)

    def _write_manifest(self, identity: DatasetIdentity) -> dict[str, str]:
        name = f"samples-{identity.digest[:16]}.json"
        _write_json_atomic(self.root / name, identity.manifest())
        return {"kind": identity.kind, "digest": identity.digest, "manifest": name}

    def _read_manifest(self, record: dict[str, str]) -> DatasetIdentity:
        path = self.root / record["manifest"]
        try:
            identity = DatasetIdentity.from_manifest(_read_json(path, "the store's sample manifest"))
        except ValueError as error:
            if isinstance(error, StoreError):
                raise
            raise StoreError(f"the sample manifest {str(path)!r} should match store.json, but got {error}; {_REBUILD}") from error
        if identity.digest != record["digest"] or identity.kind != record["kind"] or identity.length != self.length:
            raise StoreError(
                f"the sample manifest {str(path)!r} should have the digest {record['digest'][:16]} and length {self.length} of store.json, "
                f"but got digest {identity.digest[:16]} and length {identity.length}; {_REBUILD}"
            )
        return identity

    @property
    def identity(self) -> DatasetIdentity | None:
        """The recorded :class:`~qualoader.data.identity.DatasetIdentity` (read from the manifest), or ``None``."""
        record = _read_store_meta(self.root)["identity"]
        return None if record is None else self._read_manifest(record)  # read each time: another process may record keys

    def keys(self) -> tuple[str, ...] | None:
        """Per-sample keys: relative file paths for folder datasets, user keys, or ``None`` when not recorded."""
        identity = self.identity
        return None if identity is None else identity.keys

    def match_dataset(self, identity: DatasetIdentity) -> np.ndarray:
        """Check that ``identity`` is this store's dataset; drop the scores of changed samples.

        Under the store lock: equal identities pass; a folder whose files are the same paths in the
        same order but some rewritten or touched gets those samples' scores dropped from every
        table (they are rescored) and the new manifest recorded; a store without identity adopts
        ``identity``. Everything else is refused.

        Args:
            identity: the dataset's identity (``identify_dataset(dataset)``).

        Returns:
            The indices whose scores were dropped, int64 :math:`(M,)` (also kept in ``self.rescored``).

        Raises:
            StoreError: another dataset (the message says how it differs).
        """
        check_type(identity, "identity", DatasetIdentity, "a DatasetIdentity")
        if identity.length != self.length:
            raise StoreError(
                f"the dataset should have the store's {self.length} samples, but got {identity.length}; "
                f"the store at {str(self.root)!r} holds scores for another dataset (use another folder)"
            )
        with store_lock(self.root):
            meta = _read_store_meta(self.root)
            record = meta["identity"]
            self.rescored = np.empty(0, dtype=np.int64)
            if record is not None and record["digest"] == identity.digest and record["kind"] == identity.kind:
                if identity.kind == "files" or identity.keys is None:
                    return self.rescored
                stored = self._read_manifest(record)  # user keys are labels outside the digest: compare them
                if stored.keys == identity.keys:
                    return self.rescored
                if stored.keys is not None:
                    first = next(i for i, (a, b) in enumerate(zip(stored.keys, identity.keys)) if a != b)
                    raise StoreError(
                        f"keys should be the store's recorded sample keys, but got keys[{first}]={identity.keys[first]!r} "
                        f"where the store at {str(self.root)!r} has {stored.keys[first]!r}"
                    )
                # same data, keys given for the first time: recorded below (same manifest name, replaced atomically)
            tables = self.tables()
            if record is None or record["digest"] == identity.digest:
                # no identity yet (made by ScoreStore(root, length): any scores in it were written directly
                # by the caller, whose claim is that they belong to the first dataset used with it), or new keys
                changed = np.empty(0, dtype=np.int64)
            else:
                stored = self._read_manifest(record)
                found = stored.changed_samples(identity)
                if found is None:
                    raise StoreError(
                        f"the dataset should be the store's ({stored.describe()}), but got another dataset ({identity.describe()}"
                        f"{self._difference(stored, identity)}); the store at {str(self.root)!r} holds scores for other data: "
                        "use another folder, or delete this one to rescore"
                    )
                changed = found
                for table in tables:
                    table.invalidate(changed)  # before the new manifest: a crash in between re-finds the same change
            meta["identity"] = self._write_manifest(identity)
            _write_json_atomic(self.root / "store.json", meta)
            if record is not None and record["manifest"] != meta["identity"]["manifest"]:
                (self.root / record["manifest"]).unlink(missing_ok=True)
            self.rescored = changed
            return changed

    @staticmethod
    def _difference(stored: DatasetIdentity, given: DatasetIdentity) -> str:
        if stored.kind != given.kind:
            return f"; identified by {given.kind}, the store by {stored.kind}"
        if stored.kind == "files" and stored.keys is not None and given.keys is not None:
            old, new = set(stored.keys), set(given.keys)
            added, removed = sorted(new - old), sorted(old - new)
            parts = []
            if added:
                parts.append(f"{len(added)} file(s) added, e.g. {added[0]!r}")
            if removed:
                parts.append(f"{len(removed)} file(s) removed, e.g. {removed[0]!r}")
            if not parts:
                parts.append("the same files in another order")
            return "; " + ", ".join(parts)
        return ""

    # -- tables --------------------------------------------------------------------------------
    def table(self, metric: QualityMetric, *, create: bool = False) -> ScoreTable:
        """The table of ``metric``'s exact configuration (by ``metric.fingerprint()``).

        Args:
            metric: the metric whose scores are wanted.
            create: create an empty table when there is none (otherwise raise).

        Raises:
            TypeError: ``metric`` is not a :class:`QualityMetric`.
            LookupError: no table for this configuration and ``create=False``; the message lists
                the configurations the store holds for the same metric name.
            StoreError: the table on disk is corrupt or its header disagrees with its folder name or store.
            OSError: the disk is full while creating the table (no partial table is left).
        """
        check_type(metric, "metric", QualityMetric, "a QualityMetric")
        fingerprint = metric.fingerprint()
        path = self.root / _table_dirname(metric.name, fingerprint)
        if not path.exists():
            if not create:
                others = [t for t in self.tables() if t.metric_name == metric.name]
                held = "; ".join(f"fingerprint {t.fingerprint} with config {t.config} ({t.num_scored}/{t.length} scored)" for t in others)
                raise LookupError(
                    f"store should hold scores for metric {metric.name!r} with fingerprint {fingerprint} (config {metric.get_config()}), "
                    f"but got none at {str(self.root)!r}"
                    + (f"; it holds other configurations of {metric.name!r}: {held}" if held else "")
                    + "; pass create=True (or run precompute) to score this configuration"
                )
            calibration = metric.calibration
            header = {
                "format": _TABLE_FORMAT,
                "version": _VERSION,
                "metric": metric.name,
                "fingerprint": fingerprint,
                "config": json.loads(json.dumps(metric.get_config(), sort_keys=True, default=str)),
                "higher_is_better": bool(metric.higher_is_better),
                "calibration": calibration.state_dict() if calibration is not None and hasattr(calibration, "state_dict") else None,
                "length": self.length,
                "dataset_id": self.dataset_id,
                "store_uid": self.uid,
            }
            with store_lock(self.root):
                if not path.exists():  # a concurrent creator may have won while we waited
                    ScoreTable._create(path, json.loads(json.dumps(header, default=str)))
        table = ScoreTable(path)
        self._check_table(table, path)
        table.check_metric(metric)
        return table

    def _check_table(self, table: ScoreTable, path: Path) -> None:
        if path.name != _table_dirname(table.metric_name, table.fingerprint):
            raise StoreError(
                f"the table folder name should match its header ({table.metric_name}, {table.fingerprint}), "
                f"but got folder {str(path)!r}; {_REBUILD}"
            )
        if table.header["store_uid"] != self.uid or table.length != self.length:
            raise StoreError(
                f"the table at {str(path)!r} should belong to this store (uid {self.uid}, {self.length} samples), "
                f"but got store_uid={table.header['store_uid']!r}, length={table.length}; {_REBUILD}"
            )

    def tables(self) -> list[ScoreTable]:
        """Every table in the store, sorted by folder name.

        Raises:
            StoreError: a table is corrupt or disagrees with the store.
        """
        out = []
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and not path.name.startswith("."):
                table = ScoreTable(path)
                self._check_table(table, path)
                out.append(table)
        return out

    # -- export --------------------------------------------------------------------------------
    def to_columns(self) -> dict[str, Any]:
        """One column per field, one row per sample (see :func:`qualoader.data.export.store_columns`)."""
        from qualoader.data.export import store_columns

        return store_columns(self)

    def to_pandas(self) -> pandas.DataFrame:
        """The scores as a pandas DataFrame, one row per sample (needs ``pandas``: ``pip install 'qualoader[export]'``).

        Columns: ``index``, ``path`` (folder datasets) or ``key``, then per metric configuration
        ``<metric>`` (the score, NaN where not scored or skipped) and ``<metric>_difficulty`` (NaN
        when the table has no calibration); see :func:`qualoader.data.export.store_columns`.
        """
        from qualoader.data.export import store_to_pandas

        return store_to_pandas(self)

    def to_arrow(self) -> pyarrow.Table:
        """The scores as a pyarrow Table, columns as in :meth:`to_pandas` (needs ``pyarrow``)."""
        from qualoader.data.export import store_to_arrow

        return store_to_arrow(self)

    def __repr__(self) -> str:
        return f"ScoreStore({str(self.root)!r}, length={self.length}, dataset_id={self.dataset_id!r})"
