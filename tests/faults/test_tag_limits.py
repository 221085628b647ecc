"""``qualoader tag`` on a full disk (RLIMIT_FSIZE in the child) and with two writers on one folder."""

from __future__ import annotations

import resource
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


def _files_at_most(limit: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child, before exec
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.slow
def test_full_disk_gives_a_clear_error_and_no_partial_file(
    tmp_path: Path, start_tag: Callable[..., subprocess.Popen[str]], tag_output: type
) -> None:
    out = tmp_path / "out"
    process = start_tag(out, preexec_fn=_files_at_most(64_000))  # an output shard of 50 samples is about 150 kB
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    assert "qualoader tag: failed: OSError: [Errno 27] File too large" in stderr
    assert not out.exists() and tag_output.staging(out) == []  # no shard, no sidecar, no staging folder

    kept = tmp_path / "kept"
    first = start_tag(kept)
    assert first.wait(timeout=300) == 0
    before = tag_output.members(kept)
    process = start_tag(kept, "--overwrite", preexec_fn=_files_at_most(64_000))
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1 and "File too large" in stderr
    assert tag_output.members(kept) == before and tag_output.staging(kept) == []  # the old set is untouched


@pytest.mark.slow
def test_two_writers_into_one_folder(
    tmp_path: Path, start_tag: Callable[..., subprocess.Popen[str]], tag_output: type, clean_run: dict[str, list[tuple[str, bytes]]]
) -> None:
    out = tmp_path / "out"
    processes = [start_tag(out), start_tag(out)]
    results = [(process.communicate(timeout=300)[1], process.returncode) for process in processes]
    assert sorted(code for _, code in results) == [0, 2], results
    loser = next(stderr for stderr, code in results if code == 2)
    # the second either found the folder locked (running) or not empty (finished)
    assert "another process is writing into" in loser or "should be a new or empty folder" in loser
    assert tag_output.members(out) == clean_run
