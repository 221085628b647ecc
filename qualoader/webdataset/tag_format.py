"""The shard tag format, in one place: the ``quality.json`` member and the ``<shard>.quality.json`` sidecar.

Every path that writes or reads quality tags goes through this module: ``qualoader tag`` and
``qualoader score`` (writing), the webdataset filters and :func:`parse_quality_tags` stage
(strict reading with :func:`parse_tag`), and the report (lenient reading with :func:`tag_scores`,
which also accepts the hand-made layouts older tools wrote).

A sample's tag is a member ``<key>.quality.json`` holding::

    {"format": "qualoader.quality/1", "quality": {"sharpness": 0.0123},
     "difficulty": {"sharpness": 0.31}, "fingerprints": {"sharpness": "9f2c..."}}

(``difficulty`` only for calibrated metrics). A shard ``X.tar`` gets a sidecar index
``X.tar.quality.json`` with the same numbers for the whole shard, in stream order, so samplers can
plan without reading any image, and the samples that could not be tagged, by input shard and key::

    {"format": "qualoader.sidecar/1", "shard": "X.tar", "count": 2,
     "metrics": {"sharpness": {"fingerprint": "9f2c...", "higher_is_better": true}},
     "quality": {"key0": {"sharpness": 0.01}, "key1": {"sharpness": 0.02}},
     "difficulty": {}, "skipped": 1,
     "skipped_samples": [{"shard": "in/a.tar", "key": "key2", "error": "ImageDecodeError", "message": "..."}]}

Example:
    >>> member = encode_tag({"sharpness": 0.5}, {}, {"sharpness": "f0"})
    >>> parse_tag(member)["quality"]
    {'sharpness': 0.5}
    >>> parse_tag(merge_tag(member, {"contrast": 0.2}, {}, {"contrast": "f1"}))["quality"]
    {'contrast': 0.2, 'sharpness': 0.5}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from qualoader._atomic import write_bytes_atomic
from qualoader._json import loads_json, read_json

__all__ = [
    "SIDECAR_FORMAT",
    "SIDECAR_SUFFIX",
    "TAG_FORMAT",
    "TAG_MEMBER",
    "MissingTagError",
    "SidecarIndex",
    "SkippedSample",
    "encode_tag",
    "is_tag_extension",
    "merge_tag",
    "parse_tag",
    "read_sidecar",
    "sidecar_path",
    "tag_member_name",
    "tag_scores",
]

#: Extension of the member the tag writer adds to every sample (``<key>.quality.json``).
TAG_MEMBER = "quality.json"
#: Value of the ``"format"`` field of every ``quality.json`` member.
TAG_FORMAT = "qualoader.quality/1"
#: Value of the ``"format"`` field of every sidecar index.
SIDECAR_FORMAT = "qualoader.sidecar/1"
#: Suffix appended to a shard's file name to name its sidecar index.
SIDECAR_SUFFIX = ".quality.json"
# layouts the lenient reader accepts besides ours (hand-made tags of other tools)
_SCORE_FIELDS = ("score", "quality", "value")
_CONTAINERS = ("scores", "metrics", "quality")


class MissingTagError(KeyError):
    """A sample carries no quality tag (or not the metric asked for), or its tag is malformed."""


def tag_member_name(key: str) -> str:
    """Tar member name of the tag of sample ``key``: ``"<key>.quality.json"``."""
    return f"{key}.{TAG_MEMBER}"


def is_tag_extension(extension: str) -> bool:
    """Whether a member extension (the name after the key's dot) names the tag; case-insensitive
    because webdataset lower-cases extensions when it groups a sample."""
    return extension.lower() == TAG_MEMBER


def encode_tag(quality: Mapping[str, float], difficulty: Mapping[str, float], fingerprints: Mapping[str, str]) -> bytes:
    """The bytes of a ``quality.json`` member (UTF-8 JSON, keys sorted, so equal tags are equal bytes)."""
    tag = {"format": TAG_FORMAT, "quality": dict(quality), "difficulty": dict(difficulty), "fingerprints": dict(fingerprints)}
    return json.dumps(tag, sort_keys=True).encode("utf-8")


def parse_tag(data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """Parse a ``quality.json`` member into ``{"quality": {...}, "difficulty": {...}, "fingerprints": {...}}``.

    Raises:
        MissingTagError: the member is not JSON, or not an object with a ``quality`` mapping.
    """
    try:
        # A Mapping when webdataset's .decode(...) already parsed the member; raw bytes before it.
        tag = (
            loads_json(bytes(data) if isinstance(data, bytearray) else data, what="quality.json")
            if isinstance(data, (bytes, bytearray, str))
            else dict(data)
        )
    except ValueError as error:  # not UTF-8, not JSON, or nested too deep (the bounded reader's one error)
        raise MissingTagError(
            f"quality.json should be a JSON object with a 'quality' mapping, but got bytes that are not JSON ({error})"
        ) from error
    if not isinstance(tag, dict) or not isinstance(tag.get("quality"), dict):
        raise MissingTagError(f"quality.json should be a JSON object with a 'quality' mapping, but got {str(tag)[:80]!r}")
    difficulty, fingerprints = tag.get("difficulty", {}), tag.get("fingerprints", {})
    if not isinstance(difficulty, dict) or not isinstance(fingerprints, dict):
        raise MissingTagError(f"quality.json should hold 'difficulty' and 'fingerprints' mappings, but got {str(tag)[:80]!r}")
    return {"quality": tag["quality"], "difficulty": difficulty, "fingerprints": fingerprints}


def merge_tag(
    old: bytes | str | Mapping[str, Any] | None,
    quality: Mapping[str, float],
    difficulty: Mapping[str, float],
    fingerprints: Mapping[str, str],
) -> bytes:
    """Encode a tag that updates ``old`` (re-tagging): the metrics scored now replace the same
    names, every other metric of ``old`` is kept. A rescored metric keeps no stale difficulty.

    Raises:
        MissingTagError: ``old`` is not a valid tag (it is never silently replaced).
    """
    if old is None:
        return encode_tag(quality, difficulty, fingerprints)
    previous = parse_tag(old)
    kept_difficulty = {name: value for name, value in previous["difficulty"].items() if name not in quality}
    return encode_tag({**previous["quality"], **quality}, {**kept_difficulty, **difficulty}, {**previous["fingerprints"], **fingerprints})


def _number(value: Any) -> float | None:
    if isinstance(value, dict):
        value = next((value[k] for k in _SCORE_FIELDS if k in value), None)
    # bool is excluded: a flag such as {"ok": true} is not a score of 1.
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def tag_scores(data: bytes) -> dict[str, float]:
    """Read a ``quality.json`` member leniently into ``{metric name: score}`` (the report's reader).

    Accepted layouts: ours (:func:`encode_tag`), ``{"sharpness": 0.3}``,
    ``{"sharpness": {"score": 0.3, "fingerprint": ...}}`` (also ``"quality"`` or ``"value"`` instead
    of ``"score"``), either of these nested under a ``"scores"``, ``"metrics"`` or ``"quality"`` key,
    and ``{"metric": "sharpness", "score": 0.3}``. Entries that are not numbers are ignored.

    Raises:
        ValueError: the bytes are not JSON, or not a JSON object.
    """
    try:
        document = loads_json(data, what="data")
    except ValueError as error:  # not UTF-8, not JSON, or nested too deep
        raise ValueError(f"data should be a JSON quality tag, but got undecodable bytes ({error})") from error
    if not isinstance(document, dict):
        raise ValueError(f"data should be a JSON object of metric scores, but got a JSON {type(document).__name__}")  # noqa: TRY004 - bad content, not a bad argument type
    if isinstance(document.get("metric"), str):  # one metric: {"metric": name, "score": value, ...}
        value = _number(document)
        if value is not None:
            return {document["metric"]: value}
    for container in _CONTAINERS:
        if isinstance(document.get(container), dict):
            document = document[container]
            break
    return {str(name): score for name, value in document.items() if (score := _number(value)) is not None}


@dataclass(frozen=True)
class SkippedSample:
    """A sample that could not be tagged or scored, listed in the sidecar and the summary.

    Attributes:
        shard: the input shard (path or url as given).
        key: the sample key, or ``None`` when the rest of an unreadable shard was skipped.
        error: the exception type name (``"ImageDecodeError"``, ``"CorruptShardError"``, ...).
        message: the error message.
    """

    shard: str
    key: str | None
    error: str
    message: str

    @classmethod
    def from_error(cls, shard: str, key: str | None, error: BaseException) -> SkippedSample:
        return cls(shard, key, type(error).__name__, str(error))

    def to_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "key": self.key, "error": self.error, "message": self.message}

    def __str__(self) -> str:
        where = f"{self.shard} sample {self.key!r}" if self.key is not None else f"{self.shard} (rest of the shard)"
        return f"{where}: {self.error}: {self.message}"


@dataclass
class SidecarIndex:
    """Scores of one shard, keyed by sample key (stream order).

    Attributes:
        shard: shard file name (base name) or url.
        metrics: ``{name: {"fingerprint": str, "higher_is_better": bool, "calibrated": bool}}``.
        quality: ``{key: {metric: score}}``.
        difficulty: ``{key: {metric: difficulty}}`` for calibrated metrics (else empty).
        skipped: samples that could not be scored (skipped by the handler), counted once each;
            an unreadable rest of a shard counts once.
        skipped_samples: what was skipped, by input shard and key (same length as ``skipped``).
    """

    shard: str
    metrics: dict[str, dict[str, Any]]
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    difficulty: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: int = 0
    skipped_samples: list[SkippedSample] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        """Sample keys in stream order."""
        return list(self.quality)

    def add(self, key: str, quality: dict[str, float], difficulty: dict[str, float] | None = None) -> None:
        """Record the scores of one sample.

        Raises:
            ValueError: ``key`` is already in the index (keys are unique within a shard).
        """
        if key in self.quality:
            raise ValueError(f"sample keys should be unique within a shard, but got key={key!r} twice in {self.shard!r}")
        self.quality[key] = quality
        if difficulty:
            self.difficulty[key] = difficulty

    def skip(self, entry: SkippedSample) -> None:
        """Record a skipped sample."""
        self.skipped_samples.append(entry)
        self.skipped += 1

    def scores(self, metric: str, field: str = "quality") -> torch.Tensor:
        """Values of ``metric`` for every key, shape :math:`(N,)` ``float64`` (NaN where missing)."""
        table = self.quality if field == "quality" else self.difficulty
        if field not in ("quality", "difficulty") or metric not in self.metrics:
            raise KeyError(
                f"metric should be one of {sorted(self.metrics)} and field 'quality' or 'difficulty', but got metric={metric!r}, "
                f"field={field!r}"
            )
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
                "skipped_samples": [entry.to_dict() for entry in self.skipped_samples],
            },
            # Unsorted on purpose: the key order of `quality` is the stream order that readers rely on.
            sort_keys=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> SidecarIndex:
        """Parse :meth:`to_json` output, checking its structure (a damaged sidecar is an error).

        Raises:
            ValueError: not a sidecar of this format (not JSON, nested too deep, wrong fields), or
                its fields disagree (count, types).
        """
        return cls._from_document(loads_json(text, what=f"text (a sidecar index of format {SIDECAR_FORMAT!r})"))

    @classmethod
    def _from_document(cls, data: Any) -> SidecarIndex:
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            raise ValueError(
                f"text should be a sidecar index of format {SIDECAR_FORMAT!r}, but got "
                f"format={data.get('format') if isinstance(data, dict) else None!r}"
            )
        quality, difficulty, metrics = data.get("quality"), data.get("difficulty", {}), data.get("metrics")
        tables_ok = all(isinstance(t, dict) and all(isinstance(v, dict) for v in t.values()) for t in (quality, difficulty))
        if not isinstance(data.get("shard"), str) or not isinstance(metrics, dict) or not tables_ok:
            raise ValueError(
                "text should be a sidecar index with 'shard', 'metrics' and per-key 'quality'/'difficulty' tables, but got keys "
                f"{sorted(data)}"
            )
        if data.get("count", len(quality)) != len(quality):
            raise ValueError(f"sidecar count should equal its number of keys ({len(quality)}), but got count={data.get('count')!r}")
        entries = data.get("skipped_samples", [])
        fields = ("shard", "key", "error", "message")
        if not isinstance(entries, list) or not all(isinstance(e, dict) and all(f in e for f in fields) for e in entries):
            raise ValueError(f"sidecar skipped_samples should be a list of objects with {list(fields)}, but got {str(entries)[:80]!r}")
        skipped_samples = [SkippedSample(e["shard"], e["key"], e["error"], e["message"]) for e in entries]
        skipped = data.get("skipped", 0)
        if not isinstance(skipped, int) or isinstance(skipped, bool) or skipped < 0:
            raise ValueError(f"sidecar skipped should be a non-negative int, but got skipped={skipped!r}")
        return cls(data["shard"], metrics, quality, difficulty, skipped, skipped_samples)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the sidecar atomically (temporary file in the same folder, fsync, rename); returns the path."""
        return write_bytes_atomic(path, self.to_json().encode("utf-8"))


def sidecar_path(shard: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<shard>.quality.json``, next to the shard or in ``out_dir`` (same base name)."""
    shard = Path(shard)
    return (shard.parent if out_dir is None else Path(out_dir)) / (shard.name + SIDECAR_SUFFIX)


def read_sidecar(path: str | os.PathLike[str]) -> SidecarIndex:
    """Load a sidecar index written by :func:`~qualoader.webdataset.tag_shards` or ``qualoader score``.

    Raises:
        ValueError: the file is not a sidecar index (too large, not JSON, nested too deep, wrong
            fields); the message names the file.
        OSError: the file cannot be read.
    """
    what = f"sidecar '{path}'"
    try:
        return SidecarIndex._from_document(read_json(path, what=what))
    except ValueError as error:
        message = str(error)
        raise ValueError(message if message.startswith(what) else f"{what}: {message}") from None
