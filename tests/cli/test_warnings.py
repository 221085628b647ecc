"""Warnings during a command: qualoader's own print ``qualoader <command>: warning: <message>``, others are left to Python.

Real data: five scikit-image photos at 224 px RGB, scored by bn-shift, whose embedded reference is
a 28 px grey Fashion-MNIST network: far outside its input domain, so a DomainWarning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from qualoader.profiles import DomainWarning
from qualoader.webdataset import write_image_shards


@pytest.fixture
def photo_shards(tmp_path: Path, photos_224: torch.Tensor) -> list[str]:
    images = (photos_224 * 255).round().to(torch.uint8)
    return [str(path) for path in write_image_shards(images, str(tmp_path / "photo-%06d.tar"), maxcount=3)]


def _score(shards: list[str], out: Path) -> int:
    return main(["score", *shards, "--metric", "bn-shift", "--out", str(out), "--no-progress"])


def test_a_domain_warning_is_one_line_naming_the_command(
    photo_shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always", DomainWarning)  # however often it is raised, it is printed once
        assert _score(photo_shards, tmp_path / "out") == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "DomainWarning" in line or "warning:" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("qualoader score: warning: ") and "far outside the input domain of metric 'bn-shift'" in lines[0]
    assert "DomainWarning" not in err  # not Python's "<file>:<line>: DomainWarning: ..." display
    assert warnings.showwarning is previous  # library use after the command sees Python's display again


def test_warnings_are_still_recorded_and_filtered(photo_shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _score(photo_shards, tmp_path / "a") == 0
    assert any(issubclass(w.category, DomainWarning) for w in caught)  # catch_warnings / pytest.warns still see it
    assert "qualoader score: warning: " in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DomainWarning)  # Python's filters still decide what is shown
        assert _score(photo_shards, tmp_path / "b") == 0
    assert "warning:" not in capsys.readouterr().err


def test_other_libraries_warnings_keep_pythons_display(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from qualoader.cli.commands import metrics as metrics_command

    seen: list[tuple[type[Warning], str]] = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, category, *args: seen.append((category, str(message))))
    run = metrics_command.run

    def run_and_warn(args: object) -> int:
        warnings.warn("from another library", FutureWarning, stacklevel=1)
        return run(args)

    monkeypatch.setattr(metrics_command, "run", run_and_warn)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["metrics"]) == 0
    assert seen == [(FutureWarning, "from another library")]
    assert "warning:" not in capsys.readouterr().err
