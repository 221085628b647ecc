"""Labelled images for ``calibrate --data``: an unreadable image or a truncated shard is one error naming it."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qualoader.cli._errors import UserError
from qualoader.cli._labelled import load_labelled
from qualoader.cli._sources import parse_source

_LABELS = ("cat", "dog")


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((12, 10)) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _load(items: str | list[str]) -> torch.Tensor:
    source = parse_source(items, name="--data")
    return load_labelled(source, _LABELS, (8, 8), 1).images


def test_folder_with_an_unreadable_image(tmp_path: Path) -> None:
    for label in _LABELS:
        (tmp_path / label).mkdir()
        (tmp_path / label / "ok.png").write_bytes(_png(len(label)))
    assert _load(str(tmp_path)).shape == (2, 1, 8, 8)  # readable: both images, at the network's size
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match=r"^--data should hold readable images, but got .*dog/broken\.png.*should decode to an image"):
        _load(str(tmp_path))


def test_shards_truncated_or_holding_an_unreadable_image(tmp_path: Path) -> None:
    members = [(f"k{i}.png", _png(i)) for i in range(6)]
    members = [item for i, png in enumerate(members) for item in (png, (f"k{i}.cls", _LABELS[i % 2].encode()))]
    good = _shard(tmp_path / "good.tar", members)
    assert _load(str(good)).shape == (6, 1, 8, 8)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"^--data should hold readable shards, but got '.*truncated\.tar'"):
        _load(str(truncated))
    broken = _shard(tmp_path / "broken.tar", [*members, ("k9.png", b"not an image"), ("k9.cls", b"cat")])
    with pytest.raises(UserError, match=r"^--data should hold readable images, but got .*broken\.tar: sample 'k9'"):
        _load(str(broken))
