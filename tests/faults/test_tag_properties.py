"""Property: whatever the tar layout (member names, extensions, ustar/gnu/pax, sizes, links, images
present or not), every original member of every tagged sample survives ``tag`` byte for byte, and
every sample without an image is listed as skipped, never dropped silently."""

from __future__ import annotations

import io
import random
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualoader.webdataset import SkipAndCount, encode_image, parse_tag, read_sidecar, tag_shards
from qualoader.webdataset.reading import raw_samples

_FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
# extensions a dataset may carry besides its image: none, "_" ones, several dots, upper case
_EXTENSIONS = ["", "_meta", "a.b.c", "TXT", "Cls", "json", "x.Y", "bin", "__key__x"]
_SIZES = [0, 1, 511, 512, 513, 1500]  # around the 512-byte tar block
_IMAGES = {  # extension -> encoded image; the 32 px noise PNG is > 512 bytes
    "png": encode_image(torch.randint(0, 256, (1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)),
    "PNG": encode_image(torch.randint(0, 256, (3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)),
    "jpg": encode_image(torch.randint(0, 256, (3, 16, 16), generator=torch.Generator().manual_seed(2), dtype=torch.uint8), "jpg"),
}


@dataclass
class _Layout:
    tar_format: str
    members: list[tuple[str, bytes | None, str | None]]  # (name, data, symlink target)
    keys: list[str]
    with_image: list[str]
    maxcount: int


@st.composite
def _layouts(draw: st.DrawFn) -> _Layout:
    tar_format = draw(st.sampled_from(sorted(_FORMATS)))
    rng = random.Random(draw(st.integers(0, 2**32)))
    members: list[tuple[str, bytes | None, str | None]] = []
    keys, with_image = [], []
    for index in range(draw(st.integers(1, 5))):
        folder = draw(st.sampled_from(["", "d/", "dir.v2/"]))
        # names over 100 characters need the gnu or pax format
        stem = "k" * draw(st.sampled_from([1, 120])) if tar_format != "ustar" else "k"
        key = f"{folder}{stem}{index}"
        image = draw(st.sampled_from([None, *sorted(_IMAGES)]))
        extensions = draw(st.lists(st.sampled_from(_EXTENSIONS), max_size=4, unique_by=str.lower))
        sample = [(f"{key}.{ext}" if ext else key, rng.randbytes(draw(st.sampled_from(_SIZES))), None) for ext in extensions]
        if image is not None:
            sample.append((f"{key}.{image}", _IMAGES[image], None))
            if draw(st.booleans()):
                sample.append((f"{key}.lnk", None, f"{key}.{image}".rpartition("/")[2]))
            with_image.append(key)
        if not sample:
            sample.append((f"{key}.txt", b"a sample without image", None))
        rng.shuffle(sample)  # the image is not always the first member
        members.extend(sample)
        keys.append(key)
    return _Layout(tar_format, members, keys, with_image, draw(st.integers(1, 3)))


def _write(path: Path, layout: _Layout) -> None:
    with tarfile.open(path, "w", format=_FORMATS[layout.tar_format]) as tar:
        for name, data, link in layout.members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _members(path: Path) -> list[tuple[str, str, bytes]]:
    return [(info.name, info.linkname, data) for sample in raw_samples(str(path)) for info, data in sample.members]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=_layouts())
def test_every_member_survives_tag(layout: _Layout) -> None:
    with tempfile.TemporaryDirectory() as folder:
        shard = Path(folder) / "in.tar"
        _write(shard, layout)
        original = _members(shard)
        report = tag_shards(str(shard), Path(folder) / "out", "contrast", handler=SkipAndCount(warn=False), maxcount=layout.maxcount)

        written = [member for out in report.shards for member in _members(out)]
        tags = [member for member in written if member[0].endswith(".quality.json")]
        carried = [member for member in written if not member[0].endswith(".quality.json")]
        # every member of every sample with an image, same name, same link, same bytes, same order
        key_of = {name: key for key in layout.keys for name, _, _ in layout.members if name == key or name.startswith(key + ".")}
        assert carried == [member for member in original if key_of[member[0]] in layout.with_image]
        assert [name.removesuffix(".quality.json") for name, _, _ in tags] == layout.with_image
        assert all(set(parse_tag(data)["quality"]) == {"contrast"} for _, _, data in tags)
        # the samples without an image are listed, by shard and key, in the report and the sidecars
        missing = [key for key in layout.keys if key not in layout.with_image]
        assert [entry.key for entry in report.skipped_samples] == missing and report.count == len(layout.with_image)
        indexes = [read_sidecar(side) for side in report.sidecars]
        assert [key for index in indexes for key in index.keys] == layout.with_image
        assert [entry.key for index in indexes for entry in index.skipped_samples] == missing
