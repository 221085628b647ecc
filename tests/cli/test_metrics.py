from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qualoader.cli import main
from qualoader.corruptions import list_corruptions
from qualoader.metrics import list_metrics


def test_help_lists_the_metrics_command():
    result = subprocess.run([sys.executable, "-m", "qualoader", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "metrics" in result.stdout


def test_table_lists_every_metric_with_mode_and_direction(capsys):
    assert main(["metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:] if line and line.split()[0] in list_metrics()}
    assert set(rows) == set(list_metrics())
    assert rows["ssim"][1:4] == ["FR", "higher=better", "no"]
    assert rows["noise"][1:4] == ["NR", "lower=better", "no"]


def test_json_and_mode_filter(capsys):
    assert main(["metrics", "--mode", "FR", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in rows} == set(list_metrics("FR"))
    assert all(row["mode"] == "FR" for row in rows)


def test_pyiqa_listing_reports_weights(capsys):
    pytest.importorskip("pyiqa")
    assert main(["metrics", "--pyiqa", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["pyiqa:fsim"]["weights"] == "no" and rows["pyiqa:fsim"]["mode"] == "FR"
    assert rows["pyiqa:brisque"]["requires_weights"] and not rows["pyiqa:brisque"]["higher_is_better"]


def test_pyiqa_listing_without_pyiqa_fails_cleanly(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyiqa", None)
    assert main(["metrics", "--pyiqa"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("qualoader metrics: error: --pyiqa needs pyiqa") and "pip install 'qualoader[iqa]'" in err and err.count("\n") == 1
    )


def test_bad_mode_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as error:
        main(["metrics", "--mode", "XR"])
    assert error.value.code == 2
    assert capsys.readouterr().err.startswith("qualoader metrics: error: argument --mode: invalid choice: 'XR'")


def test_help_lists_metric_and_corruption_names():
    result = subprocess.run([sys.executable, "-m", "qualoader", "calibrate", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    listed = result.stdout[result.stdout.index("no-reference metrics:") :]
    words = set(listed.replace(",", " ").split())  # whole names: a line break never cuts one
    assert set(list_metrics()) <= words and set(list_corruptions()) <= words
    assert "jpeg_compression = jpeg" in listed
