"""Resumable webdataset streams: report and restore the position (shard, sample offset).

* :func:`track_position` is a stage placed right after the tar reader. It numbers the samples
  of each shard (``sample["__index__"]``, 0-based, in tar order), marks the last one
  (``sample["__last__"]``), and, when given a saved position, skips what was already consumed.
* :class:`StreamPosition` lives where samples are consumed (the training loop); it is fed the
  samples or collated batches and reports a JSON-serialisable ``state_dict()``.
* :func:`resumable_pipeline` assembles a ``wds.DataPipeline`` (shard list, ``split_by_node``,
  ``split_by_worker``, optional seeded shard shuffle, tar reading, position tracking, your
  stages) that also skips the fully consumed shards without opening them.

Exact resumption needs deterministic stages after :func:`track_position`: scoring and
:func:`~qualoader.webdataset.filter_quality` resume exactly. The random stages (``reweight``,
``stratify``, ``curriculum``, a sample shuffle buffer) restart their seeded draws on the remaining
samples, so they resume with the same distribution but not the same draws. With several workers
or ranks, the remaining samples are the same set; their interleaving follows the new shard
assignment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import webdataset as wds

from qualoader._validation import check_positive_int, check_type
from qualoader.webdataset._common import Handler, resolve_handler
from qualoader.webdataset.reading import ReadShards

__all__ = ["StreamPosition", "TrackPosition", "resumable_pipeline", "track_position"]

_STATE_VERSION = 1


class StreamPosition:
    """Consumer-side record of how far a stream got: next sample offset per shard, finished shards.

    Example:
        >>> position = StreamPosition()
        >>> position.update({"__url__": "a.tar", "__index__": 4, "__last__": False})
        >>> position.state_dict()
        {'version': 1, 'offsets': {'a.tar': 5}, 'complete': []}
    """

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}
        self.complete: set[str] = set()

    def update(self, sample: Mapping[str, Any]) -> None:
        """Record one consumed sample, or a collated batch (lists/tensors under the same keys).

        Raises:
            KeyError: the sample lacks ``__url__`` or ``__index__`` (keep them in the batch).
        """
        if "__url__" not in sample or "__index__" not in sample:
            raise KeyError(f"sample should carry '__url__' and '__index__' (added by track_position), but got keys {sorted(sample)}")
        urls, indices, lasts = sample["__url__"], sample["__index__"], sample.get("__last__")
        # A str __url__ is one sample; default collation turns the strings into a list and the ints into tensors.
        if isinstance(urls, str):
            urls, indices, lasts = [urls], [indices], [lasts]
        else:
            indices = indices.tolist() if hasattr(indices, "tolist") else list(indices)
            lasts = [None] * len(urls) if lasts is None else (lasts.tolist() if hasattr(lasts, "tolist") else list(lasts))
        for url, index, last in zip(urls, indices, lasts, strict=True):
            # max, not the last one seen: a shuffle buffer after track_position hands a shard's samples out of
            # tar order, and the offset must never move backwards.
            self.offsets[url] = max(self.offsets.get(url, 0), int(index) + 1)
            if last:
                self.complete.add(url)

    def consumed(self, url: str) -> int:
        """Samples of shard ``url`` already consumed (tar order)."""
        return self.offsets.get(url, 0)

    def state_dict(self) -> dict[str, Any]:
        """``{"version", "offsets": {url: next offset}, "complete": [urls]}`` (JSON-serialisable)."""
        # Sorted so equal positions give byte-identical JSON, whatever order the shards were read in.
        return {"version": _STATE_VERSION, "offsets": dict(sorted(self.offsets.items())), "complete": sorted(self.complete)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`."""
        check_type(state, "state", Mapping, "a mapping from StreamPosition.state_dict()")
        if state.get("version") != _STATE_VERSION or not isinstance(state.get("offsets"), Mapping):
            raise ValueError(f"state should be a StreamPosition state of version {_STATE_VERSION}, but got state={dict(state)!r:.80}")
        offsets = {str(url): check_positive_int(int(n), "state['offsets'][url]", allow_zero=True) for url, n in state["offsets"].items()}
        self.offsets = offsets
        self.complete = {str(url) for url in state.get("complete", [])}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> StreamPosition:
        """A position restored from :meth:`state_dict` output."""
        position = cls()
        position.load_state_dict(state)
        return position

    def __repr__(self) -> str:
        return f"StreamPosition(shards={len(self.offsets)}, complete={len(self.complete)})"


def _as_position(position: StreamPosition | Mapping[str, Any] | None) -> StreamPosition | None:
    if position is None or isinstance(position, StreamPosition):
        return position
    if isinstance(position, Mapping):
        return StreamPosition.from_state_dict(position)
    raise TypeError(f"position should be a StreamPosition, its state_dict() or None, but got position of type {type(position).__name__}")


@dataclass(eq=False)
class TrackPosition:
    """Stage adding ``__index__`` (offset in its shard) and ``__last__`` to each raw sample.

    Place it directly after the tar reader (``wds.WebDataset(...).compose(track_position())``),
    before any filter, so offsets count every sample of the shard. :func:`track_position` is the
    same class.

    Args:
        resume: a position (or its ``state_dict()``) to resume from: samples of complete shards
            and the first ``offsets[url]`` samples of each shard are skipped, on the first pass
            only (later passes of ``with_epoch``/``repeat`` start over).

    Example:
        >>> samples = [{"__url__": "a.tar"}, {"__url__": "a.tar"}, {"__url__": "b.tar"}]
        >>> [(s["__index__"], s["__last__"]) for s in track_position()(samples)]
        [(0, False), (1, True), (0, True)]
    """

    resume: StreamPosition | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        self.resume = _as_position(self.resume)

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        resume, self.resume = self.resume, None  # only the first pass after a restore skips
        counters: dict[str, int] = {}
        held: dict[str, Any] | None = None
        for sample in source:
            url = sample.get("__url__", "")
            index = counters.get(url, 0)
            # Counted before the skip test: offsets are tar positions, so skipped samples must advance them too.
            counters[url] = index + 1
            if resume is not None and (url in resume.complete or index < resume.consumed(url)):  # type: ignore[union-attr]
                continue
            sample["__index__"] = index
            # Held back one sample: whether a sample is its shard's last is known only when the next one (or the
            # end of the stream) arrives.
            sample["__last__"] = False
            if held is not None:
                # the previous sample was its shard's last when this one comes from another shard
                held["__last__"] = held.get("__url__", "") != url
                yield held
            held = sample
        if held is not None:
            held["__last__"] = True
            yield held


track_position = TrackPosition


class _SkipShards:
    """Shard-list stage dropping the urls a position marks as complete (first pass only)."""

    def __init__(self, resume: StreamPosition | None) -> None:
        self.resume = resume

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        complete, self.resume = (self.resume.complete if self.resume else set()), None
        for item in source:
            if item["url"] not in complete:
                yield item


def resumable_pipeline(
    urls: str | Sequence[str],
    *stages: Any,
    position: StreamPosition | Mapping[str, Any] | None = None,
    handler: str | Handler = "raise",
    shardshuffle: int | bool = False,
    seed: int = 0,
    epoch: int = 0,
    nodesplitter: Any = wds.split_by_node,
    workersplitter: Any = wds.split_by_worker,
) -> wds.DataPipeline:
    """A ``wds.DataPipeline`` over tar shards whose position can be saved and restored.

    Args:
        urls: shard urls or a brace pattern (``"data-{000..009}.tar"``).
        *stages: stages appended after position tracking (annotate, filters, decode, batching, ...).
        position: where to resume (a :class:`StreamPosition` or its state), or ``None``.
        handler: ``"raise"``, ``"skip"`` or a webdataset handler for unreadable/corrupt shards
            (read with the strict :func:`~qualoader.webdataset.read_shards`).
        shardshuffle: ``False`` for file order, or a buffer size for webdataset's seeded
            ``detshuffle`` of the shard list (deterministic in ``seed`` and the pass number).
        seed: seed of the shard shuffle.
        epoch: shuffle pass to start from (``detshuffle`` seeds ``seed + pass``); pass the epoch
            the position was saved in to reproduce a shuffled order.
        nodesplitter: shard split across ranks (``wds.split_by_node``; ``None`` to disable).
        workersplitter: shard split across DataLoader workers (``wds.split_by_worker``; ``None``).

    Returns:
        The pipeline; ``.with_epoch(n)`` and ``.repeat()`` work as usual.

    Example:
        >>> import itertools
        >>> from qualoader.datasets import load_fashion_mnist
        >>> from qualoader.webdataset import write_image_shards
        >>> urls = [str(path) for path in write_image_shards(load_fashion_mnist("test")[0][:8], "data-%06d.tar", maxcount=4)]
        >>> position = StreamPosition()
        >>> for sample in itertools.islice(resumable_pipeline(urls), 3):
        ...     position.update(sample)
        >>> restored = resumable_pipeline(urls, position=position.state_dict())
        >>> [sample["__key__"] for sample in restored]
        ['00000003', '00000004', '00000005', '00000006', '00000007']
    """
    check_positive_int(seed, "seed", allow_zero=True)
    check_positive_int(epoch, "epoch", allow_zero=True)
    if isinstance(shardshuffle, bool):
        # True is refused because detshuffle would read it as a buffer of one shard: silently no shuffle.
        if shardshuffle:
            raise ValueError("shardshuffle should be False or a positive buffer size, but got shardshuffle=True")
    else:
        check_positive_int(shardshuffle, "shardshuffle")
    handler_fn = resolve_handler(handler)
    resume = _as_position(position)
    return wds.DataPipeline(
        wds.SimpleShardList(urls),
        nodesplitter,
        workersplitter,
        # detshuffle increments its epoch before each pass, hence epoch - 1 for the first pass to use `epoch`.
        # _SkipShards sits after the splitters and before ReadShards: each worker drops complete shards from
        # its own share, and they are never opened.
        wds.detshuffle(shardshuffle, seed=seed, epoch=epoch - 1) if shardshuffle else None,
        _SkipShards(resume),
        ReadShards(handler_fn),
        TrackPosition(resume),
        *stages,
    )
