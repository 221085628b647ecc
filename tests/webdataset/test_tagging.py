"""tag_shards / score_shard / sidecars: real shards in, plain webdataset and tar out."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import webdataset as wds

from qualoader.metrics import QualityMetric, create_metric
from qualoader.webdataset import (
    SidecarIndex,
    SkipAndCount,
    expand_shards,
    read_sidecar,
    score_shard,
    sidecar_path,
    tag_shards,
)


def _samples(shards: list[str] | list[Path]) -> list[dict]:
    return list(wds.WebDataset([str(s) for s in shards], shardshuffle=False, empty_check=False))


def _members(sample: dict) -> dict[str, bytes]:
    return {k: v for k, v in sample.items() if not k.startswith("_")}


def _with_timeout(function: object, *args: object, seconds: float = 60.0, **kwargs: object) -> object:
    """Run ``function`` in a thread; a hang fails the test instead of blocking the suite."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args, **kwargs).result(timeout=seconds)


@pytest.fixture(scope="module")
def tagged(fm_shards: list[str], photo_shards: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], object]:
    inputs = fm_shards + photo_shards
    report = tag_shards(inputs, tmp_path_factory.mktemp("tagged"), ["sharpness", "contrast"], batch_size=32, maxcount=50)
    return inputs, report


def test_members_byte_identical_and_tagged(tagged: tuple[list[str], object]) -> None:
    inputs, report = tagged
    before, after = _samples(inputs), _samples(report.shards)
    assert report.count == len(before) == len(after) == 240 + 45
    fingerprints = {name: create_metric(name).fingerprint() for name in ("sharpness", "contrast")}
    for old, new in zip(before, after, strict=True):
        assert new["__key__"] == old["__key__"]
        members = _members(new)
        tag = json.loads(members.pop("quality.json"))
        assert members == _members(old)  # every original member, byte for byte
        assert set(tag["quality"]) == {"sharpness", "contrast"} and tag["fingerprints"] == fingerprints
        assert tag["difficulty"] == {} and tag["format"] == "qualoader.quality/1"


def test_shard_sizes_follow_maxcount(tagged: tuple[list[str], object]) -> None:
    _, report = tagged
    counts = [len(_samples([shard])) for shard in report.shards]
    assert counts == [50] * 5 + [35]
    assert [p.name for p in report.shards] == [f"tagged-{i:06d}.tar" for i in range(6)]


def test_tar_lists_expected_members(tagged: tuple[list[str], object]) -> None:
    _, report = tagged
    listing = subprocess.run(["tar", "-tf", str(report.shards[0])], check=True, capture_output=True, text=True).stdout.split()
    expected = [f"{i:08d}.{ext}" for i in range(50) for ext in ("cls", "png", "quality.json")]
    assert listing == expected


def test_sidecars_match_tags(tagged: tuple[list[str], object]) -> None:
    _, report = tagged
    assert report.sidecars == [sidecar_path(shard) for shard in report.shards]
    for shard, side in zip(report.shards, report.sidecars, strict=True):
        index = read_sidecar(side)
        samples = _samples([shard])
        assert index.shard == shard.name and index.keys == [s["__key__"] for s in samples]
        for sample in samples:
            assert index.quality[sample["__key__"]] == json.loads(sample["quality.json"])["quality"]
        assert index.metrics["sharpness"]["fingerprint"] == create_metric("sharpness").fingerprint()
        assert index.scores("contrast").shape == (len(samples),)


def test_score_shard_equals_tags(tagged: tuple[list[str], object], fm_shards: list[str]) -> None:
    _, report = tagged
    index = score_shard(fm_shards[0], ["sharpness", "contrast"], batch_size=16)
    tags = {s["__key__"]: json.loads(s["quality.json"])["quality"] for s in _samples(report.shards[:2])}
    assert len(index.quality) == 80
    for key, scores in index.quality.items():
        assert scores == pytest.approx(tags[key], rel=1e-5)
    assert SidecarIndex.from_json(index.to_json()) == index


def test_maxsize_and_difficulty(fm_shards: list[str], tmp_path: Path, calibrated_sharpness: QualityMetric) -> None:
    report = tag_shards(fm_shards[0], tmp_path, calibrated_sharpness, maxsize=20_000, prefix="small")
    assert len(report.shards) > 1 and report.count == 80
    samples = _samples(report.shards)
    scores = torch.tensor([json.loads(s["quality.json"])["quality"]["sharpness"] for s in samples])
    difficulty = torch.tensor([json.loads(s["quality.json"])["difficulty"]["sharpness"] for s in samples])
    torch.testing.assert_close(difficulty, calibrated_sharpness.difficulty(scores))
    index = read_sidecar(report.sidecars[0])
    assert index.metrics["sharpness"]["calibrated"] and len(index.difficulty) == len(index.quality)
    for shard in report.shards[:-1]:  # ShardWriter starts a new shard once maxsize is reached
        in_shard = _samples([shard])
        member_bytes = sum(len(v) for s in in_shard for v in _members(s).values())
        last = sum(len(v) for v in _members(in_shard[-1]).values())
        assert member_bytes - last < 20_000 <= member_bytes


def test_retagging_merges(tagged: tuple[list[str], object], tmp_path: Path) -> None:
    _, report = tagged
    again = tag_shards([str(s) for s in report.shards[:1]], tmp_path, "brightness")
    old, new = _samples(report.shards[:1]), _samples(again.shards)
    for before, after in zip(old, new, strict=True):
        tag = json.loads(after["quality.json"])
        assert set(tag["quality"]) == {"sharpness", "contrast", "brightness"}
        assert tag["quality"]["sharpness"] == json.loads(before["quality.json"])["quality"]["sharpness"]
        assert after["png"] == before["png"]


def test_corrupt_shard(fm_shards: list[str], tmp_path: Path) -> None:
    data = Path(fm_shards[1]).read_bytes()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(data[: len(data) // 2 + 100])
    inputs = [fm_shards[0], str(truncated), fm_shards[2]]
    with pytest.raises(Exception, match="truncated|unexpected end|EOF|empty"):
        _with_timeout(tag_shards, inputs, tmp_path / "raise", "sharpness")
    handler = SkipAndCount(warn=False)
    report = _with_timeout(tag_shards, inputs, tmp_path / "skip", "sharpness", handler=handler)
    assert handler.total >= 1 and report.skipped == dict(handler.counts)
    keys = [s["__key__"] for s in _samples(report.shards)]
    partial = [k for k in keys if 80 <= int(k) < 160]
    assert keys[:80] == [f"{i:08d}" for i in range(80)] and keys[-80:] == [f"{i:08d}" for i in range(160, 240)]
    assert 0 < len(partial) < 80 and partial == [f"{i:08d}" for i in range(80, 80 + len(partial))]


def test_missing_shard_file(tmp_path: Path, fm_shards: list[str]) -> None:
    with pytest.raises(FileNotFoundError):
        _with_timeout(tag_shards, [str(tmp_path / "absent.tar")], tmp_path / "o", "sharpness")
    handler = SkipAndCount(warn=False)
    report = _with_timeout(tag_shards, [str(tmp_path / "absent.tar"), fm_shards[0]], tmp_path / "o2", "sharpness", handler=handler)
    assert report.count == 80 and handler.counts == {"FileNotFoundError": 1}


def test_expand_shards(fm_shards: list[str]) -> None:
    pattern = fm_shards[0].replace("fm-000000", "fm-{000000..000002}")
    assert expand_shards(pattern) == fm_shards
    with pytest.raises(ValueError, match="at least one shard"):
        expand_shards([])
    with pytest.raises(TypeError, match="should be shard paths"):
        expand_shards([3])


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"maxcount": 0}, ValueError),
        ({"maxsize": -1}, ValueError),
        ({"prefix": "a/b"}, ValueError),
        ({"prefix": ""}, ValueError),
        ({"handler": "drop"}, ValueError),
        ({"batch_size": 0}, ValueError),
    ],
)
def test_tag_bad_arguments(fm_shards: list[str], tmp_path: Path, kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error, match="should"):
        tag_shards(fm_shards[0], tmp_path, "sharpness", **kwargs)


def test_tag_bad_out_dir(fm_shards: list[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without '%'"):
        tag_shards(fm_shards[0], str(tmp_path / "a%d"), "sharpness")
    with pytest.raises(TypeError, match="out_dir should be"):
        tag_shards(fm_shards[0], 3, "sharpness")  # type: ignore[arg-type]


def test_sidecar_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "x.quality.json"
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="sidecar index of format"):
        read_sidecar(path)
    index = SidecarIndex("x.tar", {"m": {"fingerprint": "f", "higher_is_better": True}}, {"k": {"m": 1.0}})
    with pytest.raises(KeyError, match="should be one of"):
        index.scores("other")
    with pytest.raises(TypeError, match="url should be"):
        score_shard(3, "sharpness")  # type: ignore[arg-type]
