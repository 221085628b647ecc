"""Dataset identity for score stores: which dataset a store's scores belong to, and which samples changed.

A :class:`DatasetIdentity` is built from content, never from a folder name or a length alone:

* **Folder datasets** (torchvision ``ImageFolder`` / ``DatasetFolder``, optionally inside
  ``Subset`` s): a manifest of every file's path relative to the dataset root, size and
  modification time (nanoseconds). Its digest changes when any file is added, removed, renamed,
  rewritten or touched; comparing two manifests with the same paths names exactly the samples
  whose files changed.
* **In-memory datasets** with a user-given ``dataset_id``: the id (a version string you control,
  e.g. ``"cifar10-train-v2"``).
* **Other in-memory datasets**: a sampled content hash: the first, the last and ``num_samples``
  seeded random samples, their image tensors' dtype, shape and bytes. A guard, not a proof: an edit
  to an unsampled item goes unseen, so pass ``dataset_id`` for data that is edited in place. The
  random number generators are seeded (and restored afterwards) while sampling, so random
  augmentations give the same hash on every run.

Example:
    >>> from torch.utils.data import TensorDataset
    >>> identity = identify_dataset(TensorDataset(torch.zeros(4, 1, 8, 8)))
    >>> identity.kind, identity.length
    ('content', 4)
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qualoader._validation import check_positive_int, check_type
from qualoader.data._samples import folder_files, load_image_tensor

__all__ = ["IDENTITY_KINDS", "DatasetIdentity", "identify_dataset"]

#: ``files``: folder manifest; ``id``: a user-given dataset id; ``content``: sampled content hash.
IDENTITY_KINDS = frozenset({"content", "files", "id"})


def _digest(kind: str, length: int, parts: Sequence[bytes]) -> str:
    hasher = hashlib.sha256(f"qualoader.dataset_identity\n{kind}\n{length}\n".encode())
    for part in parts:
        # length-prefixed so that no two different part lists hash the same bytes
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return hasher.hexdigest()


@dataclass(frozen=True)
class DatasetIdentity:
    """What a score store knows about its dataset (see the module docs).

    Attributes:
        kind: one of :data:`IDENTITY_KINDS`.
        length: number of samples.
        digest: sha256 hex digest of the content (the manifest for ``files``; the id or the sampled
            bytes otherwise: user keys are labels, recorded but not part of it).
        keys: one key per sample (the relative file path for ``files``; user keys or ``None`` otherwise).
        sizes: file sizes in bytes (``files`` only; ``-1`` for a missing file).
        mtimes_ns: file modification times in nanoseconds (``files`` only; ``-1`` for a missing file).
        root: the folder the ``files`` keys are relative to, where the files can be read now (not part of
            the identity: a copied folder is the same dataset; not in the manifest).
    """

    kind: str
    length: int
    digest: str
    keys: tuple[str, ...] | None = None
    sizes: tuple[int, ...] | None = None
    mtimes_ns: tuple[int, ...] | None = None
    root: str | None = field(default=None, compare=False)

    @staticmethod
    def from_files(
        relative_paths: Sequence[str], sizes: Sequence[int], mtimes_ns: Sequence[int], root: str | None = None
    ) -> DatasetIdentity:
        """The ``files`` identity of a manifest (equal lengths, one entry per sample), its files under ``root`` when known."""
        keys, size, mtime = tuple(map(str, relative_paths)), tuple(map(int, sizes)), tuple(map(int, mtimes_ns))
        if not len(keys) == len(size) == len(mtime):
            raise ValueError(
                f"the manifest should have one size and mtime per path, but got {len(keys)} paths, {len(size)} sizes, {len(mtime)} mtimes"
            )
        # surrogateescape: a file name that is not UTF-8 (os.listdir gives it as lone surrogates) hashes as its own bytes
        parts = [f"{k}\0{s}\0{m}".encode("utf-8", "surrogateescape") for k, s, m in zip(keys, size, mtime)]
        return DatasetIdentity("files", len(keys), _digest("files", len(keys), parts), keys, size, mtime, root)

    @staticmethod
    def from_id(dataset_id: str, length: int, keys: Sequence[str] | None = None) -> DatasetIdentity:
        """The ``id`` identity: a user-given dataset id (and optional per-sample keys, labels only)."""
        key_tuple = None if keys is None else tuple(map(str, keys))
        return DatasetIdentity("id", length, _digest("id", length, [dataset_id.encode()]), key_tuple)

    def manifest(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_manifest` reads back (checked against ``digest``)."""
        return {
            "kind": self.kind,
            "length": self.length,
            "digest": self.digest,
            "keys": self.keys,
            "sizes": self.sizes,
            "mtimes_ns": self.mtimes_ns,
        }

    @staticmethod
    def from_manifest(payload: Any) -> DatasetIdentity:
        """Rebuild an identity from :meth:`manifest`; a ``files`` manifest is re-hashed and must match its digest.

        Raises:
            ValueError: a malformed manifest, or one whose content does not hash to its digest.
        """
        if not isinstance(payload, dict) or payload.get("kind") not in IDENTITY_KINDS or not isinstance(payload.get("digest"), str):
            raise ValueError(
                f"the manifest should be a dict with a kind in {sorted(IDENTITY_KINDS)} and a digest, but got {str(payload)[:200]!r}"
            )
        keys = payload.get("keys")
        if payload["kind"] == "files":
            rebuilt = DatasetIdentity.from_files(keys or (), payload.get("sizes") or (), payload.get("mtimes_ns") or ())
            if rebuilt.digest != payload["digest"] or rebuilt.length != payload.get("length"):
                raise ValueError(
                    f"the file manifest should hash to its digest {payload['digest']}, but got {rebuilt.digest} (a corrupt manifest)"
                )
            return rebuilt
        length = payload.get("length")
        if isinstance(length, bool) or not isinstance(length, int) or (keys is not None and len(keys) != length):
            raise ValueError(f"the manifest should have an int length and one key per sample, but got length={length!r}")
        return DatasetIdentity(payload["kind"], length, payload["digest"], None if keys is None else tuple(map(str, keys)))

    def changed_samples(self, other: DatasetIdentity) -> np.ndarray | None:
        """Indices whose file changed between this (older) identity and ``other``, when that can be known.

        Returns:
            int64 :math:`(M,)` ascending (empty when equal), or ``None`` when the two identities are
            not comparable sample by sample: another kind, length or file list (a file added,
            removed or renamed shifts every index after it), or a ``content`` / ``id`` change.
        """
        if self.digest == other.digest and self.kind == other.kind and self.length == other.length:
            return np.empty(0, dtype=np.int64)
        if self.kind != "files" or other.kind != "files" or self.keys != other.keys:
            return None
        assert self.sizes is not None and other.sizes is not None and self.mtimes_ns is not None and other.mtimes_ns is not None
        size_a, size_b = np.asarray(self.sizes, dtype=np.int64), np.asarray(other.sizes, dtype=np.int64)
        time_a, time_b = np.asarray(self.mtimes_ns, dtype=np.int64), np.asarray(other.mtimes_ns, dtype=np.int64)
        return np.flatnonzero((size_a != size_b) | (time_a != time_b)).astype(np.int64)

    def paths(self) -> list[str] | None:
        """Absolute paths of the files (``files`` identities built by :func:`identify_dataset`), else ``None``."""
        if self.kind != "files" or self.root is None or self.keys is None:
            return None
        return [os.path.join(self.root, *key.split("/")) for key in self.keys]

    def difference(self, given: DatasetIdentity) -> str:
        """How ``given`` differs from this (stored) identity, for error messages: ``""`` or ``"; <what>"``."""
        if self.kind != given.kind:
            return f"; identified by {given.kind}, the store by {self.kind}"
        if self.kind == "files" and self.keys is not None and given.keys is not None:
            old, new = set(self.keys), set(given.keys)
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

    def describe(self) -> str:
        """A short human-readable description for error messages."""
        what = {"files": "a folder manifest", "id": "a dataset id", "content": "a sampled content hash"}[self.kind]
        return f"{what} of {self.length} samples (digest {self.digest[:16]})"


def _stat(path: str) -> tuple[int, int]:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return -1, -1  # a vanished file: recorded as changed, its load then names it
    return int(status.st_size), int(status.st_mtime_ns)


def _content_digest(dataset: Any, length: int, image_key: int | str | None, num_samples: int, seed: int) -> str:
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.randint(0, length, (num_samples,), generator=generator).tolist()
    indices = sorted({0, length - 1, *drawn})
    parts: list[bytes] = []
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            for index in indices:
                # the same seed before every item: a random transform draws the same parameters each run
                torch.manual_seed(seed + index)
                random.seed(seed + index)
                np.random.seed((seed + index) % 2**32)
                image = load_image_tensor(dataset, index, image_key)
                array = image.detach().cpu().contiguous().numpy()
                parts.append(f"{index}\0{array.dtype.str}\0{array.shape}".encode())
                parts.append(array.tobytes())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return _digest("content", length, parts)


def identify_dataset(
    dataset: Any,
    *,
    dataset_id: str | None = None,
    keys: Sequence[str] | None = None,
    image_key: int | str | None = None,
    num_samples: int = 32,
    seed: int = 0,
) -> DatasetIdentity:
    """The identity of ``dataset`` (see the module docs for the three kinds).

    Args:
        dataset: a map-style dataset with ``__len__``.
        dataset_id: for in-memory datasets, a user-given id used instead of the content hash
            (folder datasets always get their file manifest; give the store a ``dataset_id`` as well
            to tell apart two transforms of one folder).
        keys: for in-memory datasets, one key per sample (recorded in the store, exported with
            the scores; labels, not part of the digest); folder datasets use their relative file paths.
        image_key: position or key of the image in a sample (content hash only).
        num_samples: random samples hashed besides the first and the last (content hash only).
        seed: seed of the sample draw and of the random generators while loading it.

    Returns:
        A :class:`DatasetIdentity`.

    Raises:
        TypeError: wrong argument types.
        ValueError: an empty dataset, ``keys`` of the wrong length or given for a folder dataset.
        SampleLoadError: a sampled item could not be loaded (content hash only).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> identify_dataset(TensorDataset(torch.zeros(3, 1, 4, 4)), dataset_id="zeros-v1").kind
        'id'
    """
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"dataset should be a map-style Dataset with __getitem__ and __len__, but got dataset of type {type(dataset).__name__}"
        )
    if dataset_id is not None:
        check_type(dataset_id, "dataset_id", str, "a str or None")
    check_positive_int(num_samples, "num_samples", allow_zero=True)
    check_positive_int(seed, "seed", allow_zero=True)
    length = len(dataset)
    if length <= 0:
        raise ValueError(f"dataset should have at least one sample, but got len(dataset)={length}")
    key_tuple = None
    if keys is not None:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence):
            raise TypeError(f"keys should be a sequence of str (one per sample), but got keys of type {type(keys).__name__}")
        key_tuple = tuple(keys)
        if len(key_tuple) != length or not all(isinstance(k, str) for k in key_tuple):
            raise ValueError(f"keys should be {length} str (one per sample), but got {len(key_tuple)} keys")
    files = folder_files(dataset)
    if files is not None:
        if key_tuple is not None:
            raise ValueError("keys should be None for a folder dataset (its keys are its relative file paths), but got keys")
        root, paths = files
        stats = [_stat(path) for path in paths]
        relative = [Path(os.path.relpath(path, root)).as_posix() for path in paths]
        return DatasetIdentity.from_files(relative, [s for s, _ in stats], [m for _, m in stats], str(root))
    if dataset_id is not None:
        return DatasetIdentity.from_id(dataset_id, length, key_tuple)
    digest = _content_digest(dataset, length, image_key, num_samples, seed)
    return DatasetIdentity("content", length, digest, key_tuple)
