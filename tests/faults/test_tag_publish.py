"""``qualoader tag --overwrite`` killed (SIGKILL) inside its publish step: the output folder holds the
complete old set or the complete new set, byte for byte, never a mix.

The run is paused at each publish step by the ``QUALOADER_PUBLISH_PAUSE`` hook (it creates a marker
file, then waits), so the kill lands exactly there, not at a random instant."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from qualoader.webdataset import publishing, write_image_shards
from qualoader.webdataset.publishing import PAUSE_VARIABLE, staging_folders

_OLD = ["--metric", "sharpness", "--maxcount", "7"]  # 9 shards: the new set (6 shards) lacks some of the old names
_NEW = ["--metric", "contrast", "--maxcount", "10"]
_Sets = tuple[list[str], dict[str, bytes], dict[str, bytes]]  # inputs, old set, new set


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture
def old_and_new(tmp_path: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> _Sets:
    """60 real images in 3 input shards; the bytes of an old set and of the set that overwrites it."""
    images, labels = fashion_mnist_test
    inputs = [str(p) for p in write_image_shards(images[:60], str(tmp_path / "in-%03d.tar"), labels=labels[:60], maxcount=20)]
    sets = []
    for options in (_OLD, _NEW):
        reference = tmp_path / f"reference-{options[1]}"
        assert main(["tag", *inputs, str(reference), *options, "--no-progress"]) == 0
        sets.append(_files(reference))
    old, new = sets
    assert len(old) == 18 and len(new) == 12 and set(new) < set(old)
    return inputs, old, new


def _killed_at(step: int, inputs: list[str], out: Path, marker: Path) -> None:
    """Run ``tag --overwrite`` into ``out`` in a subprocess and SIGKILL it when it pauses before publish step ``step``."""
    environment = {**os.environ, PAUSE_VARIABLE: f"{step}:{marker}"}
    command = [sys.executable, "-m", "qualoader", "tag", *inputs, str(out), *_NEW, "--no-progress", "--overwrite"]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert marker.exists(), f"the run never reached publish step {step}: {process.communicate()[1]}"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("step", [0, 1], ids=["before-exchange", "after-exchange"])
def test_kill_inside_publish_leaves_old_or_new_set(step: int, tmp_path: Path, old_and_new: _Sets) -> None:
    inputs, old, new = old_and_new
    out = tmp_path / "out"
    assert main(["tag", *inputs, str(out), *_OLD, "--no-progress"]) == 0
    _killed_at(step, inputs, out, tmp_path / "paused")

    after = _files(out)
    assert after in (old, new), f"a mix of old and new files: {sorted(after)}"
    # step 0 is before the exchange, step 1 after it: each must land on its side
    assert after == (old if step == 0 else new)
    assert staging_folders(out) != []  # the kill left a staging folder (or the old set) behind, beside the output
    # the next run removes what the killed one left and publishes the same bytes
    assert main(["tag", *inputs, str(out), *_NEW, "--no-progress", "--overwrite"]) == 0
    assert _files(out) == new and staging_folders(out) == []


def test_file_by_file_fallback_publishes_the_whole_set(tmp_path: Path, old_and_new: _Sets, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where folders cannot be exchanged, files are renamed into the output folder and stale old files removed."""
    inputs, _, new = old_and_new
    out = tmp_path / "out"
    assert main(["tag", *inputs, str(out), *_OLD, "--no-progress"]) == 0
    monkeypatch.setattr(publishing, "_can_exchange", lambda: False)
    with pytest.warns(RuntimeWarning, match="replaced file by file"):
        assert main(["tag", *inputs, str(out), *_NEW, "--no-progress", "--overwrite"]) == 0
    assert _files(out) == new and staging_folders(out) == []


def test_symlinked_output_folder_stays_a_symlink(tmp_path: Path, old_and_new: _Sets) -> None:
    inputs, _, new = old_and_new
    real = tmp_path / "real"
    real.mkdir()
    os.chmod(real, 0o750)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert main(["tag", *inputs, str(link), *_OLD, "--no-progress"]) == 0
    assert main(["tag", *inputs, str(link), *_NEW, "--no-progress", "--overwrite"]) == 0
    # the real folder was exchanged, the user's link still points at it, and the folder kept its permissions
    assert link.is_symlink() and link.resolve() == real and _files(real) == new
    assert real.stat().st_mode & 0o777 == 0o750 and staging_folders(real) == []
