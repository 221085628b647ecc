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

:func:`raw_samples` reads the same strict way but keeps every member as stored (tar header and
bytes, any name, links included) and flags what cannot be carried faithfully; the tag writer
copies shards with it.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from webdataset.gopen import gopen
from webdataset.tariterators import base_plus_ext

from qualoader.webdataset._common import Handler, resolve_handler

__all__ = [
    "CorruptShardError",
    "DuplicateKeyError",
    "RawSample",
    "ReadShards",
    "UnsupportedMemberError",
    "open_shard",
    "raw_samples",
    "read_shards",
    "split_member_name",
]

_META = re.compile(r"__[^/]*__($|/)")


# A ReadError subclass, so code that already catches tarfile.ReadError around webdataset catches it too.
class CorruptShardError(tarfile.ReadError):
    """A shard is truncated or its tar structure is broken."""


class DuplicateKeyError(CorruptShardError):
    """A sample key (or one member name of a sample) appears twice where it must be unique."""


class UnsupportedMemberError(CorruptShardError):
    """A tar member cannot be carried faithfully (a device or fifo, or a hard link whose target is elsewhere)."""


class _StrictTarInfo(tarfile.TarInfo):
    """TarInfo whose missing end-of-archive block is an error (stock tarfile ends quietly)."""

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        try:
            return super().fromtarfile(archive)
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError) as error:  # type: ignore[attr-defined]
            # re-raised as a SubsequentHeaderError, which tarfile turns into a ReadError
            raise tarfile.SubsequentHeaderError(f"truncated: the shard ends without an end-of-archive block ({error})") from error  # type: ignore[attr-defined]


def open_shard(path: str | os.PathLike[str]) -> tarfile.TarFile:
    """Open a local shard for random access (members read again later by name), as strictly as :func:`raw_samples`.

    Iterating its members raises ``tarfile.ReadError`` where stock ``tarfile`` would end quietly:
    a shard cut inside a member's data or a header, or ending without its end-of-archive block
    (a random-access reader seeks past each member to the next header, so every cut shows there).

    Example:
        >>> import io
        >>> with tarfile.open("cut.tar", "w") as tar:
        ...     info = tarfile.TarInfo("a.txt"); info.size = 2000
        ...     tar.addfile(info, io.BytesIO(bytes(2000)))
        >>> _ = os.truncate("cut.tar", 1024)
        >>> with open_shard("cut.tar") as archive:
        ...     [member.name for member in archive]
        Traceback (most recent call last):
        ...
        tarfile.ReadError: unexpected end of data
    """
    return tarfile.open(path, tarinfo=_StrictTarInfo)


def _strict_members(url: str) -> Iterator[tuple[tarfile.TarInfo, bytes]]:
    """Every member of one shard with its full data (``b""`` for links and folders), in tar order.

    Raises:
        CorruptShardError: the shard is truncated (a member cut short, no end-of-archive block)
            or not a tar.
    """
    try:
        # Stream mode ("r|*"): pipes and urls cannot seek; '*' still detects gzip and friends.
        with gopen(url, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*", tarinfo=_StrictTarInfo) as archive:
            for info in archive:
                data = b""
                if info.isreg():
                    handle = archive.extractfile(info)
                    data = handle.read() if handle is not None else b""
                    # In stream mode a member cut short just reads fewer bytes; only the recorded size gives it away.
                    if len(data) != info.size:
                        raise CorruptShardError(
                            f"{url}: truncated: member {info.name!r} should have {info.size} bytes, but got {len(data)}"
                        )
                yield info, data
                archive.members = []  # stream mode: keep no member list (shards can be large)
    # Ours already name the url; only tarfile's own errors are wrapped below (a subclass would match there too).
    except CorruptShardError:
        raise
    except tarfile.ReadError as error:
        raise CorruptShardError(f"{url}: {error}") from error


def split_member_name(name: str) -> tuple[str, str]:
    """``(key, extension)`` of a member name by webdataset's rule, extended to every name.

    The key is the path up to the first dot of the base name, the extension the rest (case kept);
    a base name without a dot is a key with the empty extension (webdataset ignores such members,
    the tag writer carries them).

    Example:
        >>> split_member_name("dir.v1/img.b.PNG"), split_member_name("README")
        (('dir.v1/img', 'b.PNG'), ('README', ''))
    """
    folder, slash, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return folder + slash + stem, extension


@dataclass
class RawSample:
    """One sample exactly as stored: every member's tar header and bytes, in tar order.

    Attributes:
        key: the sample key (see :func:`split_member_name`).
        url: the shard it comes from.
        members: ``(TarInfo, data)`` pairs; ``data`` is ``b""`` for links.
        problem: why the sample cannot be carried faithfully (a member name twice, a device
            member), else ``None``; raised as an error for the handler by the tag writer.
    """

    key: str
    url: str
    members: list[tuple[tarfile.TarInfo, bytes]] = field(default_factory=list)
    problem: CorruptShardError | None = None

    def as_webdataset(self) -> dict[str, Any]:
        """The webdataset view: ``{"__key__", "__url__", <lower-cased extension>: bytes}`` of its regular files."""
        sample: dict[str, Any] = {"__key__": self.key, "__url__": self.url}
        for info, data in self.members:
            _, extension = split_member_name(info.name)
            if info.isreg() and extension:
                sample[extension.lower()] = data
        return sample


def raw_samples(url: str) -> Iterator[RawSample]:
    """The samples of one shard with every member kept (names, links, odd extensions), in tar order.

    Members with the same key in a row form one sample; a key seen again later forms a new sample
    with the same key (callers decide; the tag writer refuses it). Folder entries carry no bytes
    and are left out.

    Raises:
        CorruptShardError: the shard is truncated or broken; ``error.sample_key`` is the key of
            the sample in progress (its members are not yielded), or ``None``.
    """
    current: RawSample | None = None
    lowered: set[str] = set()
    try:
        for info, data in _strict_members(url):
            if info.isdir():
                continue
            key, extension = split_member_name(info.name)
            if current is None or current.key != key:
                if current is not None:
                    yield current
                current, lowered = RawSample(key, url), set()
            # webdataset lower-cases extensions: "a.PNG" and "a.png" would be one member to every reader
            if extension.lower() in lowered and current.problem is None:
                current.problem = DuplicateKeyError(
                    f"{url}: sample {key!r} should hold each member name once (case-insensitive), but got {info.name!r} twice"
                )
            if not (info.isreg() or info.issym() or info.islnk()) and current.problem is None:
                current.problem = UnsupportedMemberError(
                    f"{url}: sample {key!r} should hold files or links, but got member {info.name!r} of tar type {info.type!r}"
                )
            lowered.add(extension.lower())
            current.members.append((info, data))
    except CorruptShardError as error:
        # The tag writer lists the sample that was in progress when the shard broke under this key.
        error.sample_key = current.key if current is not None else None  # type: ignore[attr-defined]
        raise
    if current is not None:
        yield current


def _shard_samples(url: str) -> Iterator[dict[str, Any]]:
    """Complete samples of one shard as webdataset groups them; raises :class:`CorruptShardError` on damage."""
    current: dict[str, Any] | None = None
    for info, data in _strict_members(url):
        # __name__ members are archive metadata, not sample data; webdataset skips them as well.
        if not info.isreg() or _META.match(info.name):
            continue
        # webdataset's own splitter, so keys are exactly what wds.WebDataset would produce; a name
        # without a dot has no key and is skipped, as there.
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
                # The url appended to args as webdataset's own readers do, so a handler's log names the shard.
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
