"""A strict tar reader stage: truncated or corrupt shards raise instead of ending quietly.

Python's ``tarfile`` in stream mode (what ``wds.WebDataset`` uses) treats a shard cut short at a
member boundary, or in a member's data, as a normal end of archive: the stream just gets
shorter. :func:`read_shards` reads the same format (webdataset's grouping rule: key = path up to
the first dot of the base name, extension lower-cased) but requires the end-of-archive block and
every member's full size, so truncation reaches the handler as :class:`CorruptShardError`. The
partial sample in progress when a shard fails is dropped; the samples before it are kept.

Use it in a ``wds.DataPipeline`` where ``wds.tarfile_to_samples()`` would go::

    wds.DataPipeline(wds.SimpleShardList(urls), wds.split_by_node, wds.split_by_worker,
                     read_shards(handler="skip"), annotate_quality("sharpness"))
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable, Iterator
from typing import Any

from webdataset.gopen import gopen
from webdataset.tariterators import base_plus_ext

from qualoader.webdataset._common import Handler, resolve_handler

__all__ = ["CorruptShardError", "ReadShards", "read_shards"]

_META = re.compile(r"__[^/]*__($|/)")


class CorruptShardError(tarfile.ReadError):
    """A shard is truncated or its tar structure is broken."""


class _StrictTarInfo(tarfile.TarInfo):
    """TarInfo whose missing end-of-archive block is an error (stock tarfile ends quietly)."""

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        try:
            return super().fromtarfile(archive)
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError) as error:  # type: ignore[attr-defined]
            # re-raised as a SubsequentHeaderError, which tarfile turns into a ReadError
            raise tarfile.SubsequentHeaderError(f"truncated: the shard ends without an end-of-archive block ({error})") from error  # type: ignore[attr-defined]


def _shard_samples(url: str) -> Iterator[dict[str, Any]]:
    """Complete samples of one shard, in tar order; raises :class:`CorruptShardError` on damage."""
    current: dict[str, Any] | None = None
    try:
        with gopen(url, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*", tarinfo=_StrictTarInfo) as archive:
            for info in archive:
                if not info.isreg() or _META.match(info.name):
                    continue
                handle = archive.extractfile(info)
                data = handle.read() if handle is not None else b""
                if len(data) != info.size:
                    raise CorruptShardError(f"truncated: member {info.name!r} should have {info.size} bytes, but got {len(data)}")
                prefix, suffix = base_plus_ext(info.name)
                if prefix is None:
                    continue
                suffix = suffix.lower()
                if current is None or current["__key__"] != prefix:
                    if current is not None:
                        yield current
                    current = {"__key__": prefix, "__url__": url}
                if suffix in current:
                    raise CorruptShardError(f"member {info.name!r} should appear once per sample, but got it twice")
                current[suffix] = data
                archive.members = []
    except CorruptShardError:
        raise
    except tarfile.ReadError as error:
        raise CorruptShardError(f"{url}: {error}") from error
    if current is not None:
        yield current


class ReadShards:
    """Picklable stage: ``{"url": ...}`` items -> samples; see :func:`read_shards`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in source:
            url = item["url"] if isinstance(item, dict) else item
            try:
                yield from _shard_samples(url)
            except Exception as exn:  # noqa: BLE001 - every error goes to the explicit handler
                exn.args = (*exn.args, url)
                if self.handler(exn):
                    continue
                break

    def __repr__(self) -> str:
        return f"ReadShards(handler={self.handler!r})"


def read_shards(handler: str | Handler = "raise") -> ReadShards:
    """Stage reading tar shards strictly: shard urls (``{"url": ...}`` dicts or strings) in, samples out.

    Args:
        handler: ``"raise"``, ``"skip"`` (a :class:`~qualoader.webdataset.SkipAndCount`) or a
            webdataset handler, called with :class:`CorruptShardError`, ``FileNotFoundError``, ...
            ``True`` skips the rest of the shard, ``False`` stops.

    Returns:
        The stage; samples are dicts ``{"__key__", "__url__", <ext>: bytes, ...}`` as in webdataset.
    """
    return ReadShards(resolve_handler(handler))
