"""The README's quick start (examples/quickstart.py) runs end to end on real Fashion-MNIST, on a fresh machine too."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from qualoader import datasets
from qualoader.datasets import FashionMNISTSampleWarning

_SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def test_quickstart_scores_stores_and_samples(tmp_path, monkeypatch, capsys) -> None:
    # As on a fresh machine: no full Fashion-MNIST copy, so the bundled sample, and a warning that says so.
    monkeypatch.setenv("QUALOADER_FASHION_MNIST", str(tmp_path / "no-copy-here"))
    monkeypatch.setattr(datasets, "_WARNED", set())
    with pytest.warns(FashionMNISTSampleWarning, match="returns the bundled sample: the first 3000 of the 10000 test images"):
        namespace = runpy.run_path(str(_SCRIPT), run_name="__main__")
    table = namespace["table"]
    assert table.complete and table.length == 2000
    difficulty = namespace["difficulty"]
    assert difficulty.shape == namespace["quality"].shape and bool(((difficulty >= 0) & (difficulty <= 1)).all())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("curriculum epoch")]
    seen = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert seen[0] == 400 and seen[-1] == 2000 and seen == sorted(seen)
