"""``ScoreStore``: a persistent folder of per-sample scores, one table per metric fingerprint, keyed by sample index.

Layout of a store folder (``length`` = number of samples of the dataset)::

    root/
      store.json                      format, version, length, dataset_id, uid, identity (written last)
      samples-<digest>.json           the dataset identity: per-sample paths (folders) or keys, sizes, mtimes
      content.npy                     per sample: digest of the bytes its scores came from, size and mtime last matched
      .lock                           fcntl lock file (creation, writes, identity changes)
      <metric>-<fingerprint>/         one ScoreTable per metric configuration
        header.json                   metric, fingerprint, config, calibration at creation, profile name, store's uid/length/id
        scores.npy                    float64 (N,), the scores
        scored.npy                    uint8 (N,): 0 missing, 1 scored, 2 skipped (unreadable sample)
        skipped.json                  why each skipped sample was skipped (index -> message naming its file)

Guarantees:

* **The store knows its dataset.** ``store.json`` records a :class:`~qualoader.data.identity.DatasetIdentity`
  (a folder's manifest of relative paths, sizes and modification times; or a user-given
  ``dataset_id``; or a sampled content hash). :meth:`ScoreStore.match_dataset` (called by
  ``precompute``, :class:`~qualoader.data.QualityDataset` and :class:`~qualoader.data.QualityLoader`)
  compares a dataset with it: the same files in the same order of which some changed get exactly
  those samples' scores dropped from every table before the new manifest is recorded; any other
  difference (files added, removed or renamed, another ``dataset_id``, content hash or length) is a
  :class:`StoreError`. A store made by ``ScoreStore(root, length)`` adopts the first dataset matched.
* **Never stale (folders).** Each sample's record in ``content.npy`` holds the BLAKE2b digest of the
  size and bytes its scores were computed from (hashed by the ``precompute`` workers that read the
  file to decode it). A file with a new mtime but its old size is hashed when matched: the same
  bytes (a copied folder, a ``touch``) keep their scores. ``precompute`` also reads every
  already-scored file once per run and rescores those whose bytes changed with size and mtime
  kept (``trust_mtime=True`` skips that read). Every write is claimed under the lock against the
  record (:mod:`qualoader.data._provenance`): a score read from another version of the file than
  the one the store holds is dropped with that sample's cells, so overlapping runs cannot mix
  versions. Readers given a store between runs trust size and mtime.
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
  not read as a store, and a store that ``precompute`` made is removed again (``store.json`` first)
  when its tables do not fit on the disk. A new table is built in a temporary folder with its arrays preallocated by
  real writes (not a sparse ``truncate``: a full disk then fails the write with an ``OSError``
  instead of a later ``SIGBUS`` in a memory-mapped store; ``content.npy`` too) and renamed into place.
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

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np

from qualoader._validation import check_positive_int, check_type
from qualoader.data._lock import store_lock
from qualoader.data._provenance import Provenance
from qualoader.data._storefiles import (
    REBUILD,
    SCORED,
    SKIPPED,
    STORE_FORMAT,
    TABLE_FORMAT,
    UNSCORED,
    VERSION,
    StoreError,
    disk_error,
    read_json_object,
    read_store_meta,
    table_dirname,
    write_json_atomic,
)
from qualoader.data.identity import DatasetIdentity
from qualoader.data.table import ScoreTable
from qualoader.metrics.base import QualityMetric

__all__ = ["SCORED", "SKIPPED", "UNSCORED", "ScoreStore", "ScoreTable", "StoreError", "store_lock"]


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
        #: indices whose bytes the last match_dataset hashed and found unchanged (a new mtime, the same content)
        self.verified: np.ndarray = np.empty(0, dtype=np.int64)
        #: whether this object created the store (``discard_if_empty`` may then remove it again)
        self.created = False
        if not (self.root / "store.json").exists():
            if length is None:
                raise ValueError(f"length should be given to create a new store, but got length=None and no store at {str(self.root)!r}")
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise disk_error(error, str(self.root)) from error
            with store_lock(self.root):
                if not (self.root / "store.json").exists():  # another process may have created it while we waited
                    self._create(length, dataset_id, identity)
                    self.created = True
        meta = read_store_meta(self.root)
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
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".") and not re.fullmatch(r"samples-[0-9a-f]+\.json|content\.npy", p.name)
        ]
        if leftovers:
            raise StoreError(
                f"root should be an empty folder or a score store, but got {str(self.root)!r} "
                f"holding {sorted(leftovers)[:5]} and no store.json "
                "(a store whose store.json was deleted is never re-adopted: its scores may belong to another dataset); "
                "use another folder or delete this one"
            )
        meta = {
            "format": STORE_FORMAT,
            "version": VERSION,
            "length": length,
            "dataset_id": dataset_id,
            "uid": uuid.uuid4().hex,
            "identity": None,
        }
        if identity is not None and identity.kind == "files":
            # before store.json: a folder's store never lacks its provenance records (other stores make them when first used)
            Provenance.create(self.root / "content.npy", length, identity.sizes, identity.mtimes_ns)
        if identity is not None:
            meta["identity"] = self._write_manifest(identity)
        write_json_atomic(self.root / "store.json", meta)

    def discard_if_empty(self) -> bool:
        """Remove a store this object created while nothing is scored in it (a creation that failed half-way, e.g. a full disk).

        Returns whether it was removed. ``store.json`` goes first, so what is left never reads as a store.
        """
        if not self.created:
            return False
        with store_lock(self.root):
            try:
                tables = self.tables()
            except StoreError:
                return False
            if any(table.num_scored or table.num_skipped for table in tables):
                return False
            (self.root / "store.json").unlink(missing_ok=True)
            for path in self.root.iterdir():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.name != ".lock":  # held open by this lock; an empty .lock does not read as a store
                    path.unlink(missing_ok=True)
        self.created = False
        return True

    @property
    def provenance(self) -> Provenance:
        """The per-sample content records the store's writes are checked against (see :mod:`qualoader.data._provenance`)."""
        return Provenance(self.root, self.length)

    def _write_manifest(self, identity: DatasetIdentity) -> dict[str, str]:
        name = f"samples-{identity.digest[:16]}.json"
        write_json_atomic(self.root / name, identity.manifest())
        return {"kind": identity.kind, "digest": identity.digest, "manifest": name}

    def _read_manifest(self, record: dict[str, str]) -> DatasetIdentity:
        path = self.root / record["manifest"]
        try:
            identity = DatasetIdentity.from_manifest(read_json_object(path, "the store's sample manifest"))
        except ValueError as error:
            if isinstance(error, StoreError):
                raise
            raise StoreError(f"the sample manifest {str(path)!r} should match store.json, but got {error}; {REBUILD}") from error
        if identity.digest != record["digest"] or identity.kind != record["kind"] or identity.length != self.length:
            raise StoreError(
                f"the sample manifest {str(path)!r} should have the digest {record['digest'][:16]} and length {self.length} of store.json, "
                f"but got digest {identity.digest[:16]} and length {identity.length}; {REBUILD}"
            )
        return identity

    @property
    def identity(self) -> DatasetIdentity | None:
        """The recorded :class:`~qualoader.data.identity.DatasetIdentity` (read from the manifest), or ``None``."""
        record = read_store_meta(self.root)["identity"]
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
            meta = read_store_meta(self.root)
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
                        f"{stored.difference(identity)}); the store at {str(self.root)!r} holds scores for other data: "
                        "use another folder, or delete this one to rescore"
                    )
                changed = self._content_changed(stored, identity, found)
                for table in tables:
                    table.invalidate(changed)  # before the new manifest: a crash in between re-finds the same change
            if identity.kind == "files":
                self.provenance.match(changed, identity.sizes or (), identity.mtimes_ns or ())
            meta["identity"] = self._write_manifest(identity)
            write_json_atomic(self.root / "store.json", meta)
            if record is not None and record["manifest"] != meta["identity"]["manifest"]:
                (self.root / record["manifest"]).unlink(missing_ok=True)
            self.rescored = changed
            return changed

    def _content_changed(self, stored: DatasetIdentity, identity: DatasetIdentity, found: np.ndarray) -> np.ndarray:
        """Of the samples whose size or mtime changed (``found``), those whose bytes changed too.

        A file with its old size and a new mtime (a copied folder, a ``touch``) is hashed and kept
        when its bytes are the ones the store's scores were computed from (the sample's recorded
        digest); without a recorded digest, or without the files at hand, it counts as changed.
        """
        paths = identity.paths()
        if paths is None or stored.sizes is None or identity.sizes is None:
            self.verified = np.empty(0, dtype=np.int64)
            return found
        same_size = found[np.asarray(stored.sizes, dtype=np.int64)[found] == np.asarray(identity.sizes, dtype=np.int64)[found]]
        same = same_size[self.provenance.same_content(same_size, paths)]
        self.verified = same
        return np.setdiff1d(found, same).astype(np.int64)

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
        path = self.root / table_dirname(metric.name, fingerprint)
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
                "format": TABLE_FORMAT,
                "version": VERSION,
                "metric": metric.name,
                "fingerprint": fingerprint,
                "config": json.loads(json.dumps(metric.get_config(), sort_keys=True, default=str)),
                "higher_is_better": bool(metric.higher_is_better),
                "calibration": calibration.state_dict() if calibration is not None and hasattr(calibration, "state_dict") else None,
                "length": self.length,
                "dataset_id": self.dataset_id,
                "store_uid": self.uid,
            }
            profile = getattr(metric, "profile", None)
            if profile is not None and isinstance(getattr(profile, "name", None), str):
                header["profile"] = profile.name  # names the export column when two profiles of one metric share the store
            with store_lock(self.root):
                if not path.exists():  # a concurrent creator may have won while we waited
                    ScoreTable._create(path, json.loads(json.dumps(header, default=str)))
        table = ScoreTable(path)
        self._check_table(table, path)
        table.check_metric(metric)
        return table

    def _check_table(self, table: ScoreTable, path: Path) -> None:
        if path.name != table_dirname(table.metric_name, table.fingerprint):
            raise StoreError(
                f"the table folder name should match its header ({table.metric_name}, {table.fingerprint}), "
                f"but got folder {str(path)!r}; {REBUILD}"
            )
        if table.header["store_uid"] != self.uid or table.length != self.length:
            raise StoreError(
                f"the table at {str(path)!r} should belong to this store (uid {self.uid}, {self.length} samples), "
                f"but got store_uid={table.header['store_uid']!r}, length={table.length}; {REBUILD}"
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

    def __repr__(self) -> str:
        return f"ScoreStore({str(self.root)!r}, length={self.length}, dataset_id={self.dataset_id!r})"

