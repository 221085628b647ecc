"""Persistent per-sample score store: one numpy memmap per metric fingerprint, keyed by sample index.

Layout of a store folder (``length`` = number of samples of the dataset)::

    root/
      store.json                      {"format": "qualoader.score_store", "length": N, "dataset_id": ...}
      <metric>-<fingerprint>/         one ScoreTable per metric configuration
        header.json                   metric name, fingerprint, config, calibration, length
        scores.npy                    float64 (N,), the scores
        scored.npy                    uint8 (N,), 1 where the score is valid

Guarantees:

* **No stale scores.** A table is found by ``metric.fingerprint()`` (name, config, weights and
  calibration), so a changed metric never reads another configuration's scores: it gets its own
  table. :meth:`ScoreStore.table` without ``create=True`` raises a :class:`LookupError` that lists
  the configurations the store does hold. Every header is checked against the folder it lives in
  and against the arrays' shapes; a mismatch or a corrupt file raises :class:`StoreError`.
* **Atomic writes.** Headers are written to a temporary file then ``os.replace``-d; a new table is
  built in a temporary folder then renamed into place. :meth:`ScoreTable.write` writes and flushes
  the scores *before* it sets and flushes their ``scored`` flags, so a crash can leave a computed
  score unflagged (it is recomputed) but never a flag without its score.
* **Concurrent readers.** Arrays are mapped lazily, once per process (a table pickled into
  DataLoader workers re-opens its files there), read-only unless the process writes. Readers see
  the writer's scores through the shared page cache. One writer per table at a time (the main
  process); writers to different indices do not corrupt each other but are not coordinated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from qualoader._validation import check_positive_int, check_type
from qualoader.metrics.base import QualityMetric

__all__ = ["ScoreStore", "ScoreTable", "StoreError"]

_STORE_FORMAT = "qualoader.score_store"
_TABLE_FORMAT = "qualoader.score_table"
_VERSION = 1
_HEADER_KEYS = frozenset({"format", "version", "metric", "fingerprint", "config", "higher_is_better", "calibration", "length", "dataset_id"})
_REBUILD = "delete that folder to rebuild it"


class StoreError(ValueError):
    """A score store or table is corrupt, or does not match the dataset or metric it is used with."""


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(payload, file, indent=1, sort_keys=True, default=str)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


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


class ScoreTable:
    """Scores of one metric configuration for every sample of one dataset (see module docs).

    Open an existing table with ``ScoreTable(path)``; :meth:`ScoreStore.table` creates them.

    Args:
        path: the table folder (holding ``header.json``, ``scores.npy``, ``scored.npy``).

    Raises:
        StoreError: missing or corrupt header or arrays, or a header that does not match its arrays.

    Example:
        >>> table = ScoreStore("scores", length=100).table(metric, create=True)
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
            raise StoreError(f"the table header should have a positive int length, but got length={length!r} in {str(self.path)!r}; {_REBUILD}")
        self.header: dict[str, Any] = header
        self._maps: tuple[int, bool, np.ndarray, np.ndarray, np.memmap, np.memmap] | None = None
        self._arrays(writable=False)  # fail now, in the constructing process, on corrupt arrays

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
        """``metric.calibration.state_dict()`` when the metric had a calibration, else ``None``."""
        return self.header["calibration"]

    # -- arrays --------------------------------------------------------------------------------
    def _open_array(self, name: str, dtype: np.dtype, writable: bool) -> np.ndarray:
        path = self.path / name
        try:
            array = np.load(path, mmap_mode="r+" if writable else "r", allow_pickle=False)
        except FileNotFoundError as error:
            raise StoreError(f"the table should have {name}, but got no file {str(path)!r}; {_REBUILD}") from error
        except (ValueError, OSError, EOFError) as error:
            raise StoreError(f"{name} should be a readable .npy array, but got a corrupt file {str(path)!r} ({error}); {_REBUILD}") from error
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

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}

    def read(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        """Scores and validity of some samples.

        Args:
            indices: integer indices :math:`(K,)` (tensor, numpy array or sequence).

        Returns:
            ``(scores, scored)``: float64 :math:`(K,)` with NaN where not scored, and bool :math:`(K,)`.
        """
        index = _as_indices(indices, self.length)
        scores, scored = self._arrays(writable=False)
        valid = scored[index].astype(bool)
        return np.where(valid, scores[index], np.nan), valid

    def get(self, index: int) -> float | None:
        """Score of one sample, or ``None`` when it has not been scored yet."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < self.length:
            raise ValueError(f"index should be an int in [0, {self.length}), but got index={index!r}")
        maps = self._maps
        if maps is None or maps[0] != os.getpid():
            self._arrays(writable=False)
            maps = self._maps
            assert maps is not None
        return float(maps[2][index]) if maps[3][index] else None

    def write(self, indices: Any, values: Any) -> None:
        """Store scores (scores flushed before their flags are set and flushed).

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
        self._arrays(writable=True)
        assert self._maps is not None
        scores, scored = self._maps[4], self._maps[5]
        scores[index] = array
        scores.flush()
        scored[index] = 1
        scored.flush()

    def scores(self) -> np.ndarray:
        """A copy of every score, float64 :math:`(N,)`, NaN where not scored."""
        scores, scored = self._arrays(writable=False)
        return np.where(scored.astype(bool), scores, np.nan)

    def scored(self) -> np.ndarray:
        """A copy of the validity mask, bool :math:`(N,)`."""
        return self._arrays(writable=False)[1].astype(bool)

    def missing(self) -> np.ndarray:
        """Indices not scored yet, int64 :math:`(M,)`, ascending."""
        return np.flatnonzero(~self.scored()).astype(np.int64)

    @property
    def num_scored(self) -> int:
        """How many samples have a score."""
        return int(np.count_nonzero(self._arrays(writable=False)[1]))

    @property
    def complete(self) -> bool:
        """Whether every sample has a score."""
        return self.num_scored == self.length

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
        return f"ScoreTable({str(self.path)!r}, metric={self.metric_name!r}, fingerprint={self.fingerprint!r}, scored={self.num_scored}/{self.length})"

    # -- creation ------------------------------------------------------------------------------
    @classmethod
    def _create(cls, path: Path, header: dict[str, Any]) -> ScoreTable:
        """Build the table in a temporary folder and rename it to ``path`` (atomic; a concurrent creator wins)."""
        temp = path.parent / f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        temp.mkdir(parents=True)
        try:
            length = int(header["length"])
            scores = np.lib.format.open_memmap(temp / "scores.npy", mode="w+", dtype=np.float64, shape=(length,))
            scores[:] = np.nan
            scores.flush()
            scored = np.lib.format.open_memmap(temp / "scored.npy", mode="w+", dtype=np.uint8, shape=(length,))
            scored.flush()
            del scores, scored
            _write_json_atomic(temp / "header.json", header)
            try:
                os.rename(temp, path)
            except OSError:
                if not (path / "header.json").exists():
                    raise
        finally:
            if temp.exists():
                shutil.rmtree(temp, ignore_errors=True)
        return cls(path)


class ScoreStore:
    """A folder of :class:`ScoreTable` s for one dataset of ``length`` samples, one per metric configuration.

    Args:
        root: the store folder; created (with ``store.json``) when it does not exist.
        length: number of samples, ``len(dataset)``. Required to create a store; when opening an
            existing one it is checked (``None`` accepts the stored length).
        dataset_id: optional identifier of the dataset (e.g. a hash of its file list), stored at
            creation and checked when given.

    Raises:
        StoreError: ``store.json`` is corrupt, or ``length`` / ``dataset_id`` differ from the stored ones.
        ValueError: creating a store without ``length``.

    Example:
        >>> store = ScoreStore("runs/scores", length=len(dataset))
        >>> table = store.table(create_metric("sharpness"), create=True)
        >>> store.tables()
        [ScoreTable('runs/scores/sharpness-...', metric='sharpness', ...)]
    """

    def __init__(self, root: str | os.PathLike[str], length: int | None = None, *, dataset_id: str | None = None) -> None:
        check_type(root, "root", (str, os.PathLike), "a folder path (str or os.PathLike)")
        if length is not None:
            check_positive_int(length, "length")
        if dataset_id is not None:
            check_type(dataset_id, "dataset_id", str, "a str or None")
        self.root = Path(root)
        meta_path = self.root / "store.json"
        if meta_path.exists():
            meta = _read_json(meta_path, "the store header")
            stored_length = meta.get("length")
            if meta.get("format") != _STORE_FORMAT or meta.get("version") != _VERSION or isinstance(stored_length, bool) or not isinstance(stored_length, int):
                raise StoreError(f"the store header should be a {_STORE_FORMAT} version {_VERSION} header, but got {str(meta_path)!r} with {meta}; {_REBUILD}")
            if length is not None and length != stored_length:
                raise StoreError(
                    f"length should be the store's dataset length {stored_length}, but got length={length}; "
                    f"the store at {str(self.root)!r} holds scores for another dataset (use another folder)"
                )
            if dataset_id is not None and dataset_id != meta.get("dataset_id"):
                raise StoreError(f"dataset_id should be the store's {meta.get('dataset_id')!r}, but got dataset_id={dataset_id!r}; use another folder for another dataset")
            self.length: int = stored_length
            self.dataset_id: str | None = meta.get("dataset_id")
        else:
            if length is None:
                raise ValueError(f"length should be given to create a new store, but got length=None and no store at {str(self.root)!r}")
            self.root.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(meta_path, {"format": _STORE_FORMAT, "version": _VERSION, "length": length, "dataset_id": dataset_id})
            self.length, self.dataset_id = length, dataset_id

    def table(self, metric: QualityMetric, *, create: bool = False) -> ScoreTable:
        """The table of ``metric``'s exact configuration (by ``metric.fingerprint()``).

        Args:
            metric: the metric whose scores are wanted.
            create: create an empty table when there is none (otherwise raise).

        Raises:
            TypeError: ``metric`` is not a :class:`QualityMetric`.
            LookupError: no table for this configuration and ``create=False``; the message lists
                the configurations the store holds for the same metric name.
            StoreError: the table on disk is corrupt or its header disagrees with its folder name.
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
                    f"but got none at {str(self.root)!r}" + (f"; it holds other configurations of {metric.name!r}: {held}" if held else "")
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
            }
            ScoreTable._create(path, json.loads(json.dumps(header, default=str)))
        table = ScoreTable(path)
        self._check_table(table, path)
        table.check_metric(metric)
        return table

    def _check_table(self, table: ScoreTable, path: Path) -> None:
        if path.name != _table_dirname(table.metric_name, table.fingerprint):
            raise StoreError(f"the table folder name should match its header ({table.metric_name}, {table.fingerprint}), but got folder {str(path)!r}; {_REBUILD}")
        if table.length != self.length:
            raise StoreError(f"the table at {str(path)!r} should hold {self.length} samples like its store, but got length={table.length}; {_REBUILD}")

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

    def __repr__(self) -> str:
        return f"ScoreStore({str(self.root)!r}, length={self.length}, dataset_id={self.dataset_id!r})"
