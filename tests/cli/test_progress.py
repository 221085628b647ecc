"""Long-running commands show a tqdm progress bar on stderr, and ``--no-progress`` hides it on every command."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from qualoader.cli import build_parser, main
from qualoader.webdataset import write_image_shards

#: The smallest calibration sweep that still shows a bar: 6 images, one corruption, two severities.
_SMALL_SWEEP = ["--max-images", "6", "--corruptions", "fog", "--severities", "0", "3"]


def _calibrate(metric: str, out: str, *extra: str) -> Callable[[Path], list[str]]:
    """``calibrate`` argv of :data:`_SMALL_SWEEP` for ``metric``, written to ``out`` in the scratch folder."""
    return lambda tmp: ["calibrate", "--metric", metric, "--out", str(tmp / out), *_SMALL_SWEEP, *extra]


# command -> (argv with the scratch folder, what the bar's description starts with)
_LONG_COMMANDS = {
    "report": (
        lambda tmp: ["report", "fashion-mnist:test", "--metric", "brightness", "--max-images", "40", "--out", str(tmp / "r")],
        "report brightness",
    ),
    "calibrate": (_calibrate("brightness", "c.json"), "sweep 1 corruptions"),
    "calibrate-task-guided": (_calibrate("task-guided", "h.pt", "--steps", "5"), "sweep 1 corruptions"),
    "precompute": (
        lambda tmp: ["precompute", "fashion-mnist:test", "--metric", "brightness", "--limit", "40", "--store", str(tmp / "s")],
        "precompute brightness",
    ),
    "demo": (lambda tmp: ["demo", "--metric", "brightness", "--max-images", "40", "--output", str(tmp / "d")], "demo: brightness"),
    "tag": (
        lambda tmp: ["tag", str(tmp.parent / "in" / "in-{000000..000001}.tar"), str(tmp / "t"), "--metric", "brightness"],
        "tag 2 shards",
    ),
    "score": (lambda tmp: ["score", str(tmp.parent / "in"), "--out", str(tmp / "s"), "--metric", "brightness"], "score in-000000.tar"),
}


@pytest.fixture(autouse=True)
def shards(tmp_path: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    """``tmp_path/in/in-00000{0,1}.tar``: 30 real images for tag and score."""
    images, labels = fashion_mnist_test
    (tmp_path / "in").mkdir()
    write_image_shards(images[:30], str(tmp_path / "in" / "in-%06d.tar"), labels=labels[:30], maxcount=15)


@pytest.mark.parametrize("command", sorted(_LONG_COMMANDS))
def test_progress_bar_on_stderr_unless_no_progress(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, description = _LONG_COMMANDS[command]
    for run in ("shown", "hidden"):
        (tmp_path / run).mkdir()
    assert main(argv(tmp_path / "shown")) == 0
    assert description in capsys.readouterr().err
    assert main([*argv(tmp_path / "hidden"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert description not in captured.err and "it/s" not in captured.err and "%|" not in captured.err


def test_every_command_accepts_no_progress() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # the sub-parsers, by command name
    for name, subparser in commands.items():
        assert "--no-progress" in subparser._option_string_actions, name


@pytest.mark.slow
def test_ray_progress_is_visible_unless_no_progress(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    argv = [
        sys.executable,
        "-m",
        "qualoader",
        "score",
        str(tmp_path / "in"),
        "--metric",
        "brightness",
        "--engine",
        "ray",
        "--num-cpus",
        "1",
    ]
    shown = subprocess.run([*argv, "--out", str(tmp_path / "shown")], capture_output=True, text=True, check=False, timeout=300)
    hidden = subprocess.run(
        [*argv, "--out", str(tmp_path / "hidden"), "--no-progress"], capture_output=True, text=True, check=False, timeout=300
    )
    assert shown.returncode == 0 and hidden.returncode == 0, shown.stderr[-2000:] + hidden.stderr[-2000:]
    assert "scored 30 samples of 2 shards" in shown.stdout
    # Ray Data says so itself when its progress reporting is off (and reports progress otherwise)
    assert "Progress bars disabled" not in shown.stderr and "Progress" in shown.stderr
    assert "Progress bars disabled" in hidden.stderr
