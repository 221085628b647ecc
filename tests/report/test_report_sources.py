"""Report sources: image folders, Fashion-MNIST, WebDataset shards, quality tags."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qualoader.report.sources import decode_image, load_source, parse_quality_tags


def test_folder_source(image_folder: Path) -> None:
    source = load_source(image_folder)
    assert source.kind == "folder" and source.total == 26 and len(source.samples) == 26
    labels = {sample.label for sample in source.samples}
    assert labels == {"photos", "fashion"}
    photo = next(sample for sample in source.samples if sample.label == "photos").decode()
    item = next(sample for sample in source.samples if sample.label == "fashion").decode()
    assert photo.shape == (3, 64, 64) and photo.dtype == torch.uint8
    assert item.shape == (1, 28, 28)
    assert len(load_source(str(image_folder), max_images=5).samples) == 5


def test_fashion_mnist_source(fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    source = load_source("fashion-mnist:test", max_images=7)
    assert source.kind == "fashion-mnist" and source.total == len(fashion_mnist_test[0]) and len(source.samples) == 7
    torch.testing.assert_close(source.samples[3].decode(), fashion_mnist_test[0][3])


def test_shard_source_reads_tags_and_images(shards: list[Path], fashion_images: tuple[torch.Tensor, torch.Tensor]) -> None:
    source = load_source(shards)
    assert source.kind == "shards" and source.total == 60 and not source.problems
    assert [sample.key for sample in source.samples[:2]] == ["sample0000", "sample0001"]
    assert source.samples[5].tags == {"sharpness": 5.0}
    assert source.samples[45].tags == {}
    assert source.samples[7].shard == shards[0].name and source.samples[45].shard == shards[2].name
    torch.testing.assert_close(source.samples[45].decode(), fashion_images[0][45])
    assert source.samples[45].label == str(int(fashion_images[1][45]))
    assert len(load_source(shards[0].parent).samples) == 60  # a folder of shards


def test_shard_source_reports_bad_members(tmp_path: Path, shards: list[Path]) -> None:
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as archive:
        for name, data in (("a.txt", b"no image"), ("b.png", b"not a png"), ("b.quality.json", b"[1, 2]")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    source = load_source([shards[0], broken])
    assert len(source.samples) == 21
    assert any("a: no image member" in problem for problem in source.problems)
    assert any("quality.json ignored" in problem for problem in source.problems)
    with pytest.raises(ValueError, match=r"(cannot decode|should decode to an image)"):  # the decoder's message names the failure
        next(sample for sample in source.samples if sample.key == "b").decode()


@pytest.mark.parametrize("cut", ["member-boundary", "inside-data"])
def test_truncated_shard_is_reported_not_read_short(cut: str, tmp_path: Path, shards: list[Path]) -> None:
    with tarfile.open(shards[0]) as archive:
        members = archive.getmembers()
    tenth = next(member for member in members if member.name.startswith("sample0010"))  # the 11th sample's first member
    length = tenth.offset if cut == "member-boundary" else tenth.offset_data + 100
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(shards[0].read_bytes()[:length])
    if cut == "member-boundary":  # stock tarfile sees a complete, shorter shard: what the report used to read, without a word
        with tarfile.open(truncated) as archive:
            assert len(archive.getmembers()) < len(members)
    source = load_source([truncated, shards[1]])
    (problem,) = source.problems
    # the samples before the cut are still reported (but not the one in progress, which may lack members), the next shard in full
    kept = 9 if cut == "member-boundary" else 10
    assert problem.startswith(f"truncated.tar: truncated or corrupt shard after {kept} samples")
    assert [sample.key for sample in source.samples if sample.shard == "truncated.tar"] == [f"sample{i:04d}" for i in range(kept)]
    assert sum(sample.shard == shards[1].name for sample in source.samples) == 20


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"sharpness": 0.5, "noise": 2}, {"sharpness": 0.5, "noise": 2.0}),
        ({"sharpness": {"score": 0.5, "fingerprint": "abc"}}, {"sharpness": 0.5}),
        ({"scores": {"bn-shift": {"value": 0.1}}, "fingerprints": {"bn-shift": "x"}}, {"bn-shift": 0.1}),
        ({"quality": {"a": 1.0}, "difficulty": {"a": 0.2}}, {"a": 1.0}),
        ({"a": "text", "b": True, "c": None, "d": 3.0}, {"d": 3.0}),
        ({"metric": "noise", "quality": 0.25, "fingerprint": "f"}, {"noise": 0.25}),
    ],
)
def test_parse_quality_tags(document: dict, expected: dict) -> None:
    assert parse_quality_tags(json.dumps(document).encode()) == expected


def test_decode_image_modes() -> None:
    rgba = Image.fromarray(np.full((5, 4, 4), 200, dtype=np.uint8))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue())
    assert decoded.shape == (3, 5, 4) and int(decoded.max()) == 200


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: parse_quality_tags(b"\xff\xfe"), ValueError),
        (lambda: parse_quality_tags(b"[1]"), ValueError),
        (lambda: decode_image(b"garbage"), ValueError),
        (lambda: load_source("fashion-mnist:valid"), ValueError),
        (lambda: load_source("/nonexistent/folder"), FileNotFoundError),
        (lambda: load_source([]), ValueError),
        (lambda: load_source(3), TypeError),
        (lambda: load_source([3]), TypeError),
        (lambda: load_source("fashion-mnist:test", max_images=0), ValueError),
    ],
)
def test_bad_input(call, error) -> None:
    with pytest.raises(error):
        call()


def test_bad_paths(tmp_path: Path, image_folder: Path) -> None:
    with pytest.raises(ValueError, match="with none"):
        load_source(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path)
    with pytest.raises(ValueError, match="non-shard"):
        load_source([image_folder, image_folder / "photos" / "photo0.png"])
    not_a_tar = tmp_path / "fake.tar"
    not_a_tar.write_bytes(b"nothing")
    with pytest.raises(ValueError, match="without any"):
        load_source([not_a_tar])


def test_file_name_that_is_not_utf8(tmp_path: Path, image_folder: Path) -> None:
    import os

    from qualoader.report import build_report

    png = next(image_folder.rglob("*.png")).read_bytes()
    folder = tmp_path / "odd-names"
    (folder / "cls").mkdir(parents=True)
    (folder / "cls" / "good.png").write_bytes(png)
    odd = os.path.join(os.fsencode(folder / "cls"), b"caf\xe9.png")  # latin-1, not UTF-8
    with open(odd, "wb") as file:
        file.write(png)
    source = load_source(folder)
    assert sorted(sample.key for sample in source.samples) == ["cls/caf\ufffd", "cls/good"]
    torch.testing.assert_close(source.samples[0].decode(), source.samples[1].decode())  # the real file is still read
    index = build_report(folder, ["sharpness"], tmp_path / "report")
    assert "caf\ufffd" in index.read_text(encoding="utf-8")  # shown, with the undecodable byte marked
    assert len(json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))["metrics"]) == 1
