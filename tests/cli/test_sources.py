"""The one SOURCE grammar of the commands: ``fashion-mnist[:split]``, an image folder, or webdataset shards."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from qualoader.cli._errors import UserError
from qualoader.cli._sources import SOURCE_KINDS, parse_source


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """``images/a/0.png`` (an image folder), ``shards/d-00000{0,1,2}.tar`` (a folder of shards)."""
    (tmp_path / "images" / "a").mkdir(parents=True)
    Image.new("L", (8, 8), 128).save(tmp_path / "images" / "a" / "0.png")
    (tmp_path / "shards").mkdir()
    for k in range(3):
        (tmp_path / "shards" / f"d-{k:06d}.tar").write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize(("text", "split"), [("fashion-mnist", None), ("fashion-mnist:test", "test"), ("fashion-mnist:train", "train")])
def test_fashion_mnist(text: str, split: str | None) -> None:
    source = parse_source(text)
    assert source.kind == "fashion-mnist" and source.split == split
    assert source.resolved_split(None) == (split or "test") and source.report_source() == f"fashion-mnist:{split or 'test'}"


def test_split_option_agrees_or_is_refused() -> None:
    assert parse_source("fashion-mnist").resolved_split("train") == "train"
    assert parse_source("fashion-mnist:train").resolved_split("train", default="test") == "train"
    with pytest.raises(UserError, match="--split should agree with SOURCE, but got SOURCE='fashion-mnist:test' and --split='train'"):
        parse_source("fashion-mnist:test").resolved_split("train")
    with pytest.raises(
        UserError, match="SOURCE should be fashion-mnist, fashion-mnist:train or fashion-mnist:test, but got SOURCE='fashion-mnist:val'"
    ):
        parse_source("fashion-mnist:val")


def test_folder_and_shards(layout: Path) -> None:
    folder = parse_source(str(layout / "images"))
    assert folder.kind == "folder" and folder.folder == layout / "images" and folder.report_source() == str(layout / "images")
    expected = tuple(str(layout / "shards" / f"d-{k:06d}.tar") for k in range(3))
    for text in ([str(layout / "shards")], [str(layout / "shards" / "d-{000000..000002}.tar")], list(expected)):
        shards = parse_source(text)
        assert shards.kind == "shards" and shards.shards == expected and shards.report_source() == list(expected)


def test_remote_shards_are_not_checked_for_existence() -> None:
    source = parse_source(["pipe:cat a.tar", "https://example.org/b-{0..1}.tar"])
    assert source.shards == ("pipe:cat a.tar", "https://example.org/b-0.tar", "https://example.org/b-1.tar")


def test_bad_sources(layout: Path) -> None:
    with pytest.raises(UserError, match="SOURCE should be an existing folder or shard, but got SOURCE='.*nowhere', which does not exist"):
        parse_source(str(layout / "nowhere"))
    with pytest.raises(UserError, match="which is none of them"):
        parse_source(str(layout / "images" / "a" / "0.png"))
    with pytest.raises(UserError, match="but got nothing"):
        parse_source([])


@pytest.mark.parametrize("kind", sorted(SOURCE_KINDS))
def test_commands_state_the_kinds_they_take(kind: str, layout: Path) -> None:
    text = {"fashion-mnist": "fashion-mnist", "folder": str(layout / "images"), "shards": str(layout / "shards")}[kind]
    others = SOURCE_KINDS - {kind}
    with pytest.raises(UserError, match=f"for this command, but got SOURCE='{text}'"):
        parse_source(text, kinds=others)
    assert parse_source(text, kinds={kind}).kind == kind
