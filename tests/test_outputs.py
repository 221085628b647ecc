"""The one output check: an output that is, lies inside or contains an input is refused, however it is spelled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qualoader._outputs import OutputOverlapError, check_output, sidecar_inputs


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "store.json").write_text("{}")
    return folder


@pytest.mark.parametrize(
    ("spelling", "relation"),
    [
        ("store/store.json", "lies inside"),
        ("store/../store/store.json", "lies inside"),
        ("store/new.csv", "lies inside"),
        ("store", "is"),
        ("./store/", "is"),
        (".", "contains"),
    ],
)
def test_paths_are_compared_resolved(store: Path, tmp_path: Path, spelling: str, relation: str) -> None:
    output = tmp_path / spelling
    with pytest.raises(OutputOverlapError) as raised:
        check_output(output, "--output", [("SOURCE", store)])
    message = str(raised.value)
    assert message.startswith("--output should not overwrite or lie inside an input, but got --output=")
    assert f"which {relation} SOURCE={str(store)!r}" in message and "\n" not in message


def test_symbolic_links_hard_links_and_bind_like_aliases(store: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(store)  # a second path to the store folder
    with pytest.raises(OutputOverlapError, match="lies inside"):
        check_output(alias / "store.json", "--output", [("SOURCE", store)])
    linked = tmp_path / "linked.json"
    linked.symlink_to(store / "store.json")
    with pytest.raises(OutputOverlapError, match="which is SOURCE"):
        check_output(linked, "--output", [("SOURCE", store / "store.json")])
    hard = tmp_path / "hard.json"
    os.link(store / "store.json", hard)
    with pytest.raises(OutputOverlapError, match="same file"):
        check_output(hard, "--output", [("--weights", store / "store.json")])
    with pytest.raises(OutputOverlapError, match="hard link of a file inside"):
        check_output(hard, "--output", [("SOURCE", store)])


def test_unrelated_outputs_and_special_files_pass(store: Path, tmp_path: Path) -> None:
    check_output(tmp_path / "scores.csv", "--output", [("SOURCE", store), ("--profile", None)])
    check_output(tmp_path / "store-copy" / "x.csv", "--output", [("SOURCE", store)])  # a name that only starts like it
    fifo = store / "pipe"
    os.mkfifo(fifo)
    check_output(fifo, "--output", [("SOURCE", store)])  # written through, never replaced: it cannot destroy the store


def test_missing_inputs_are_compared_by_path(tmp_path: Path) -> None:
    with pytest.raises(OutputOverlapError, match="--weights"):
        check_output(tmp_path / "w.pt", "--out", [("--weights", tmp_path / "sub" / ".." / "w.pt")])


def test_sidecar_inputs_name_each_shard_and_its_sidecar() -> None:
    assert sidecar_inputs("SOURCE", ["a/x.tar", "pipe:cat y.tar", "https://h/z.tar"]) == [
        ("SOURCE", "a/x.tar"),
        ("SOURCE", "a/x.tar.quality.json"),
    ]
