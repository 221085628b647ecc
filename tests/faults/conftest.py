"""Fault injection for ``qualoader tag``: shards of real images, a clean reference run, and the checks
that a run cut short (kill, signal, full disk) left no partial file under a final name."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from qualoader.webdataset import read_sidecar, write_image_shards
from qualoader.webdataset.publishing import staging_folders
from qualoader.webdataset.reading import raw_samples

#: Options of every faulted run: small output shards, so a kill often lands between two of them.
TAG_OPTIONS = ["--metric", "contrast", "--maxcount", "50", "--batch-size", "25"]


@pytest.fixture(scope="session")
def fault_shards(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> list[str]:
    """600 real Fashion-MNIST images (PNG + cls) in 3 input shards of 200."""
    images, labels = fashion_mnist_test
    folder = tmp_path_factory.mktemp("fault-inputs")
    return [str(p) for p in write_image_shards(images[:600], str(folder / "in-%06d.tar"), labels=labels[:600], maxcount=200)]


class TagOutput:
    """Checks of a ``qualoader tag`` output folder (the ``tag_output`` fixture)."""

    @staticmethod
    def members(folder: Path) -> dict[str, list[tuple[str, bytes]]]:
        """``{shard file name: [(member name, bytes), ...]}`` of every final shard in ``folder``."""
        return {
            shard.name: [(info.name, data) for sample in raw_samples(str(shard)) for info, data in sample.members]
            for shard in sorted(folder.glob("*.tar"))
        }

    @staticmethod
    def check_no_partial_file(folder: Path) -> None:
        """Every final shard reads to its end-of-archive block, every final sidecar parses and lists its shard's keys."""
        if not folder.exists():
            return
        for shard in sorted(folder.glob("*.tar")):
            keys = [sample.key for sample in raw_samples(str(shard))]  # strict: a truncated shard raises
            sidecar = folder / (shard.name + ".quality.json")
            if sidecar.exists():
                assert read_sidecar(sidecar).keys == keys, f"sidecar of {shard.name} does not match it"
        for sidecar in sorted(folder.glob("*.quality.json")):
            index = read_sidecar(sidecar)  # a partial sidecar raises
            assert (folder / index.shard).exists(), f"{sidecar.name} has no shard"

    @staticmethod
    def staging(folder: Path) -> list[Path]:
        """Staging folders (temporary names) left beside or in ``folder``."""
        return staging_folders(folder)


@pytest.fixture(scope="session")
def tag_output() -> type[TagOutput]:
    return TagOutput


def tag_command(inputs: list[str], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "qualoader", "tag", *inputs, str(out), *TAG_OPTIONS, *extra]


@pytest.fixture(scope="session")
def tag_options() -> list[str]:
    return TAG_OPTIONS


@pytest.fixture(scope="session")
def clean_run(fault_shards: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[str, bytes]]]:
    """Members of every shard of an uninterrupted ``qualoader tag`` run (in a subprocess, as the faulted ones)."""
    out = tmp_path_factory.mktemp("clean") / "out"
    result = subprocess.run(tag_command(fault_shards, out), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    members = TagOutput.members(out)
    assert len(members) == 12 and sum(len(m) for m in members.values()) == 600 * 3
    return members


def default_interrupts() -> None:
    """In the child: SIGINT back to its default, so Python turns it into KeyboardInterrupt even when
    the test runner was started with SIGINT ignored (background jobs of a non-interactive shell)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def start_tag(fault_shards: list[str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``qualoader tag`` on the fault shards in a subprocess (``preexec_fn`` runs in the child)."""
    started: list[subprocess.Popen[str]] = []

    def start(out: Path, *extra: str, preexec_fn: Callable[[], None] = default_interrupts) -> subprocess.Popen[str]:
        # preexec_fn only sets signal dispositions and limits, which is safe between fork and exec
        process = subprocess.Popen(
            tag_command(fault_shards, out, *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,  # noqa: PLW1509
        )
        started.append(process)
        return process

    yield start
    for process in started:  # never leave a child behind, whatever the test did
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=60)
