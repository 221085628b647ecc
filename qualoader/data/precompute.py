"""``precompute``: one resumable scoring pass over a dataset that fills a score store."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from qualoader._threads import torch_threads
from qualoader._validation import check_choice, check_positive_int, check_type
from qualoader.data._lock import store_lock
from qualoader.data._provenance import FileDigest, file_digest
from qualoader.data._samples import SampleLoadError, folder_files, image_to_tensor, load_image_tensor
from qualoader.data.dataset import engine_for, metric_list, tables_for
from qualoader.data.store import ScoreStore, ScoreTable
from qualoader.decoding import check_scorable
from qualoader.engine import MetricSpec, ScoringEngine
from qualoader.metrics.base import QualityMetric

__all__ = ["ON_ERROR", "PrefetchedImage", "SkippedSample", "collate_indexed_images", "precompute"]


#: ``on_error`` values: stop at the first unreadable sample, or record it as skipped and go on.
ON_ERROR = frozenset({"raise", "skip"})
#: Passes at most: a file that keeps changing while it is scored is left unscored after this many, not chased forever.
_ROUNDS = 3


def scoring_threads(threads: int | Literal["auto"] | None, decoding_workers: int) -> int | None:
    """torch's intra-op threads for scoring on the CPU while ``decoding_workers`` worker processes decode; ``None``: leave torch's setting.

    ``"auto"``: the cores this process may use, less the workers (at least 1), unless ``OMP_NUM_THREADS``
    is set (the user's choice is kept). Why not torch's default (every core): the workers decode on those
    cores too, and OpenMP threads that wait for a busy core spin; on 2 cores with 2 workers the classical
    suite scored 11x slower with 2 threads than with 1.
    """
    if threads != "auto":
        return threads
    if "OMP_NUM_THREADS" in os.environ:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - decoding_workers)


@dataclass(frozen=True)
class SkippedSample:
    """A sample that could not be read (``on_error="skip"``): its index and the message naming its file."""

    index: int
    reason: str


@dataclass(frozen=True)
class PrefetchedImage:
    """The image of one sample, read before the pass, and the version of the file it was decoded from.

    Attributes:
        image: :math:`(C, H, W)`, what the dataset's sample would give (its transform applied).
        version: the :class:`~qualoader.data._provenance.FileDigest` of the bytes decoded (required for
            folder datasets, whose scores are recorded with it), else ``None``.
    """

    image: Tensor
    version: FileDigest | None = None


class _IndexedImages(Dataset[tuple[int, Any]]):
    """``(index, image (C, H, W))`` pairs of a dataset's samples, or ``(index, SkippedSample)`` (picklable for workers)."""

    def __init__(self, dataset: Dataset[Any], image_key: int | str | None, skip: bool, min_size: int = 1) -> None:
        self.dataset = dataset
        self.image_key = image_key
        self.skip = skip
        self.min_size = min_size  # the metrics' smallest input: a smaller image is its own sample's error

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any]:
        try:
            return index, load_image_tensor(self.dataset, index, self.image_key, self.min_size)
        except SampleLoadError as error:
            if not self.skip:
                raise
            # returned, not raised: a worker's exception would end the whole DataLoader
            return index, SkippedSample(index, str(error))


class _Tasks(Dataset[tuple[int, Any, Any]]):
    """The samples of one pass: ``(index, image or SkippedSample, FileDigest)`` to score, ``(index, None, FileDigest)`` to check.

    The digest of a folder sample's file is computed here, in the worker that reads the file to decode it
    (the decoder's own read then comes from the page cache), so one pass reads each file once from disk.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        image_key: int | str | None,
        skip: bool,
        paths: list[str] | None,
        tasks: list[tuple[int, bool]],
        min_size: int = 1,
    ) -> None:
        self.images = _IndexedImages(dataset, image_key, skip, min_size)
        self.paths = paths
        self.tasks = tasks

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, position: int) -> tuple[int, Any, Any]:
        index, decode = self.tasks[position]
        version = None if self.paths is None else file_digest(self.paths[index])
        return index, self.images[index][1] if decode else None, version


#: A batch of a pass: indices, images, their file versions, skipped samples with their versions, checked-only samples.
_Batch = tuple[Tensor, "Tensor | list[Tensor]", list[Any], list[Any], list[Any]]


def _collate_tasks(items: list[tuple[int, Any, Any]]) -> _Batch:
    """``(index (B,), images, versions of the decoded, [(SkippedSample, version)], [(index, version) checked only])``."""
    decoded = [(i, image) for i, image, _ in items if image is not None]
    index, images, _ = collate_indexed_images([(i, image) for i, image in decoded if not isinstance(image, SkippedSample)])
    versions = [v for _, image, v in items if image is not None and not isinstance(image, SkippedSample)]
    skipped = [(image, v) for _, image, v in items if isinstance(image, SkippedSample)]
    hashed = [(i, v) for i, image, v in items if image is None]
    return index, images, versions, skipped, hashed


def collate_indexed_images(items: list[tuple[int, Any]]) -> tuple[Tensor, Tensor | list[Tensor], list[SkippedSample]]:
    """Collate ``(index, image)`` pairs into indices :math:`(B,)`, images and the skipped samples.

    Returns:
        ``(index, images, skipped)``: int64 indices :math:`(B,)` of the readable samples, their
        images as a stack :math:`(B, C, H, W)` (a list of :math:`(C, H, W)` when sizes differ), and
        the :class:`SkippedSample` s of the batch.
    """
    skipped = [item for _, item in items if isinstance(item, SkippedSample)]
    kept = [(i, image) for i, image in items if not isinstance(image, SkippedSample)]
    index = torch.tensor([i for i, _ in kept], dtype=torch.int64)
    images = [image for _, image in kept]
    if not images:
        return index, [], skipped
    first = images[0]
    if all(image.shape == first.shape and image.dtype == first.dtype for image in images):
        return index, torch.stack(images), skipped
    return index, images, skipped


def precompute(
    dataset: Dataset[Any],
    metric: QualityMetric | None = None,
    store: ScoreStore | ScoreTable | str | os.PathLike[str] | None = None,
    *,
    metrics: MetricSpec | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    image_key: int | str | None = None,
    progress: bool = True,
    on_error: str = "raise",
    dataset_id: str | None = None,
    trust_mtime: bool = False,
    prefetched: Mapping[int, PrefetchedImage] | None = None,
    threads: int | Literal["auto"] | None = None,
) -> ScoreTable | dict[str, ScoreTable]:
    """Score every sample of ``dataset`` that the store does not hold yet, batch by batch.

    Resumable: each batch is written (atomically, see :mod:`qualoader.data.store`) as soon as it is
    scored, and a new run skips the indices already scored, so an interrupted pass (an exception,
    Ctrl-C, SIGTERM, kill -9) resumes where it stopped and ends with the same table as an
    uninterrupted one. The store is matched with the dataset first: files rewritten since the last
    run are rescored, another dataset is refused (see :meth:`ScoreStore.match_dataset`). Workers
    load, decode and hash each file's bytes; scoring runs in this process on ``device``, one
    :class:`~qualoader.engine.ScoringEngine` call per batch. Every write of a folder sample is
    checked, under the store lock, against the file version (size, mtime, digest) the store holds
    for it: a score read from another version (an overlapping run, a file changed mid-run) is
    dropped with that sample's other cells and scored again in a further pass.

    With ``metrics`` (names, ``"a,b,c"``, a suite such as ``"classical"``), each image is decoded
    once for all of them: a sample is loaded when any metric's table lacks it, the engine scores the
    batch for the metrics that lack some of its rows, and each table gets the rows it lacked (so
    adding a metric to an existing store decodes every image once more, and only for it).

    Args:
        dataset: map-style dataset of :math:`N` samples (tuples, dicts or images, as for
            :class:`~qualoader.data.QualityDataset`).
        metric: a no-reference metric; moved to ``device``.
        store: a :class:`ScoreStore` (its table for each metric is created when missing), a
            :class:`ScoreTable` (one metric), or a folder path (a store for ``dataset`` is opened
            or created).
        metrics: several metrics instead of ``metric`` (see :class:`~qualoader.engine.ScoringEngine`).
        batch_size: images per engine call.
        num_workers: DataLoader worker processes for loading.
        device: where to score; ``None`` keeps the metric's device.
        image_key: position (tuples) or key (dicts) of the image in a sample.
        progress: show a tqdm progress bar.
        on_error: ``"raise"``: an unreadable image stops the pass with a
            :class:`~qualoader.data.SampleLoadError` naming its file; ``"skip"``: it is recorded as
            skipped (NaN score, listed by :meth:`ScoreTable.skipped` with the message naming its
            file, counted by :func:`~qualoader.data.describe`) and the pass goes on.
        dataset_id: identifies an in-memory dataset for the store instead of a sampled content
            hash (see :func:`~qualoader.data.identity.identify_dataset`).
        trust_mtime: for folder datasets, ``False`` (default): every run reads the files whose
            scores are stored and checks their bytes (BLAKE2b of size and content) against the
            digest the scores were computed from, so an edit that keeps a file's size and
            modification time is rescored; ``True``: trust size and mtime for those files
            (no read). Files being scored are hashed either way, in the workers that decode them.
        prefetched: ``{index: PrefetchedImage}`` of samples already read (the command line decodes a
            folder's first images while torch is imported): scored in the first pass, before any
            worker starts, without being read again and with the file version each was decoded from.
            One that fails the per-image checks, or lacks a version for a folder sample, is read by
            the workers as any other.
        threads: torch's intra-op threads for scoring on the CPU, restored on return: ``None`` (default)
            leaves torch's setting, an int sets it, ``"auto"`` gives scoring the cores the decoding
            workers leave (all of them while the prefetched images are scored; see :func:`scoring_threads`).

    Returns:
        The filled :class:`ScoreTable` (``table.complete`` is ``True``, skipped samples included,
        unless a file kept changing through three passes: it is then left unscored);
        with ``metrics``, ``{name: table}`` in the order of the metrics (even for one name).

    Raises:
        TypeError: wrong argument types, unsupported sample structure.
        ValueError: a store for another dataset length, images of the wrong shape or range.
        StoreError: a store for another dataset.
        SampleLoadError: an unreadable image with ``on_error="raise"``.

    Example:
        >>> import tempfile
        >>> from torch.utils.data import TensorDataset
        >>> from qualoader.metrics import create_metric
        >>> train = TensorDataset(torch.rand(100, 1, 16, 16))
        >>> table = precompute(train, create_metric("sharpness"), tempfile.mkdtemp(), batch_size=32, progress=False)
        >>> table.scores().shape, table.complete
        ((100,), True)
        >>> tables = precompute(train, metrics="sharpness,noise", store=tempfile.mkdtemp(), progress=False)  # one decode each
        >>> {name: table.complete for name, table in tables.items()}
        {'sharpness': True, 'noise': True}
    """
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"dataset should be a map-style Dataset with __getitem__ and __len__, but got dataset of type {type(dataset).__name__}"
        )
    if metric is None and metrics is None:
        raise ValueError("metric or metrics should be given (the metrics that fill the store), but got metric=None and metrics=None")
    chosen = metric_list(metric, metrics)
    check_positive_int(batch_size, "batch_size")
    check_positive_int(num_workers, "num_workers", allow_zero=True)
    check_type(progress, "progress", bool, "a bool")
    check_choice(on_error, "on_error", ON_ERROR)
    check_type(trust_mtime, "trust_mtime", bool, "a bool")
    if threads != "auto" and threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise (ValueError if isinstance(threads, int) and not isinstance(threads, bool) else TypeError)(
            f"threads should be a positive int, 'auto' or None, but got threads={threads!r}"
        )
    if store is None:
        raise TypeError("store should be a ScoreStore, a ScoreTable or a store folder, but got store=None (precompute fills a store)")
    engine = engine_for(chosen, torch.device(device) if device is not None else chosen[0].device)
    files = folder_files(dataset)
    paths = None if files is None else files[1]
    verify = paths is not None and not trust_mtime
    result: ScoreTable | dict[str, ScoreTable] | None = None
    for attempt in range(_ROUNDS):
        # each round re-matches the folder: files that changed during the previous round are seen and dropped here
        tables = tables_for(store, chosen, dataset, dataset_id=dataset_id, image_key=image_key)
        assert tables is not None
        result = tables if metrics is not None else tables[chosen[0].name]
        root = next(iter(tables.values())).path.parent
        opened = ScoreStore(root)
        first = attempt == 0  # the bytes of already-scored files are checked once per run, and prefetched images used once
        dropped = _run_pass(
            dataset, tables, opened, engine, paths, verify and first, batch_size, num_workers, image_key, on_error, progress,
            prefetched if first else None, threads,
        )
        if not dropped:
            break
    assert result is not None
    return result


def _run_pass(
    dataset: Dataset[Any],
    tables: dict[str, ScoreTable],
    store: ScoreStore,
    engine: ScoringEngine,
    paths: list[str] | None,
    checked: bool,
    batch_size: int,
    num_workers: int,
    image_key: int | str | None,
    on_error: str,
    progress: bool,
    prefetched: Mapping[int, PrefetchedImage] | None = None,
    threads: int | Literal["auto"] | None = None,
) -> int:
    """One pass: decode (and hash) the samples some table lacks, hash the others when ``checked``; the number of cells dropped."""
    length = store.length
    # need[name][i]: sample i is neither scored nor skipped in that metric's table
    need = {name: np.zeros(length, dtype=bool) for name in tables}
    for name, table in tables.items():
        need[name][table.missing()] = True
    union = np.logical_or.reduce(list(need.values()))
    missing = np.flatnonzero(union)
    min_size = max(metric.min_size for metric in engine.metrics.values())
    early = _usable(prefetched or {}, missing, paths is not None, min_size)
    tasks = [(int(i), True) for i in missing if int(i) not in early]
    if checked:
        tasks += [(int(i), False) for i in np.flatnonzero(~union)]  # after the decodes: batches of scoring stay full
    if not tasks and not early:
        return 0
    loader = None
    if tasks:
        loader = DataLoader(
            # the metrics' smallest input, checked per image: a smaller one is its own sample's error, not its batch's
            _Tasks(dataset, image_key, on_error == "skip", paths, tasks, min_size),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=_collate_tasks,
            pin_memory=engine.device.type == "cuda",
        )
    on_cpu = engine.device.type == "cpu"
    # the prefetched images first: no worker decodes yet, so "auto" gives their scoring every core
    phases = [(_prefetched_batches(early, batch_size), scoring_threads(threads, 0) if on_cpu else None)]
    if loader is not None:
        phases.append((loader, scoring_threads(threads, num_workers) if on_cpu else None))
    dropped = 0
    label = ",".join(engine.names) if len(engine.names) <= 3 else f"{len(engine.names)} metrics"
    with tqdm(total=length, initial=length - missing.size, disable=not progress, unit="img", desc=f"precompute {label}") as bar:
        for batches, phase_threads in phases:
            with torch_threads(phase_threads):
                for batch in batches:
                    dropped += _score_and_store(batch, tables, need, store, engine, paths is not None)
                    bar.update(int(batch[0].shape[0]) + len(batch[3]))
    return dropped


def _score_and_store(
    batch: _Batch, tables: dict[str, ScoreTable], need: dict[str, np.ndarray], store: ScoreStore, engine: ScoringEngine, folder: bool
) -> int:
    """Score one batch for the tables that lack its rows, store what the claim of its file versions allows; the cells dropped."""
    index, images, versions, skipped, hashed = batch
    provenance = store.provenance
    dropped = 0
    if hashed:
        dropped += provenance.verify([i for i, _ in hashed], [v for _, v in hashed], store.tables).size
    scores = {}
    if index.numel():
        rows = {name: torch.from_numpy(need[name][index.numpy()]) for name in tables}
        todo = [name for name in tables if bool(rows[name].any())]
        scores = engine.score(images, todo, difficulty=False).scores
    with store_lock(store.root):  # the claim and the writes it allows are one step for other processes
        if folder and index.numel():
            ok = torch.from_numpy(provenance.claim(index, versions, store.tables))
            dropped += int((~ok).sum())
        else:
            ok = torch.ones(index.shape, dtype=torch.bool)
        for name, values in scores.items():
            # a table gets only the rows it lacked: rows another run already stored stay as they are
            keep = rows[name] & ok
            tables[name].write(index[keep], values[keep])
        _write_skipped(tables, need, skipped, provenance if folder else None, store)
    return dropped


def _usable(prefetched: Mapping[int, PrefetchedImage], missing: np.ndarray, folder: bool, min_size: int) -> dict[int, PrefetchedImage]:
    """The prefetched images of samples this pass decodes that pass the checks a worker's decode would make."""
    usable = {}
    for index in set(prefetched).intersection(missing.tolist()):
        item = prefetched[index]
        if folder and item.version is None:
            continue  # its score could not be recorded with the file version it came from
        try:
            image = check_scorable(image_to_tensor(item.image, f"dataset[{index}] image"), f"dataset[{index}] image", min_size=min_size)
        except (TypeError, ValueError):
            continue  # read again by a worker, whose error names the file
        usable[index] = PrefetchedImage(image, item.version)
    return usable


def _prefetched_batches(early: dict[int, PrefetchedImage], batch_size: int) -> Iterator[_Batch]:
    """The prefetched images in batches of the workers' form (see :func:`_collate_tasks`), in index order."""
    order = sorted(early)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        index, images, _ = collate_indexed_images([(i, early[i].image) for i in chunk])
        yield index, images, [early[i].version for i in chunk], [], []


def _write_skipped(
    tables: dict[str, ScoreTable], need: dict[str, np.ndarray], skipped: list[tuple[SkippedSample, Any]], provenance: Any, store: ScoreStore
) -> None:
    """Record unreadable samples in the tables that lacked them (claimed like scores: a later fix of the file is seen)."""
    if not skipped:
        return
    ok = [True] * len(skipped)
    if provenance is not None:
        # a file that cannot even be opened has no version to claim: it is recorded as skipped all the same
        claimed = provenance.claim([s.index for s, _ in skipped], [v for _, v in skipped], store.tables).tolist()
        ok = [keep or version is None for keep, (_, version) in zip(claimed, skipped)]
    for name, table in tables.items():
        lacking = [s for (s, _), keep in zip(skipped, ok) if keep and need[name][s.index]]
        if lacking:
            table.skip([s.index for s in lacking], [s.reason for s in lacking])
