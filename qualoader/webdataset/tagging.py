"""Tag writing and the per-shard sidecar index.

:func:`tag_shards` reads webdataset shards, scores every image with :func:`annotate_quality`
and writes new shards with webdataset's own ``ShardWriter`` (so ``maxcount``/``maxsize`` decide
the shard sizes). Each sample keeps every original member byte for byte under its original key
and gains one ``quality.json`` member::

    {"format": "qualoader.quality/1", "quality": {"sharpness": 0.0123},
     "difficulty": {"sharpness": 0.31}, "fingerprints": {"sharpness": "9f2c..."}}

(``difficulty`` only for calibrated metrics). Next to each written shard ``X.tar``, a sidecar
``X.tar.quality.json`` holds the same numbers for the whole shard, in stream order, so samplers
can plan without reading any image::

    {"format": "qualoader.sidecar/1", "shard": "X.tar", "count": 2,
     "metrics": {"sharpness": {"fingerprint": "9f2c...", "higher_is_better": true}},
     "quality": {"key0": {"sharpness": 0.01}, "key1": {"sharpness": 0.02}},
     "difficulty": {}, "skipped": 0}

:func:`score_shard` writes (well, returns) the same sidecar for an existing shard without
rewriting it; ``qualoader score`` uses it, locally or on Ray. Inputs are read with the strict
:func:`~qualoader.webdataset.read_shards` (a truncated shard is an error for the handler).

Limitation: webdataset lower-cases member extensions when it groups a sample, so a member named
``key.PNG`` is written back as ``key.png`` (same bytes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import webdataset as wds

from qualoader._validation import check_positive_int, check_type
from qualoader.metrics.base import QualityMetric
from qualoader.webdataset._common import (
    DEFAULT_IMAGE_KEYS,
    TAG_MEMBER,
    Handler,
    SkipAndCount,
    parse_tag,
    resolve_handler,
)
from qualoader.webdataset.reading import ReadShards
from qualoader.webdataset.stages import AnnotateQuality, annotate_quality, encode_tag

__all__ = [
    "SIDECAR_FORMAT",
    "SIDECAR_SUFFIX",
    "SidecarIndex",
    "TagReport",
    "expand_shards",
    "read_sidecar",
    "score_shard",
    "sidecar_path",
    "tag_shards",
]

SIDECAR_FORMAT = "qualoader.sidecar/1"
SIDECAR_SUFFIX = ".quality.json"
_QUALITY = "__qualoader_quality__"
_DIFFICULTY = "__qualoader_difficulty__"


@dataclass
class SidecarIndex:
    """Scores of one shard, keyed by sample key (stream order).

    Attributes:
        shard: shard file name (base name) or url.
        metrics: ``{name: {"fingerprint": str, "higher_is_better": bool}}``.
        quality: ``{key: {metric: score}}``.
        difficulty: ``{key: {metric: difficulty}}`` for calibrated metrics (else empty).
        skipped: samples of the shard that could not be scored (skipped by the handler).
    """

    shard: str
    metrics: dict[str, dict[str, Any]]
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    difficulty: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: int = 0

    @property
    def keys(self) -> list[str]:
        """Sample keys in stream order."""
        return list(self.quality)

    def scores(self, metric: str, field: str = "quality") -> torch.Tensor:
        """Values of ``metric`` for every key, shape :math:`(N,)` ``float64`` (NaN where missing)."""
        table = self.quality if field == "quality" else self.difficulty
        if field not in ("quality", "difficulty") or metric not in self.metrics:
            raise KeyError(f"metric should be one of {sorted(self.metrics)} and field 'quality' or 'difficulty', but got metric={metric!r}, field={field!r}")
        return torch.tensor([table.get(key, {}).get(metric, float("nan")) for key in self.quality], dtype=torch.float64)

    def to_json(self) -> str:
        """The sidecar file content."""
        return json.dumps(
            {
                "format": SIDECAR_FORMAT,
                "shard": self.shard,
                "count": len(self.quality),
                "metrics": self.metrics,
                "quality": self.quality,
                "difficulty": self.difficulty,
                "skipped": self.skipped,
            },
            sort_keys=False,
        )

    @classmethod
    def from_json(cls, text: str) -> SidecarIndex:
        """Parse :meth:`to_json` output."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"text should be a sidecar index of format {SIDECAR_FORMAT!r}, but got format={data.get('format') if isinstance(data, dict) else None!r}")
        return cls(data["shard"], data["metrics"], data["quality"], data.get("difficulty", {}), int(data.get("skipped", 0)))

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the sidecar atomically (temporary file + rename); returns the path."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return path


def sidecar_path(shard: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<shard>.quality.json``, next to the shard or in ``out_dir`` (same base name)."""
    shard = Path(shard)
    return (shard.parent if out_dir is None else Path(out_dir)) / (shard.name + SIDECAR_SUFFIX)


def read_sidecar(path: str | os.PathLike[str]) -> SidecarIndex:
    """Load a sidecar index written by :func:`tag_shards` or ``qualoader score``."""
    return SidecarIndex.from_json(Path(path).read_text(encoding="utf-8"))


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
    return {m.name: {"fingerprint": m.fingerprint(), "higher_is_better": m.higher_is_better, "calibrated": m.calibration is not None} for m in stage.metrics}


def _check_new_key(index: SidecarIndex, key: str) -> None:
    if key in index.quality:
        raise ValueError(f"sample keys should be unique within a shard, but got key={key!r} twice in {index.shard!r}")


def _reader(urls: list[str], stage: AnnotateQuality, handler: Handler) -> wds.DataPipeline:
    """Every shard (no node/worker split), read strictly (truncation is an error), then scored."""
    return wds.DataPipeline(wds.SimpleShardList(urls), ReadShards(handler), stage)


def score_shard(
    url: str,
    metric: QualityMetric | str | Sequence[QualityMetric | str],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    handler: str | Handler = "raise",
) -> SidecarIndex:
    """Score every sample of one shard into a :class:`SidecarIndex` (the shard is not rewritten).

    Args:
        url: shard path or url.
        metric: metric(s) as in :func:`annotate_quality`.
        batch_size: images per metric call.
        device: scoring device.
        image_keys: member extensions tried to find the image.
        handler: ``"raise"``, ``"skip"`` or a webdataset handler (corrupt tar, missing or
            undecodable image); skipped samples are counted in ``skipped`` when the handler is a
            :class:`SkipAndCount` (``"skip"`` makes one).

    Returns:
        The index with ``shard`` set to the base name of ``url``.
    """
    check_type(url, "url", (str, os.PathLike), "a shard path or url (str)")
    handler_fn = resolve_handler(handler)
    stage = annotate_quality(metric, batch_size, device, image_keys=image_keys, handler=handler_fn, quality_key=_QUALITY, difficulty_key=_DIFFICULTY)
    before = handler_fn.total if isinstance(handler_fn, SkipAndCount) else 0
    index = SidecarIndex(Path(os.fspath(url)).name, _metric_info(stage))
    for sample in _reader([os.fspath(url)], stage, handler_fn):
        _check_new_key(index, sample["__key__"])
        index.quality[sample["__key__"]] = sample[_QUALITY]
        if _DIFFICULTY in sample:
            index.difficulty[sample["__key__"]] = sample[_DIFFICULTY]
    index.skipped = (handler_fn.total - before) if isinstance(handler_fn, SkipAndCount) else 0
    return index


@dataclass
class TagReport:
    """What :func:`tag_shards` wrote.

    Attributes:
        shards: written shard paths, in order.
        sidecars: their sidecar index paths.
        count: samples written.
        skipped: errors skipped by the handler, by exception type (empty with ``"raise"``).
    """

    shards: list[Path]
    sidecars: list[Path]
    count: int
    skipped: dict[str, int]


class _SidecarCollector:
    """ShardWriter ``post`` hook: writes the sidecar of each shard when the writer closes it."""

    def __init__(self, metrics: dict[str, dict[str, Any]]) -> None:
        self.metrics = metrics
        self.open: dict[str, SidecarIndex] = {}
        self.shards: list[Path] = []
        self.sidecars: list[Path] = []

    def add(self, fname: str, key: str, quality: dict[str, float], difficulty: dict[str, float] | None) -> None:
        index = self.open.setdefault(fname, SidecarIndex(Path(fname).name, self.metrics))
        _check_new_key(index, key)
        index.quality[key] = quality
        if difficulty:
            index.difficulty[key] = difficulty

    def __call__(self, fname: str) -> None:
        index = self.open.pop(fname, None) or SidecarIndex(Path(fname).name, self.metrics)
        self.shards.append(Path(fname))
        self.sidecars.append(index.write(sidecar_path(fname)))


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
) -> TagReport:
    """Write tagged copies of shards: same members and keys, plus ``quality.json``; and sidecars.

    Samples that already carry a ``quality.json`` (re-tagging) get it merged: metrics asked
    for now replace the same names, other tags are kept.

    Args:
        urls: input shard paths/urls or brace patterns.
        out_dir: output folder (created); shards are ``<prefix>-000000.tar``, ...
        metric: metric(s) as in :func:`annotate_quality`.
        batch_size: images per metric call.
        device: scoring device.
        maxcount: most samples per output shard (``wds.ShardWriter``).
        maxsize: most member bytes per output shard (``wds.ShardWriter``).
        prefix: output shard name prefix.
        image_keys: member extensions tried to find the image.
        handler: ``"raise"``, ``"skip"`` or a webdataset handler for corrupt shards and missing
            or undecodable images; skipped samples are not written.

    Returns:
        A :class:`TagReport`.

    Example:
        >>> report = tag_shards("in/data-{000..003}.tar", "out", ["sharpness", "contrast"])  # doctest: +SKIP
        >>> report.shards[0].name  # doctest: +SKIP
        'tagged-000000.tar'
    """
    shards = expand_shards(urls)
    check_type(out_dir, "out_dir", (str, os.PathLike), "a folder path")
    if "%" in os.fspath(out_dir):
        raise ValueError(f"out_dir should be a folder path without '%' (ShardWriter patterns), but got out_dir={os.fspath(out_dir)!r}")
    check_positive_int(maxcount, "maxcount")
    check_positive_int(maxsize, "maxsize")
    if not isinstance(prefix, str) or not prefix or "/" in prefix or "%" in prefix:
        raise ValueError(f"prefix should be a non-empty file name prefix without '/' or '%', but got prefix={prefix!r}")
    handler_fn = resolve_handler(handler)
    stage = annotate_quality(metric, batch_size, device, image_keys=image_keys, handler=handler_fn, quality_key=_QUALITY, difficulty_key=_DIFFICULTY)
    fingerprints = stage.fingerprints
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    collector = _SidecarCollector(_metric_info(stage))
    count = 0
    with wds.ShardWriter(str(out / f"{prefix}-%06d.tar"), maxcount=maxcount, maxsize=maxsize, post=collector, verbose=0, encoder=False, mtime=0.0) as writer:
        for sample in _reader(shards, stage, handler_fn):
            quality, difficulty = sample.pop(_QUALITY), sample.pop(_DIFFICULTY, {})
            members = {key: value for key, value in sample.items() if not key.startswith("_")}
            tag_quality, tag_difficulty, tag_fingerprints = quality, difficulty, fingerprints
            if TAG_MEMBER in members:
                old = parse_tag(members[TAG_MEMBER])
                tag_quality = {**old["quality"], **quality}
                tag_difficulty = {**{k: v for k, v in old["difficulty"].items() if k not in quality}, **difficulty}
                tag_fingerprints = {**old["fingerprints"], **fingerprints}
            members[TAG_MEMBER] = encode_tag(tag_quality, tag_difficulty, tag_fingerprints)
            writer.write({"__key__": sample["__key__"], **members})
            collector.add(writer.fname, sample["__key__"], quality, difficulty)
            count += 1
    skipped = dict(handler_fn.counts) if isinstance(handler_fn, SkipAndCount) else {}
    return TagReport(collector.shards, collector.sidecars, count, skipped)
