"""tag_shards / score_shard / sidecars: real shards in, plain webdataset and tar out."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import webdataset as wds

from qualoader.metrics import QualityMetric, create_metric
from qualoader.webdataset import (
    CorruptShardError,
    DuplicateKeyError,
    ImageDecodeError,
    MissingTagError,
    SidecarIndex,
    SkipAndCount,
    UnsupportedMemberError,
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


# -- adversarial: inputs, atomicity, names, links, duplicates, exact counts ------------------------------------------


def _png(size: int = 8, seed: int = 0) -> bytes:
    from qualoader.webdataset import encode_image

    return encode_image(torch.randint(0, 256, (1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)))


def _tar(path: Path, members: list[tuple], tar_format: int = tarfile.PAX_FORMAT) -> Path:
    """Write a tar of ``(name, data)`` files, ``(name, None, "sym"/"hard", target)`` links."""
    with tarfile.open(path, "w", format=tar_format) as tar:
        for name, data, *link in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if link:
                info.type = tarfile.SYMTYPE if link[0] == "sym" else tarfile.LNKTYPE
                info.linkname = link[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _listing(shard: Path) -> list[tuple[str, str, bytes]]:
    """``(name, kind, data-or-link)`` of every member, in order."""
    out = []
    with tarfile.open(shard) as tar:
        for info in tar:
            if info.isreg():
                out.append((info.name, "file", tar.extractfile(info).read()))
            else:
                out.append((info.name, "sym" if info.issym() else "hard", info.linkname.encode()))
    return out


def _final_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class _FailsOnWide(QualityMetric):
    """Mean brightness, but scoring fails for images wider than 8 px (a failing batch)."""

    name = "fails-on-wide"

    def score(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        if images.shape[-1] > 8:
            raise RuntimeError("cannot score wide images")
        return images.mean(dim=(1, 2, 3))


def test_refuses_output_folder_holding_an_input(tmp_path: Path, fm_shards: list[str]) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    shard = folder / "tagged-000000.tar"
    shard.write_bytes(Path(fm_shards[0]).read_bytes())
    before = shard.read_bytes()
    (tmp_path / "link").symlink_to(folder)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "in.tar").symlink_to(shard)
    os.link(fm_shards[1], folder / "hard.tar")
    cases = [
        (str(shard), folder, "holding input"),  # the reported case: re-tagging a shard into its own folder
        (str(shard), tmp_path / "link", "holding input"),  # output through a symlinked folder
        (str(tmp_path / "elsewhere" / "in.tar"), folder, "holding input"),  # input through a symlink
        (fm_shards[1], folder, "the same file as input"),  # a hard link of the input sits in the output
    ]
    for url, out, match in cases:
        with pytest.raises(ValueError, match=match):
            tag_shards(url, out, "contrast", overwrite=True)
    assert shard.read_bytes() == before and _final_files(folder) == ["hard.tar", "tagged-000000.tar"]


def test_non_empty_folder_and_overwrite(tmp_path: Path, fm_shards: list[str]) -> None:
    out = tmp_path / "out"
    first = tag_shards(fm_shards, out, "contrast", maxcount=50)
    assert len(first.shards) == 5
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match="new or empty folder .*--overwrite"):
        tag_shards(fm_shards, out, "contrast", maxcount=200)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"only shards .* also holding \['notes.txt'\]"):
        tag_shards(fm_shards, out, "contrast", maxcount=200, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "notes.txt"} == old  # refused: nothing touched
    (out / "notes.txt").unlink()
    second = tag_shards(fm_shards, out, "contrast", maxcount=200, overwrite=True)
    # no stale shard of the first run stays mixed in
    assert _final_files(out) == [
        "tagged-000000.tar",
        "tagged-000000.tar.quality.json",
        "tagged-000001.tar",
        "tagged-000001.tar.quality.json",
    ]
    assert second.count == 240 and sum(len(read_sidecar(s).quality) for s in second.sidecars) == 240
    assert [s["__key__"] for s in _samples(second.shards)] == [f"{i:08d}" for i in range(240)]


def test_error_midway_keeps_the_old_set(tmp_path: Path, fm_shards: list[str]) -> None:
    out = tmp_path / "out"
    tag_shards(fm_shards[0], out, "contrast")
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = _tar(tmp_path / "bad.tar", [("a.png", b"not a png")])
    with pytest.raises(ImageDecodeError, match=r"bad.tar: sample 'a'"):  # decode errors name shard and key
        tag_shards([fm_shards[1], str(bad)], out, "contrast", overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # no staging folder left, old set intact


def test_truncated_input_with_raise_leaves_nothing(tmp_path: Path, fm_shards: list[str]) -> None:
    data = Path(fm_shards[1]).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptShardError, match="truncated"):
        tag_shards([fm_shards[0], str(cut)], tmp_path / "out", "contrast", maxcount=10)
    assert not (tmp_path / "out").exists()  # created by the run, removed with its staging folder


def test_every_member_carried_whatever_its_name(tmp_path: Path) -> None:
    png, big = _png(8), bytes(range(256)) * 5  # > 512 bytes: spans several tar blocks
    members = [
        ("a.png", png), ("a", b"no extension"), ("a._meta", b"underscore"), ("a.x.y.Z", big), ("a.TXT", b""),
        ("a.lnk", None, "sym", "a.png"), ("a.hard", None, "hard", "a.png"),
        ("dir.v1/b.PNG", _png(8, 1)), ("dir.v1/b.cls", b"3"),
    ]  # fmt: skip
    shard = _tar(tmp_path / "odd.tar", members, tarfile.GNU_FORMAT)
    report = tag_shards(str(shard), tmp_path / "out", "contrast")
    assert report.count == 2 and report.skipped_samples == []
    listing = _listing(report.shards[0])
    carried = [entry for entry in listing if not entry[0].endswith(".quality.json")]
    assert carried == _listing(shard)  # every member, same name, same bytes, links as links, same order
    assert [name for name, _, _ in listing if name.endswith(".quality.json")] == ["a.quality.json", "dir.v1/b.quality.json"]
    with tarfile.open(report.shards[0]) as tar:
        assert tar.getmember("a._meta").mtime == 1_700_000_000  # headers copied, not rewritten


def test_links_that_cannot_be_carried_are_named(tmp_path: Path) -> None:
    shard = _tar(tmp_path / "links.tar", [("a.png", _png()), ("b.png", _png(8, 2)), ("b.hard", None, "hard", "a.png")])
    with pytest.raises(UnsupportedMemberError, match=r"'b.hard' -> 'a.png'"):  # a.png is in another output shard
        tag_shards(str(shard), tmp_path / "out", "contrast", maxcount=1)
    assert not (tmp_path / "out").exists()
    report = tag_shards(str(shard), tmp_path / "out", "contrast", maxcount=2)  # same output shard: kept as a link
    assert ("b.hard", "hard", b"a.png") in _listing(report.shards[0])


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([("a.png", b"x"), ("b.png", b"y"), ("a.cls", b"1")], "key 'a' should appear once in a shard"),  # not adjacent
        ([("a.png", b"x"), ("a.cls", b"1"), ("a.PNG", b"y")], "each member name once"),  # adjacent, case-insensitive
    ],
)
def test_duplicate_keys_are_caught_before_writing(tmp_path: Path, members: list[tuple], match: str) -> None:
    png = _png()
    members = [(name, png if name.lower().endswith("png") else data) for name, data in members]
    shard = _tar(tmp_path / "dup.tar", members)
    with pytest.raises(DuplicateKeyError, match=match):
        tag_shards(str(shard), tmp_path / "out", "contrast")
    assert not (tmp_path / "out").exists()
    handler = SkipAndCount(warn=False)
    report = tag_shards(str(shard), tmp_path / "skip", "contrast", handler=handler)
    index = read_sidecar(report.sidecars[0])
    assert (
        [(e.key, e.error) for e in report.skipped_samples]
        == [("a", "DuplicateKeyError")]
        == [(e.key, e.error) for e in index.skipped_samples]
    )
    names = [name for name, _, _ in _listing(report.shards[0])]
    assert len(names) == len(set(names))  # nothing of the duplicate was written
    assert handler.counts == {"DuplicateKeyError": 1}


def test_duplicate_key_across_inputs_in_one_output_shard(tmp_path: Path) -> None:
    one = _tar(tmp_path / "one.tar", [("k.png", _png())])
    two = _tar(tmp_path / "two.tar", [("k.png", _png(8, 3))])
    with pytest.raises(DuplicateKeyError, match="already"):
        tag_shards([str(one), str(two)], tmp_path / "out", "contrast")
    assert tag_shards([str(one), str(two)], tmp_path / "ok", "contrast", maxcount=1).count == 2


def test_exact_skip_counts_listed_by_shard_and_key(tmp_path: Path) -> None:
    wide = [(f"w{i}.png", _png(16, i)) for i in range(5)]  # one failing batch of 5 samples
    narrow = [(f"n{i}.png", _png(8, i)) for i in range(3)]
    members = [narrow[0], wide[0], ("bad.png", b"garbage"), *wide[1:], narrow[1], ("nopic.txt", b"text"), narrow[2]]
    shard = _tar(tmp_path / "mixed.tar", members)
    with pytest.warns(RuntimeWarning):
        report = tag_shards(str(shard), tmp_path / "out", _FailsOnWide(), batch_size=16, handler="skip")
    assert report.count == 3 and report.skipped == {"RuntimeError": 5, "ImageDecodeError": 1, "MissingImageError": 1}
    expected = ["w0", "bad", "w1", "w2", "w3", "w4", "nopic"]  # stream order, each sample once
    assert [e.key for e in report.skipped_samples] == expected
    assert all(e.shard == str(shard) for e in report.skipped_samples)
    index = read_sidecar(report.sidecars[0])
    assert index.keys == ["n0", "n1", "n2"] and index.skipped == 7 and index.skipped_samples == report.skipped_samples
    assert "mixed.tar: sample 'bad'" in next(e.message for e in report.skipped_samples if e.key == "bad")
    scored = score_shard(str(shard), _FailsOnWide(), batch_size=16, handler=SkipAndCount(warn=False))  # the same rules
    assert [(e.key, e.error) for e in scored.skipped_samples] == [(e.key, e.error) for e in report.skipped_samples]


def test_all_samples_skipped_still_lists_them(tmp_path: Path) -> None:
    shard = _tar(tmp_path / "junk.tar", [("a.png", b"x"), ("README", b"about")])
    report = tag_shards(str(shard), tmp_path / "out", "contrast", handler=SkipAndCount(warn=False))
    assert report.count == 0 and [e.key for e in report.skipped_samples] == ["a", "README"]
    assert _listing(report.shards[0]) == [] and read_sidecar(report.sidecars[0]).skipped == 2


def test_retagging_a_malformed_tag_is_refused(tmp_path: Path) -> None:
    shard = _tar(tmp_path / "t.tar", [("a.png", _png()), ("a.quality.json", b"{not json")])
    with pytest.raises(MissingTagError, match="not JSON"):
        tag_shards(str(shard), tmp_path / "out", "contrast")


def test_locked_and_stale_staging(tmp_path: Path, fm_shards: list[str]) -> None:
    import fcntl

    out = tmp_path / "out"
    (out / ".qualoader-staging-killed").mkdir(parents=True)  # what a kill -9 leaves
    (out / ".qualoader-staging-killed" / "tagged-000000.tar").write_bytes(b"partial")
    handle = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another process is writing"):
            tag_shards(fm_shards[0], out, "contrast")
    finally:
        os.close(handle)
    report = tag_shards(fm_shards[0], out, "contrast")
    assert _final_files(out) == ["tagged-000000.tar", "tagged-000000.tar.quality.json"] and report.count == 80


def test_interrupt_leaves_no_trace(tmp_path: Path, fm_shards: list[str]) -> None:
    class _Interrupting(_FailsOnWide):
        name = "interrupting"
        calls = 0

        def score(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
            type(self).calls += 1
            if type(self).calls == 3:
                raise KeyboardInterrupt  # Ctrl-C in the middle of the run
            return images.float().mean(dim=(1, 2, 3))

    out = tmp_path / "out"
    tag_shards(fm_shards[0], out, "contrast")
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(KeyboardInterrupt):
        tag_shards(fm_shards, out, _Interrupting(), batch_size=16, maxcount=20, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old
