"""write_image_shards / encode_image: lossless round trip through real shards."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch
import webdataset as wds

from qualoader.webdataset import SidecarIndex, decode_image, encode_image, write_image_shards
from qualoader.webdataset.writing import StagedShardSet


def test_round_trip(tmp_path: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor], photos: torch.Tensor) -> None:
    images, labels = fashion_mnist_test
    shards = write_image_shards(images[:25], str(tmp_path / "fm-%03d.tar"), labels=labels[:25], maxcount=10)
    assert [p.name for p in shards] == ["fm-000.tar", "fm-001.tar", "fm-002.tar"]
    samples = list(wds.WebDataset([str(p) for p in shards], shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{i:08d}" for i in range(25)]
    for i, sample in enumerate(samples):
        assert torch.equal(decode_image(sample["png"]), images[i]) and int(sample["cls"]) == int(labels[i])
    photo = decode_image(encode_image(photos[0]))
    assert photo.shape == (3, 128, 128) and torch.equal(photo, (photos[0].double() * 255).round().to(torch.uint8))


def test_jpeg_and_variable_sizes(tmp_path: Path, photos: torch.Tensor) -> None:
    images = [photos[0], photos[1, :, :64, :96]]
    (shard,) = write_image_shards(images, tmp_path / "p-%d.tar", keys=["big", "small"], image_format="jpg")
    samples = list(wds.WebDataset(str(shard), shardshuffle=False))
    assert [decode_image(s["jpg"]).shape for s in samples] == [(3, 128, 128), (3, 64, 96)]


def test_bad_arguments(tmp_path: Path) -> None:
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="pattern should contain"):
        write_image_shards(images, str(tmp_path / "x.tar"))
    with pytest.raises(ValueError, match="labels should have"):
        write_image_shards(images, str(tmp_path / "x-%d.tar"), labels=[1])
    with pytest.raises(ValueError, match="keys should be"):
        write_image_shards(images, str(tmp_path / "x-%d.tar"), keys=["a", "a"])
    with pytest.raises(ValueError, match="keys should be"):
        write_image_shards(images, str(tmp_path / "x-%d.tar"), keys=["a.b", "c"])
    with pytest.raises(ValueError, match="image_format should be"):
        write_image_shards(images, str(tmp_path / "x-%d.tar"), image_format="gif")
    with pytest.raises(ValueError, match="should have C in"):
        encode_image(torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match="image should be"):
        encode_image([[0]])  # type: ignore[arg-type]


def _staged(out: Path, **kwargs: object) -> StagedShardSet:
    options = {"maxcount": 2, "maxsize": 10**9, "overwrite": False, "new_index": lambda name: SidecarIndex(name, {})}
    return StagedShardSet(out, "s-%03d.tar", **{**options, **kwargs})  # type: ignore[arg-type]


def _member(name: str, data: bytes, **fields: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def test_staged_set_publishes_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with _staged(out) as staged:
        for i in range(5):
            staged.write_sample([_member(f"k{i}.bin", bytes([i]) * (i * 300))])
            staged.index.add(f"k{i}", {})  # type: ignore[union-attr]
        # staged beside the output folder, which stays empty until the one-step publish
        assert list(out.iterdir()) == [] and staged.staging.parent == tmp_path  # type: ignore[union-attr]
    assert sorted(p.name for p in out.iterdir()) == [f"s-{i:03d}.tar{ext}" for i in range(3) for ext in ("", ".quality.json")]
    with tarfile.open(out / "s-001.tar") as tar:
        assert [(m.name, tar.extractfile(m).read()) for m in tar] == [("k2.bin", b"\x02" * 600), ("k3.bin", b"\x03" * 900)]
    assert [p.name for p, _ in staged.published] == ["s-000.tar", "s-001.tar", "s-002.tar"]


def test_staged_set_abort_and_refusals(tmp_path: Path) -> None:
    out = tmp_path / "new"
    with pytest.raises(RuntimeError, match="boom"), _staged(out) as staged:
        staged.write_sample([_member("a.bin", b"x")])
        raise RuntimeError("boom")
    assert not out.exists()  # created by the set, removed again
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="which is a file"):
        _staged(tmp_path / "file").__enter__()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "old.tar").write_bytes(b"old")
    with pytest.raises(ValueError, match="new or empty"):
        _staged(kept).__enter__()
    with pytest.raises(KeyboardInterrupt), _staged(kept, overwrite=True) as staged:
        staged.write_sample([_member("a.bin", b"x")])
        raise KeyboardInterrupt
    assert [p.name for p in kept.iterdir()] == ["old.tar"] and (kept / "old.tar").read_bytes() == b"old"


def test_copied_headers_drop_stale_pax_records(tmp_path: Path) -> None:
    # an input pax "size" record for a member whose data changes (a re-tag) must not survive, or the copy is unreadable
    info, _ = _member("a.quality.json", b"12345678", mtime=1.5, pax_headers={"size": "8", "comment": "kept", "GNU.sparse.size": "8"})
    out = tmp_path / "out"
    with _staged(out) as staged:
        staged.write_sample([(info, b"new and longer bytes")])
    with tarfile.open(out / "s-000.tar") as tar:
        (member,) = tar.getmembers()
        assert tar.extractfile(member).read() == b"new and longer bytes"
        assert member.pax_headers.get("comment") == "kept" and "GNU.sparse.size" not in member.pax_headers and member.mtime == 1.5


def test_write_image_shards_never_leaves_a_partial_shard(tmp_path: Path) -> None:
    images = [torch.zeros(1, 4, 4, dtype=torch.uint8)] * 3 + [torch.zeros(2, 4, 4)]  # the 4th image is refused
    with pytest.raises(ValueError, match="should have C in"):
        write_image_shards(images, tmp_path / "x-%d.tar", maxcount=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-0.tar"]  # the first shard was complete; no temp file left
    assert [s["__key__"] for s in wds.WebDataset(str(tmp_path / "x-0.tar"), shardshuffle=False)] == ["00000000", "00000001"]
