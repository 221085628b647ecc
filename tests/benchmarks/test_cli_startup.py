"""The whole-command benchmark on four images: every command runs and the figures are sound (not their values)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow  # six subprocesses, three of them import torch (~20 s on two shared cores)
def test_tiny_run_times_every_command(tmp_path, load_script, capsys) -> None:
    script = load_script("benchmarks/cli_startup.py")
    script.main(["--count", "4", "--size", "32", "--workers", "0", "--repeats", "1", "--json", str(tmp_path / "t.json")])
    figures = json.loads((tmp_path / "t.json").read_text())
    assert set(figures["median_s"]) == {
        "python -c pass", "import torch", "decode only", "qualoader --help", "precompute, first image", "precompute, all images",
    }  # fmt: skip
    assert all(seconds > 0 for seconds in figures["median_s"].values())
    # the interpreter alone is faster than importing torch, which precompute cannot avoid
    assert figures["median_s"]["python -c pass"] < figures["median_s"]["import torch"] < figures["median_s"]["precompute, all images"]
    assert "x import torch" in capsys.readouterr().out
