"""``ScoreTable``: the scores of one metric configuration for every sample of a store's dataset.

A table folder holds ``header.json`` (metric, fingerprint, config, calibration at creation, and the
store's uid, length and dataset id, cross-checked), ``scores.npy`` (float64), ``scored.npy`` (uint8
flags) and ``skipped.json``; see :mod:`qualoader.data.store` for the guarantees.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from qualoader._atomic import fsync_folder
from qualoader.data._lock import store_lock
from qualoader.data._storefiles import (
    HEADER_KEYS,
    REBUILD,
    SCORED,
    SKIPPED,
    TABLE_FORMAT,
    UNSCORED,
    VERSION,
    StoreError,
    allocate,
    as_indices,
    disk_error,
    read_json_object,
    read_store_meta,
    write_filled_npy,
    write_json_atomic,
)
from qualoader.metrics.base import QualityMetric

__all__ = ["ScoreTable"]


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
        >>> from qualoader.data import ScoreStore
        >>> from qualoader.metrics import create_metric
        >>> table = ScoreStore(tempfile.mkdtemp(), length=3).table(create_metric("sharpness"), create=True)
        >>> table.write([0, 1], [0.5, 0.75])
        >>> table.read([0, 1, 2])
        (array([0.5 , 0.75,  nan]), array([ True,  True, False]))
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        header = read_json_object(self.path / "header.json", "the table header")
        # "profile" (the name of the quality profile that scored it) is optional: tables made before it have none
        if header.get("format") != TABLE_FORMAT or header.get("version") != VERSION or set(header) - {"profile"} != HEADER_KEYS:
            raise StoreError(
                f"the table header should be a {TABLE_FORMAT} version {VERSION} header with keys {sorted(HEADER_KEYS)}, "
                f"but got {str(self.path / 'header.json')!r} with format={header.get('format')!r}, version={header.get('version')!r}, "
                f"keys={sorted(header)}; {REBUILD}"
            )
        length = header["length"]
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise StoreError(
                f"the table header should have a positive int length, but got length={length!r} in {str(self.path)!r}; {REBUILD}"
            )
        self.header: dict[str, Any] = header
        self._check_store(read_store_meta(self.path.parent))
        self._maps: tuple[int, bool, np.ndarray, np.ndarray, np.memmap, np.memmap] | None = None
        self._arrays(writable=False)  # fail now, in the constructing process, on corrupt arrays

    def _check_store(self, meta: dict[str, Any]) -> None:
        """Cross-check this header against its store's ``store.json``."""
        for key, store_key in (("store_uid", "uid"), ("length", "length"), ("dataset_id", "dataset_id")):
            if self.header[key] != meta[store_key]:
                raise StoreError(
                    f"the table header's {key} should be the store's {store_key}={meta[store_key]!r}, but got {key}={self.header[key]!r} "
                    f"in {str(self.path / 'header.json')!r} (a table of another store or dataset); {REBUILD}"
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
    def profile_name(self) -> str | None:
        """The name of the quality profile whose metric wrote the scores (as ``profile show`` prints it), else ``None``."""
        name = self.header.get("profile")
        return name if isinstance(name, str) else None

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
        if writable:
            allocate(path)
        try:
            array = np.load(path, mmap_mode="r+" if writable else "r", allow_pickle=False)
        except FileNotFoundError as error:
            raise StoreError(f"the table should have {name}, but got no file {str(path)!r}; {REBUILD}") from error
        except (ValueError, OSError, EOFError) as error:
            raise StoreError(
                f"{name} should be a readable .npy array, but got a corrupt file {str(path)!r} ({error}); {REBUILD}"
            ) from error
        if array.shape != (self.length,) or array.dtype != dtype:
            raise StoreError(
                f"{name} should hold {dtype} ({self.length},) as its header says, but got {array.dtype} {array.shape} "
                f"in {str(path)!r}; {REBUILD}"
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
        index = as_indices(indices, self.length)
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
        index = as_indices(indices, self.length)
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
        index = as_indices(indices, self.length)
        if len(reasons) != index.size:
            raise ValueError(f"reasons should have one message per index ({index.size}), but got {len(reasons)} reasons")
        if index.size == 0:
            return
        with store_lock(self.path.parent):
            known = self._skip_reasons()
            known.update({str(int(i)): str(r) for i, r in zip(index, reasons)})
            write_json_atomic(self.path / "skipped.json", known)  # reasons first: a flag never lacks its reason
            scores, scored = self._writable()
            scores[index] = np.nan
            scores.flush()
            scored[index] = SKIPPED
            scored.flush()

    def invalidate(self, indices: Any) -> None:
        """Forget the scores of some samples (they become missing and are scored again), under the store lock."""
        index = as_indices(indices, self.length)
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
        return read_json_object(path, "the skipped-samples list") if path.exists() else {}

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
            write_filled_npy(temp / "scores.npy", np.dtype(np.float64), length, np.nan)
            write_filled_npy(temp / "scored.npy", np.dtype(np.uint8), length, UNSCORED)
            write_json_atomic(temp / "header.json", header)
            os.rename(temp, path)
            fsync_folder(path.parent)
        except OSError as error:
            raise disk_error(error, f"the score table {str(path)!r}") from error
        finally:
            if temp.exists():
                shutil.rmtree(temp, ignore_errors=True)

