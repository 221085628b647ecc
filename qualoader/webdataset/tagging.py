"""Tag writing (:func:`tag_shards`) and sidecar scoring (:func:`score_shard`).

:func:`tag_shards` reads shards member by member (:func:`~qualoader.webdataset.reading.raw_samples`),
scores every sample's image with :func:`annotate_quality` and writes new shards in which every
sample keeps every original member, byte for byte, under its original name (whatever the name:
no extension, ``_`` extensions, several dots, upper case; symbolic links stay links, hard links
stay links to a member of the same output shard or are refused) and gains one
``<key>.quality.json`` member; each shard gets a ``<shard>.quality.json`` sidecar. The formats of
both live in :mod:`qualoader.webdataset.tag_format`.

What is guaranteed:

* **Inputs are never written**: an output folder that holds an input shard (same resolved path
  or same file, links included) is refused before anything is created.
* **Atomic output**: shards and sidecars are written to a staging folder, fsync-ed, and published
  in one step only once the whole set is complete (:class:`~qualoader.webdataset.writing.StagedShardSet`,
  :mod:`~qualoader.webdataset.publishing`); an error or an interrupt removes the staging folder, and
  a kill at any instant leaves the complete old set or the complete new set. A non-empty output
  folder is refused unless ``overwrite=True``, which replaces the previous set as a whole.
* **Exact accounting**: every sample that is not written (handler ``"skip"``) is listed by input
  shard and key, with the error, in :attr:`TagReport.skipped_samples` and in a sidecar; a failed
  batch lists each of its samples. Decode errors name the shard and the key.
* **Keys are unique**: a key seen twice in an input shard (adjacent or not), a member name twice
  in a sample, or a key already in the output shard goes to the handler before anything of that
  sample is written.

:func:`score_shard` builds the same sidecar for an existing shard without rewriting it
(``qualoader score``, locally or on Ray), with the same reading, duplicate and skip rules.
"""

from __future__ import annotations

import copy
import itertools
import os
import tarfile
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from qualoader._validation import check_positive_int, check_type
from qualoader.metrics.base import QualityMetric
from qualoader.webdataset._common import (
    DEFAULT_IMAGE_KEYS,
    Handler,
    ImageDecodeError,
    MissingImageError,
    resolve_handler,
)
from qualoader.webdataset.publishing import check_inputs_outside
from qualoader.webdataset.reading import DuplicateKeyError, RawSample, UnsupportedMemberError, raw_samples, split_member_name
from qualoader.webdataset.stages import AnnotateQuality, annotate_quality
from qualoader.webdataset.tag_format import (
    SIDECAR_FORMAT,
    SIDECAR_SUFFIX,
    MissingTagError,
    SidecarIndex,
    SkippedSample,
    encode_tag,
    is_tag_extension,
    merge_tag,
    read_sidecar,
    sidecar_path,
    tag_member_name,
)
from qualoader.webdataset.writing import StagedShardSet

__all__ = [
    "SIDECAR_FORMAT",
    "SIDECAR_SUFFIX",
    "SidecarIndex",
    "SkippedSample",
    "TagReport",
    "expand_shards",
    "read_sidecar",
    "score_shard",
    "sidecar_path",
    "tag_shards",
]

_QUALITY = "__qualoader_quality__"
_DIFFICULTY = "__qualoader_difficulty__"
_SEQUENCE = "__qualoader_sequence__"
_REMOTE = ("pipe:", "http:", "https:", "gs:", "s3:", "ais:")


def expand_shards(urls: str | Sequence[str]) -> list[str]:
    """Expand brace patterns (``"data-{000..003}.tar"``) of one url or a list of urls."""
    from webdataset.shardlists import expand_urls

    items = [urls] if isinstance(urls, (str, os.PathLike)) else list(urls)
    if not items:
        raise ValueError("urls should name at least one shard, but got urls=[]")
    expanded: list[str] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"urls should be shard paths or urls (str), but got an item of type {type(item).__name__}")
        expanded.extend(expand_urls(os.fspath(item)))
    return expanded


def _metric_info(stage: AnnotateQuality) -> dict[str, dict[str, Any]]:
    return {
        m.name: {"fingerprint": m.fingerprint(), "higher_is_better": m.higher_is_better, "calibrated": m.calibration is not None}
        for m in stage.metrics
    }


@dataclass
class _Scored:
    sample: RawSample
    quality: dict[str, float]
    difficulty: dict[str, float]


class _SkipLedger:
    """The handler the scoring stage gets: it names shard and key in per-sample errors and
    remembers them, so that every sample the stage drops is listed with its reason."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sequence = -1  # the sample the stage pulled last: the one a decode error is about
        self.sample: RawSample | None = None
        self.sample_errors: dict[int, BaseException] = {}
        self.batch_error: BaseException | None = None

    def __call__(self, exn: Exception) -> bool:
        # the stage decodes each sample as soon as it pulls it, so a decode error is the last one's;
        # any other error comes from scoring a batch (which samples: the ones it then leaves out)
        if isinstance(exn, (ImageDecodeError, MissingImageError)) and self.sample is not None:
            if isinstance(exn, ImageDecodeError):
                named = ImageDecodeError(f"{self.sample.url}: sample {self.sample.key!r}: {exn}")
                named.__cause__ = exn
                exn = named
            self.sample_errors[self.sequence] = exn
        else:
            self.batch_error = exn
        return self.handler(exn)


def _not_scored(ledger: _SkipLedger, sequence: int, sample: RawSample) -> SkippedSample:
    error = ledger.sample_errors.pop(sequence, None) or ledger.batch_error
    if error is None:
        error = RuntimeError("not scored: the error handler stopped the stream")
    return SkippedSample.from_error(sample.url, sample.key, error)


def _scored_samples(urls: list[str], stage: AnnotateQuality, ledger: _SkipLedger) -> Iterator[_Scored | SkippedSample]:
    """Scored samples and skip records of every shard, in stream order (every sample exactly once)."""
    handler = ledger.handler
    # (sequence, sample or skip record) in stream order, until the stage has scored or dropped it
    pending: deque[tuple[int, RawSample | SkippedSample]] = deque()
    counter = itertools.count()

    def skip(url: str, key: str | None, error: Exception) -> bool:
        pending.append((next(counter), SkippedSample.from_error(url, key, error)))
        return handler(error)

    def source() -> Iterator[dict[str, Any]]:
        for url in urls:
            seen: set[str] = set()
            try:
                for raw in raw_samples(url):
                    error = raw.problem
                    if error is None and raw.key in seen:
                        error = DuplicateKeyError(
                            f"{url}: sample key {raw.key!r} should appear once in a shard, but got it again after other samples"
                        )
                    seen.add(raw.key)
                    if error is not None:
                        if not skip(url, raw.key, error):
                            return
                        continue
                    sequence = next(counter)
                    pending.append((sequence, raw))
                    ledger.sequence, ledger.sample = sequence, raw
                    # The sequence number rides along through the stage, so its output can be matched against `pending`
                    # and every sample it dropped without a word is still reported.
                    yield {**raw.as_webdataset(), _SEQUENCE: sequence}
            except Exception as exn:  # noqa: BLE001 - unreadable shard (corrupt, missing, ...): to the explicit handler
                if not skip(url, getattr(exn, "sample_key", None), exn):
                    return

    for sample in stage(source()):
        sequence = sample[_SEQUENCE]
        while pending[0][0] < sequence:  # dropped by the stage (decode error, failed batch) or read errors
            earlier, item = pending.popleft()
            yield item if isinstance(item, SkippedSample) else _not_scored(ledger, earlier, item)
        _, raw = pending.popleft()
        yield _Scored(raw, sample[_QUALITY], sample.get(_DIFFICULTY, {}))  # type: ignore[arg-type]
    while pending:
        earlier, item = pending.popleft()
        yield item if isinstance(item, SkippedSample) else _not_scored(ledger, earlier, item)


def _scoring_stage(metric: Any, batch_size: int, device: Any, image_keys: Sequence[str], ledger: _SkipLedger) -> AnnotateQuality:
    return annotate_quality(
        metric, batch_size, device, image_keys=image_keys, handler=ledger, quality_key=_QUALITY, difficulty_key=_DIFFICULTY
    )


def score_shard(
    url: str,
    metric: QualityMetric | str | Sequence[QualityMetric | str],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    handler: str | Handler = "raise",
    progress: bool = False,
) -> SidecarIndex:
    """Score every sample of one shard into a :class:`SidecarIndex` (the shard is not rewritten).

    Args:
        url: shard path or url.
        metric: metric(s) as in :func:`annotate_quality`.
        batch_size: images per metric call.
        device: scoring device.
        image_keys: member extensions tried to find the image.
        handler: ``"raise"``, ``"skip"`` or a webdataset handler (corrupt tar, missing or
            undecodable image, duplicate key, failed batch); each skipped sample is listed in
            ``skipped_samples`` and counted in ``skipped``.
        progress: show a tqdm bar over the shard's samples (on stderr).

    Returns:
        The index with ``shard`` set to the base name of ``url``.
    """
    check_type(url, "url", (str, os.PathLike), "a shard path or url (str)")
    ledger = _SkipLedger(resolve_handler(handler))
    stage = _scoring_stage(metric, batch_size, device, image_keys, ledger)
    index = SidecarIndex(Path(os.fspath(url)).name, _metric_info(stage))
    events = _scored_samples([os.fspath(url)], stage, ledger)
    for event in tqdm(events, disable=not progress, unit="img", desc=f"score {index.shard}"):
        if isinstance(event, SkippedSample):
            index.skip(event)
        else:
            index.add(event.sample.key, event.quality, event.difficulty)
    return index


@dataclass
class TagReport:
    """What :func:`tag_shards` wrote.

    Attributes:
        shards: written shard paths, in order.
        sidecars: their sidecar index paths.
        count: samples written.
        skipped: skipped samples by exception type (an unreadable rest of a shard counts once;
            empty with ``"raise"``).
        skipped_samples: every skipped sample, by input shard and key, in stream order.
    """

    shards: list[Path]
    sidecars: list[Path]
    count: int
    skipped: dict[str, int]
    skipped_samples: list[SkippedSample] = field(default_factory=list)


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith(_REMOTE)


def _tagged_members(scored: _Scored, fingerprints: dict[str, str], names_in_shard: set[str]) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The sample's members, unchanged, with its tag merged in place or appended.

    Raises:
        UnsupportedMemberError: a hard link whose target is not before it in the output shard.
        MissingTagError: the sample carries a malformed tag (never silently replaced).
    """
    raw = scored.sample
    # A copy: hard links may also point to this sample's own earlier members, but the shard's set only
    # grows once the sample is written.
    names = set(names_in_shard)
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    tagged = False
    for info, data in raw.members:
        _, extension = split_member_name(info.name)
        # A tar hard link resolves inside its own archive: a target in another output shard, or later in
        # this one, would extract as a broken link.
        if info.islnk() and info.linkname not in names:
            raise UnsupportedMemberError(
                f"{raw.url}: sample {raw.key!r} should hold hard links to members written before them in the same output shard, "
                f"but got {info.name!r} -> {info.linkname!r} (keep links in one sample or copy the file)"
            )
        if is_tag_extension(extension):
            if not info.isreg():
                raise UnsupportedMemberError(
                    f"{raw.url}: sample {raw.key!r} should hold its tag as a file, but got {info.name!r} of tar type {info.type!r}"
                )
            data = merge_tag(data, scored.quality, scored.difficulty, fingerprints)
            # Copied: the input's TarInfo stays as read (its size is the original tag's).
            info = copy.copy(info)
            info.size = len(data)
            tagged = True
        members.append((info, data))
        names.add(info.name)
    if not tagged:
        data = encode_tag(scored.quality, scored.difficulty, fingerprints)
        info = tarfile.TarInfo(tag_member_name(raw.key))
        info.size, info.mode, info.mtime = len(data), 0o644, 0  # fixed time: re-runs write identical bytes
        members.append((info, data))
    return members


def tag_shards(
    urls: str | Sequence[str],
    out_dir: str | os.PathLike[str],
    metric: QualityMetric | str | Sequence[QualityMetric | str],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    maxcount: int = 100_000,
    maxsize: int = 3_000_000_000,
    prefix: str = "tagged",
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    handler: str | Handler = "raise",
    overwrite: bool = False,
    progress: bool = False,
) -> TagReport:
    """Write tagged copies of shards: same members and keys, plus ``quality.json``; and sidecars.

    Samples that already carry a ``quality.json`` (re-tagging) get it merged: metrics asked
    for now replace the same names, other tags are kept.

    Args:
        urls: input shard paths/urls or brace patterns.
        out_dir: output folder: new or empty (or, with ``overwrite``, holding only shards and
            sidecars); shards are ``<prefix>-000000.tar``, ... Must not hold any input shard.
        metric: metric(s) as in :func:`annotate_quality`.
        batch_size: images per metric call.
        device: scoring device.
        maxcount: most samples per output shard.
        maxsize: most member bytes per output shard (a shard closes once it reaches this).
        prefix: output shard name prefix.
        image_keys: member extensions tried to find the image.
        handler: ``"raise"``, ``"skip"`` or a webdataset handler for corrupt shards, missing or
            undecodable images, duplicate keys, failed batches and members that cannot be
            carried; skipped samples are not written and are listed in the report and sidecars.
        overwrite: replace the shards and sidecars of a previous run in ``out_dir`` (once the new
            set is complete; old files the new set does not have are removed then).
        progress: show a tqdm bar over the samples (on stderr).

    Returns:
        A :class:`TagReport`.

    Raises:
        ValueError: bad arguments, ``out_dir`` holds an input shard, is not empty (without
            ``overwrite``), or is being written by another process.

    Example:
        >>> from qualoader.datasets import load_fashion_mnist
        >>> from qualoader.webdataset import write_image_shards
        >>> shards = write_image_shards(load_fashion_mnist("test")[0][:40], "data-%06d.tar", maxcount=10)
        >>> report = tag_shards("data-{000000..000003}.tar", "out", ["sharpness", "contrast"])
        >>> report.shards[0].name
        'tagged-000000.tar'
    """
    shards = expand_shards(urls)
    check_type(out_dir, "out_dir", (str, os.PathLike), "a folder path")
    if "%" in os.fspath(out_dir):
        raise ValueError(f"out_dir should be a folder path without '%', but got out_dir={os.fspath(out_dir)!r}")
    check_positive_int(maxcount, "maxcount")
    check_positive_int(maxsize, "maxsize")
    check_type(overwrite, "overwrite", bool, "a bool")
    if not isinstance(prefix, str) or not prefix or "/" in prefix or "%" in prefix or prefix.startswith("."):
        raise ValueError(
            f"prefix should be a non-empty file name prefix without '/' or '%', not starting with '.', but got prefix={prefix!r}"
        )
    out = Path(out_dir)
    check_inputs_outside(out, [Path(url.removeprefix("file:")) for url in shards if _is_local(url)])
    ledger = _SkipLedger(resolve_handler(handler))
    stage = _scoring_stage(metric, batch_size, device, image_keys, ledger)
    fingerprints, metrics = stage.fingerprints, _metric_info(stage)
    skipped: list[SkippedSample] = []
    count = 0
    shard_set = StagedShardSet(
        out,
        f"{prefix}-%06d.tar",
        maxcount=maxcount,
        maxsize=maxsize,
        overwrite=overwrite,
        new_index=lambda name: SidecarIndex(name, metrics),
    )
    with shard_set:
        for event in tqdm(_scored_samples(shards, stage, ledger), disable=not progress, unit="img", desc=f"tag {len(shards)} shards"):
            if isinstance(event, SkippedSample):
                shard_set.skip(event)
                skipped.append(event)
                continue
            raw = event.sample
            try:
                # A key only clashes within one output shard: when this sample opens a new shard, the current index is
                # irrelevant.
                if not shard_set.needs_new_shard() and shard_set.index is not None and raw.key in shard_set.index.quality:
                    raise DuplicateKeyError(
                        f"{raw.url}: sample key {raw.key!r} should be new in output shard {shard_set.staged[-1]!r}, but got it there "
                        "already "
                        f"from another input shard (use distinct keys, or --maxcount to cut the output between inputs)"
                    )
                members = _tagged_members(event, fingerprints, shard_set.names_before_next())
            except (DuplicateKeyError, UnsupportedMemberError, MissingTagError) as exn:
                entry = SkippedSample.from_error(raw.url, raw.key, exn)
                # The user's handler, not the ledger: as a ledger "batch error" this would be blamed for samples the
                # stage drops later.
                go_on = ledger.handler(exn)
                shard_set.skip(entry)
                skipped.append(entry)
                if not go_on:
                    break
                continue
            shard_set.write_sample(members)
            shard_set.index.add(raw.key, event.quality, event.difficulty)  # type: ignore[union-attr]
            count += 1
        shard_set.finish()
    published = shard_set.published
    return TagReport(
        [shard for shard, _ in published],
        [sidecar for _, sidecar in published],
        count,
        dict(Counter(entry.error for entry in skipped)),
        skipped,
    )
