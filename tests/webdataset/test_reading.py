"""read_shards: strict tar reading (truncation is an error), and the same samples as webdataset."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from qualoader.webdataset import CorruptShardError, DuplicateKeyError, SkipAndCount, read_shards
from qualoader.webdataset.reading import raw_samples, split_member_name


def _samples(shards: list[str]) -> list[dict]:
    return list(wds.DataPipeline(wds.SimpleShardList(shards), read_shards()))


def test_same_samples_as_webdataset(fm_shards: list[str]) -> None:
    ours = _samples(fm_shards)
    theirs = list(wds.WebDataset(fm_shards, shardshuffle=False))
    assert len(ours) == 240
    for a, b in zip(ours, theirs, strict=True):
        assert {k: v for k, v in a.items() if k != "__local_path__"} == {k: v for k, v in b.items() if k != "__local_path__"}


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
def test_truncated_shard_is_an_error(fm_shards: list[str], tmp_path: Path, fraction: float) -> None:
    data = Path(fm_shards[0]).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CorruptShardError, match="truncated"):
        _samples([str(cut)])
    handler = SkipAndCount(warn=False)
    kept = list(wds.DataPipeline(wds.SimpleShardList([str(cut), fm_shards[1]]), read_shards(handler)))
    assert handler.counts == {"CorruptShardError": 1}
    partial = [s for s in kept if s["__url__"] == str(cut)]
    assert all({"png", "cls"} <= set(s) for s in partial)  # no half sample leaks out
    assert len(kept) - len(partial) == 80 and len(partial) < 80


def test_not_a_tar_and_missing_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x01" * 2000)
    with pytest.raises(CorruptShardError):
        _samples([str(junk)])
    with pytest.raises(FileNotFoundError):
        _samples([str(tmp_path / "absent.tar")])


def test_duplicate_member_and_meta(tmp_path: Path) -> None:
    path = tmp_path / "dup.tar"
    with tarfile.open(path, "w") as tar:
        for name in ("__meta__", "a.txt", "a.TXT"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(CorruptShardError, match="should appear once"):
        _samples([str(path)])


def test_picklable_and_bad_handler() -> None:
    assert pickle.loads(pickle.dumps(read_shards("skip"))).handler.total == 0
    with pytest.raises(ValueError, match="handler should be one of"):
        read_shards("ignore")


def _tar_of(path: Path, names: list[str], tar_format: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w", format=tar_format) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            data = name.encode()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.png", ("a", "png")),
        ("README", ("README", "")),
        ("a._meta", ("a", "_meta")),
        ("a.b.c.PNG", ("a", "b.c.PNG")),
        ("dir.v1/img.jpg", ("dir.v1/img", "jpg")),
        ("dir/.hidden", ("dir/", "hidden")),
    ],
)
def test_split_member_name(name: str, expected: tuple[str, str]) -> None:
    assert split_member_name(name) == expected


def test_raw_samples_keep_every_member(tmp_path: Path) -> None:
    names = ["a.png", "a", "a._meta", "a.x.y", "README", "b.PNG", "b.cls", "a.cls"]
    shard = _tar_of(tmp_path / "raw.tar", names, tarfile.GNU_FORMAT)
    samples = list(raw_samples(str(shard)))
    assert [(s.key, [i.name for i, _ in s.members]) for s in samples] == [
        ("a", ["a.png", "a", "a._meta", "a.x.y"]),
        ("README", ["README"]),
        ("b", ["b.PNG", "b.cls"]),
        ("a", ["a.cls"]),  # a key seen again later is a new sample: the tag writer refuses it
    ]
    assert all(data == info.name.encode() for s in samples for info, data in s.members)
    assert samples[2].as_webdataset() == {"__key__": "b", "__url__": str(shard), "png": b"b.PNG", "cls": b"b.cls"}
    assert all(s.problem is None for s in samples)


def test_raw_samples_flag_problems_and_truncation(tmp_path: Path, fm_shards: list[str]) -> None:
    shard = _tar_of(tmp_path / "dup.tar", ["a.png", "a.PNG", "b.png"])
    first, second = raw_samples(str(shard))
    assert isinstance(first.problem, DuplicateKeyError) and "'a.PNG' twice" in str(first.problem) and second.problem is None
    data = Path(fm_shards[0]).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2 + 700])  # inside a member
    seen = []
    with pytest.raises(CorruptShardError, match="truncated") as caught:
        seen.extend(sample.key for sample in raw_samples(str(cut)))
    assert caught.value.sample_key is not None and caught.value.sample_key not in seen  # the partial sample is named, not yielded
    assert seen == [f"{i:08d}" for i in range(len(seen))] and 0 < len(seen) < 80
