"""A profile's numbers and files are checked before anything is allocated, hashed or built.

Each case is a profile a careless or hostile sender could write: a 10^5 px input, a NaN mean, a zero
std, JSON nested far deeper than any profile, and a 200 GB (sparse) weights file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from qualoader.cli import main
from qualoader.profiles import (
    MAX_INPUT_SIZE,
    MAX_WEIGHTS_BYTES,
    InputTransform,
    ProfileError,
    WeightsFile,
    load_profile,
)


def _edited(source: Path, target: Path, edit) -> Path:
    data = json.loads(source.read_text())
    edit(data)
    target.write_text(json.dumps(data))  # json.dumps writes NaN as the bare token, as a hostile file would
    return target


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["reference"]["transform"].update(input_size=[100_000, 100_000]),
            f"input_size should be a \\(height, width\\) pair of ints in \\[1, {MAX_INPUT_SIZE}\\]",
        ),
        (lambda d: d["reference"]["transform"].update(input_size=[True, 28]), "input_size should be"),
        (
            lambda d: d["reference"]["transform"].update(mean=[float("nan")]),
            r"mean should be finite numbers, 1 or one per channel \(1\), but got mean=\(nan,\)",
        ),
        (lambda d: d["reference"]["transform"].update(std=[float("inf")]), "std should be finite numbers"),
        (lambda d: d["reference"]["transform"].update(std=[0.0]), "std should be positive numbers, but got std=\\[0.0\\]"),
        (lambda d: d["reference"].update(source="entry_point", name="../evil:build"), "name should be 'package.module:function'"),
    ],
)
def test_bad_numbers_are_refused_with_one_line(copied_default: Path, tmp_path: Path, capsys, edit, message: str) -> None:
    path = _edited(copied_default, tmp_path / "bad.json", edit)
    with pytest.raises(ProfileError, match=message):
        load_profile(path, trust=True)
    assert main(["profile", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qualoader profile: error: ") and err.count("\n") == 1


def test_the_input_size_bound_holds_in_code_too() -> None:
    InputTransform((MAX_INPUT_SIZE, MAX_INPUT_SIZE), 3, (0.5,), (0.25,))
    with pytest.raises(ProfileError, match="input_size"):
        InputTransform((MAX_INPUT_SIZE + 1, 28), 3, (0.5,), (0.25,))


def test_deeply_nested_json_is_one_error_not_a_recursion_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "nested.json"
    path.write_text('{"format": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ProfileError, match="nested at most 64 levels"):
        load_profile(path)
    assert main(["profile", "show", str(path)]) == 2
    assert "nested at most 64 levels" in capsys.readouterr().err


def test_a_huge_sparse_weights_file_is_refused_before_hashing(copied_default: Path, tmp_path: Path, capsys) -> None:
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as file:
        os.truncate(file.fileno(), 200 * 1024**3)  # sparse: 200 GB on paper, no disk used
    path = _edited(copied_default, tmp_path / "huge.json", lambda d: d["reference"]["weights"].update(path="huge.pt"))
    started = time.perf_counter()
    with pytest.raises(ProfileError, match=f"should be a file of at most {MAX_WEIGHTS_BYTES} bytes"):
        load_profile(path)
    with pytest.raises(ProfileError, match="at most"):
        WeightsFile.of(huge)
    assert main(["profile", "show", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"TOO LARGE ({200 * 1024**3} bytes" in out
    assert time.perf_counter() - started < 10  # hashing 200 GB would take minutes


def test_profile_show_escapes_terminal_control_characters(copied_default: Path, tmp_path: Path, capsys) -> None:
    def edit(data: dict) -> None:
        data["name"] = "evil\x1b]0;owned\x07\x1b[2J"
        data["reference"]["labels"][0] = "shirt\r\x1b[31mred"
        data["provenance"]["data"] = "\u202eesrever"

    path = _edited(copied_default, tmp_path / "escape.json", edit)
    assert main(["profile", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out and "\x07" not in out
    assert "evil\\x1b]0;owned\\x07\\x1b[2J" in out and "shirt\\r\\x1b[31mred" in out and "\\u202eesrever" in out
    assert main(["profile", "show", str(path), "--json"]) == 0
    assert "\x1b" not in capsys.readouterr().out


def test_weights_beside_the_profile_are_stored_relative_and_others_absolute(copied_default: Path, tmp_path: Path) -> None:
    from qualoader.profiles import save_profile

    profile = load_profile(copied_default)
    beside = save_profile(profile, copied_default.parent / "again.json")
    assert json.loads(beside.read_text())["reference"]["weights"]["path"] == profile.reference.weights.path.name
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = save_profile(profile, other / "p.json")
    stored = json.loads(moved.read_text())["reference"]["weights"]["path"]
    assert Path(stored).is_absolute() and Path(stored) == profile.reference.weights.path
    assert load_profile(moved).reference.weights.path == profile.reference.weights.path
