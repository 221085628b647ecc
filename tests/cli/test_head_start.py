"""The head start of ``qualoader precompute``: a forked process decoding a folder's images while torch is imported.

Its pixels and file versions must be exactly those of the scoring pass's own decode; a file it cannot
read is left to that pass; it never outlives its parent; and a command that uses it stores the same
scores, with the version of the bytes that were decoded, as one that does not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import qualoader.cli._head_start as head_start_module
from qualoader._file_versions import file_digest
from qualoader.cli import main
from qualoader.cli._head_start import HeadStart
from qualoader.data import ScoreStore
from qualoader.decoding import load_image
from qualoader.metrics import create_metric

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the head start forks, on Linux only")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mixed_folder(tmp_path: Path, photos: torch.Tensor) -> list[str]:
    """Real photo crops saved in the modes the decoder converts: RGB, grey, 16-bit grey, palette, RGBA, an EXIF rotation."""
    root = tmp_path / "images"
    root.mkdir()
    crop = (photos[3, :, :40, :56].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    rgb = Image.fromarray(crop)
    grey16 = Image.fromarray(crop[..., 0].astype(np.uint16) * 257).convert("I;16")
    images = {"a-rgb.png": rgb, "b-grey.png": rgb.convert("L"), "c-grey16.png": grey16, "d-palette.png": rgb.convert("P"),
              "e-rgba.png": rgb.convert("RGBA"), "g-rgb.jpg": rgb}
    for name, image in images.items():
        image.save(root / name)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the decoder turns the pixels upright
    rgb.save(root / "f-rotated.jpg", exif=exif)
    return sorted(str(path) for path in root.iterdir())


def test_pixels_and_versions_are_the_scoring_pass_own(mixed_folder: list[str]) -> None:
    with HeadStart(mixed_folder) as head_start:
        decoded = head_start.collect(wait=True)
    assert [item.index for item in decoded] == list(range(len(mixed_folder)))
    for item in decoded:
        expected = load_image(mixed_folder[item.index])
        assert torch.equal(torch.from_numpy(item.pixels), expected), mixed_folder[item.index]
        assert item.version == file_digest(mixed_folder[item.index])
    assert head_start.collect() is decoded  # once: later calls return the same list


def test_unreadable_files_are_left_to_the_scoring_pass(mixed_folder: list[str], tmp_path: Path) -> None:
    """A truncated file, a missing one, a folder and a FIFO named like an image (whose open would wait for a writer)."""
    truncated = tmp_path / "images" / "b-grey.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "folder.png").mkdir()
    paths = [*mixed_folder, *(str(tmp_path / name) for name in ("missing.png", "pipe.png", "folder.png")), mixed_folder[0]]
    signal.alarm(60)  # a hang fails the test instead of the whole run
    try:
        with HeadStart(paths) as head_start:
            indices = [item.index for item in head_start.collect(wait=True)]
    finally:
        signal.alarm(0)
    assert indices == [i for i in range(len(mixed_folder)) if mixed_folder[i] != str(truncated)] + [len(paths) - 1]


def test_stops_when_its_memory_is_full(mixed_folder: list[str]) -> None:
    first = load_image(mixed_folder[0])
    with HeadStart(mixed_folder[:1] * 10, capacity=3 * first.numel() + 1) as head_start:
        decoded = head_start.collect(wait=True)
    assert len(decoded) == 3 and all(torch.equal(torch.from_numpy(item.pixels), first) for item in decoded)


def test_closed_without_collecting_reaps_the_process(mixed_folder: list[str]) -> None:
    head_start = HeadStart(mixed_folder * 200)
    pid = head_start._pid
    head_start.close()
    assert pid is not None and not Path(f"/proc/{pid}").exists()  # stopped and reaped: no zombie left
    head_start.close()  # twice is harmless
    assert head_start.collect() == []


def test_a_process_that_does_not_stop_is_killed(mixed_folder: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Stuck (here: paused) after the stop, it is killed once the stop's time is up, and what it sent is kept."""
    monkeypatch.setattr(head_start_module, "_STOP_SECONDS", 0.5)
    head_start = HeadStart(mixed_folder)
    assert head_start._pid is not None
    os.kill(head_start._pid, signal.SIGSTOP)
    started = time.monotonic()
    decoded = head_start.collect()
    assert time.monotonic() - started < 10 and head_start._pid is None
    assert [item.index for item in decoded] == list(range(len(decoded)))


def test_the_process_ends_with_its_parent(mixed_folder: list[str], tmp_path: Path) -> None:
    """A parent killed mid-import (here: gone at once) leaves no decoding process behind."""
    listing = tmp_path / "paths.txt"
    listing.write_text("\n".join(mixed_folder * 2000))
    code = (
        "import os, sys\n"
        "from qualoader.cli._head_start import HeadStart\n"
        "head_start = HeadStart(open(sys.argv[1]).read().split())\n"
        "print(head_start._pid, flush=True)\n"
        "os._exit(0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(listing)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    child = Path(f"/proc/{int(result.stdout)}/stat")
    deadline = time.monotonic() + 20
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child)


def _running(stat: Path) -> bool:
    """Whether the process of ``/proc/PID/stat`` still runs (a zombie has exited and only waits to be reaped)."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _precompute_in_a_process(folder: Path, store: Path, *extra: str, code: str = "") -> subprocess.CompletedProcess[str]:
    """``qualoader precompute`` in a fresh process (where torch is not imported yet, so the head start runs), ``code`` run first."""
    program = code + "from qualoader.cli import console\nconsole()\n"
    argv = ["precompute", str(folder), "--store", str(store), "--metric", "sharpness,brightness", "--no-progress", *extra]
    return subprocess.run([sys.executable, "-c", program, *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


_COUNT_COLLECTED = (
    "import qualoader.cli._head_start as head\n"
    "collect = head.HeadStart.collect\n"
    "def counted(self):\n"
    "    decoded = collect(self)\n"
    "    print('head start decoded', len(decoded), flush=True)\n"
    "    return decoded\n"
    "head.HeadStart.collect = counted\n"
)


@pytest.mark.slow  # processes of their own (torch's import)
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_command_with_a_head_start_stores_what_one_without_does(
    tmp_path: Path, write_image_folder, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    folder = write_image_folder({"Trouser": 1, "Bag": 8}, per_class=20)
    result = _precompute_in_a_process(folder, tmp_path / "with", "--num-workers", workers, code=_COUNT_COLLECTED)
    assert result.returncode == 0, result.stderr
    assert "head start decoded" in result.stdout and "40/40 scored" in result.stdout
    # the same command in this process, where torch is imported: no head start
    assert main(["precompute", str(folder), "--store", str(tmp_path / "without"), "--metric", "sharpness,brightness",
                 "--no-progress", "--num-workers", workers]) == 0
    assert "head start" not in capsys.readouterr().out
    with_start, without = ScoreStore(tmp_path / "with"), ScoreStore(tmp_path / "without")
    for name in ("sharpness", "brightness"):
        ours, theirs = with_start.table(create_metric(name)).scores(), without.table(create_metric(name)).scores()
        # batches are made of other images, which moves float32 reductions by an ulp at most
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert (tmp_path / "with" / "content.npy").read_bytes() == (tmp_path / "without" / "content.npy").read_bytes()


@pytest.mark.slow
def test_a_file_changed_after_its_head_start_decode_is_rescored(tmp_path: Path, write_image_folder) -> None:
    """The store records the version of the bytes the head start decoded, so the next run sees the newer file and rescores it."""
    folder = write_image_folder({"Trouser": 1, "Bag": 8}, per_class=6)
    changed, replacement = folder / "Bag" / "002.png", folder / "Trouser" / "004.png"
    # rewritten after the head start stopped and before the store was matched: the manifest sees the new file
    code = (
        "import os, shutil\n"
        "import qualoader.cli._head_start as head\n"
        "collect = head.HeadStart.collect\n"
        "def collect_then_change(self):\n"
        "    decoded = collect(self)\n"
        f"    shutil.copyfile({str(replacement)!r}, {str(changed)!r})\n"
        "    return decoded\n"
        "head.HeadStart.collect = collect_then_change\n"
    )
    result = _precompute_in_a_process(folder, tmp_path / "s", code=code)
    assert result.returncode == 0, result.stderr
    argv = ["precompute", str(folder), "--metric", "sharpness,brightness", "--no-progress", "--store"]
    assert main([*argv, str(tmp_path / "s")]) == 0
    assert main([*argv, str(tmp_path / "fresh")]) == 0
    resumed, fresh = ScoreStore(tmp_path / "s"), ScoreStore(tmp_path / "fresh")
    for name in ("sharpness", "brightness"):
        np.testing.assert_allclose(resumed.table(create_metric(name)).scores(), fresh.table(create_metric(name)).scores(), rtol=1e-6)


def test_started_only_on_a_first_run_over_a_folder(tmp_path: Path, mixed_folder: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from qualoader.cli import build_parser
    from qualoader.cli.commands.precompute import _start_head_start

    monkeypatch.setattr(head_start_module, "can_start", lambda: True)  # this process has torch: the command alone would not start one

    def started(*argv: str) -> HeadStart | None:
        args = build_parser().parse_args(["precompute", *argv, "--metric", "sharpness"])
        head_start = _start_head_start(args)
        assert args.head_start is head_start and (args.listing is not None) == (head_start is not None)  # one listing serves both
        return head_start

    folder, store = str(tmp_path / "images"), str(tmp_path / "s")
    head_start = started(folder, "--store", store, "--limit", "3")
    assert head_start is not None and head_start.paths == mixed_folder[:3]
    head_start.close()
    (tmp_path / "s").mkdir()  # a store already there: a resumed run, most images are scored
    assert started(folder, "--store", store) is None
    assert started("fashion-mnist:test", "--store", str(tmp_path / "t")) is None
    assert started(str(tmp_path / "missing"), "--store", str(tmp_path / "t")) is None  # run() reports it
    assert started(folder, "--store", str(tmp_path / "t"), "--limit", "0") is None


def test_can_start_here_and_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process torch is imported, so never; in a fresh one on Linux with two cores, unless QUALOADER_HEAD_START=0."""
    assert not head_start_module.can_start()
    code = "from qualoader.cli._head_start import can_start; print(can_start())"
    for value, expected in (("1", len(os.sched_getaffinity(0)) >= 2), ("0", False)):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "QUALOADER_HEAD_START": value})
        assert result.stdout.strip() == str(expected)
