"""``qualoader tag`` killed (SIGKILL), terminated (SIGTERM) or interrupted (SIGINT) at seeded random
points of its run: no partial file under a final name, and a rerun gives a clean run's bytes."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qualoader.cli import main

_EXIT = {signal.SIGTERM: (143, "SIGTERM"), signal.SIGINT: (130, "SIGINT")}


def _wait_for_staged_files(out: Path, count: int, process: subprocess.Popen[str], tag_output: type) -> None:
    """Poll (every 2 ms) until the run's staging folder holds ``count`` files, or the run ended."""
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        staging = tag_output.staging(out)
        if staging and len(list(staging[0].iterdir()) if staging[0].exists() else []) >= count:
            return
        time.sleep(0.002)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_signal_at_random_point(
    sig: signal.Signals,
    seed: int,
    tmp_path: Path,
    start_tag: Callable[..., subprocess.Popen[str]],
    clean_run: dict[str, list[tuple[str, bytes]]],
    fault_shards: list[str],
    tag_output: type,
    tag_options: list[str],
) -> None:
    rng = random.Random(f"{sig.name}-{seed}")  # seeded: the same kill points on every run
    staged_files = rng.randint(0, 2 * len(clean_run))  # shards and sidecars staged before the signal; 0: as soon as staging starts
    out = tmp_path / "out"
    process = start_tag(out)
    _wait_for_staged_files(out, staged_files, process, tag_output)
    time.sleep(rng.uniform(0.0, 0.01))  # lands inside a shard being written as often as between two
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=240)

    tag_output.check_no_partial_file(out)
    published = tag_output.members(out)
    assert all(published[name] == clean_run[name] for name in published)  # what is there is complete and correct
    if sig != signal.SIGKILL:
        assert tag_output.staging(out) == []  # the handler cleaned up
        assert published in ({}, clean_run)  # publishing is never cut by a signal: all or nothing
        if process.returncode != 0:  # it had not finished
            code, name = _EXIT[sig]
            assert process.returncode == code and f"qualoader tag: interrupted by {name}" in stderr
        if not published:
            assert not out.exists()  # the run created it, and removed it again
    # a rerun (with --overwrite, since a kill may have published part of the set) gives the clean bytes
    assert main(["tag", *fault_shards, str(out), *tag_options, "--overwrite"]) == 0
    assert tag_output.members(out) == clean_run and tag_output.staging(out) == []
