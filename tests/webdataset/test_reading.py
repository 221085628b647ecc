"""read_shards: strict tar reading (truncation is an error), and the same samples as webdataset."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from qualoader.webdataset import CorruptShardError, SkipAndCount, read_shards


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
