"""``qualoader profile show``: the shipped default, JSON output, altered and missing files."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from qualoader.cli import main
from qualoader.profiles import WeightsFile, default_profile_path, load_profile, save_profile


def test_show_prints_every_part_of_the_shipped_profile(capsys) -> None:
    assert main(["profile", "show", str(default_profile_path("bn-shift"))]) == 0
    out = capsys.readouterr().out
    for expected in (
        "fashion-mnist/bn-shift",
        "embedded: fashion-mnist-cnn",
        "ok (sha256 matches)",
        "1x28x28",
        "Ankle boot",
        "isotonic",
        "held_out",
    ):
        assert expected in out, expected


def test_show_json_has_identity_and_file_checks(capsys) -> None:
    assert main(["profile", "show", str(default_profile_path("feature-distance")), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metric"]["name"] == "feature-distance" and data["files"] == {"weights": "ok (sha256 matches)"}
    assert data["identity"] == load_profile(default_profile_path("feature-distance")).identity


def test_show_reports_altered_weights_with_exit_code_1(tmp_path: Path, capsys) -> None:
    profile = load_profile(default_profile_path("bn-shift"))
    weights = tmp_path / "weights.pt"
    shutil.copyfile(profile.reference.weights.path, weights)
    path = save_profile(
        replace(profile, reference=replace(profile.reference, weights=WeightsFile(weights, profile.reference.weights.sha256))),
        tmp_path / "p.json",
    )
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    assert main(["profile", "show", str(path)]) == 1
    assert "ALTERED" in capsys.readouterr().out
    weights.unlink()
    assert main(["profile", "show", str(path)]) == 1
    assert "MISSING" in capsys.readouterr().out


def test_show_missing_profile_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["profile", "show", str(tmp_path / "absent.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qualoader profile: error: path should be an existing profile JSON file") and err.count("\n") == 1
