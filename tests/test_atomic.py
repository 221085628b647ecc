"""Atomic writes: permissions from the umask, special files written through (never replaced), stale temporaries removed."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qualoader._atomic import STALE_AFTER_S, atomic_writer, new_file_mode, write_bytes_atomic, writes_through

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask_027() -> Iterator[None]:
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def _temporaries(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def test_new_file_gets_the_umask_mode_and_an_existing_one_keeps_its_mode(tmp_path: Path, umask_027: None) -> None:
    new = write_bytes_atomic(tmp_path / "new.csv", b"a\n")
    assert stat.S_IMODE(new.stat().st_mode) == 0o640  # 0666 & ~027, as open(path, "w") gives; not mkstemp's 0600
    kept = tmp_path / "kept.csv"
    kept.write_bytes(b"old")
    kept.chmod(0o604)
    write_bytes_atomic(kept, b"new")
    assert kept.read_bytes() == b"new" and stat.S_IMODE(kept.stat().st_mode) == 0o604
    assert new_file_mode(tmp_path / "missing") == 0o640


def test_a_fifo_is_written_through_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    write_bytes_atomic(fifo, b"row 1\nrow 2\n")
    reader.join(timeout=10)
    assert received == [b"row 1\nrow 2\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the FIFO, not a regular file renamed over it
    assert _temporaries(tmp_path) == []


def test_a_link_into_proc_is_written_through(tmp_path: Path) -> None:
    """``/proc/self/fd/N`` (and ``/dev/stdout``, a link to it) reach the open file; the link itself must survive."""
    read_end, write_end = os.pipe()
    try:
        link = tmp_path / "stdout"
        link.symlink_to(f"/proc/self/fd/{write_end}")
        assert writes_through(link)
        write_bytes_atomic(link, b"through a pipe\n")
        assert os.read(read_end, 100) == b"through a pipe\n"
        assert link.is_symlink()
    finally:
        os.close(read_end)
        os.close(write_end)
    # a regular file opened elsewhere and reached through /proc: truncated and rewritten in place, same inode
    target = tmp_path / "redirected.txt"
    target.write_bytes(b"a much longer old content\n")
    with open(target, "rb+") as handle:
        inode = os.stat(target).st_ino
        link = tmp_path / "fd-link"
        link.symlink_to(f"/proc/self/fd/{handle.fileno()}")
        write_bytes_atomic(link, b"new\n")
    assert target.read_bytes() == b"new\n" and os.stat(target).st_ino == inode and link.is_symlink()


def test_a_full_device_raises_enospc_and_is_not_replaced(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    link = tmp_path / "full"
    link.symlink_to("/dev/full")
    with pytest.raises(OSError) as raised:
        write_bytes_atomic(link, b"x" * 10_000)
    assert raised.value.errno == errno.ENOSPC
    assert link.is_symlink() and stat.S_ISCHR(os.stat(link).st_mode)


def test_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="which is a folder"):
        write_bytes_atomic(tmp_path, b"x")


def test_a_failed_write_leaves_the_destination_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(path) as file:
        file.write(b"half")
        raise RuntimeError("writer fails")
    assert path.read_bytes() == b"old" and _temporaries(tmp_path) == []


def test_file_size_limit_gives_an_error_and_no_partial_file(tmp_path: Path) -> None:
    """RLIMIT_FSIZE stands in for a full disk (EFBIG; Python ignores SIGXFSZ), in a child process only."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from qualoader._atomic import write_bytes_atomic\n"
        "try:\n"
        "    write_bytes_atomic(sys.argv[1], b'x' * 100_000)\n"
        "except OSError as error:\n"
        "    print(error.errno)\n"
    )
    path = tmp_path / "big.bin"
    path.write_bytes(b"old")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.stdout.strip() == str(errno.EFBIG), result.stderr
    assert path.read_bytes() == b"old" and _temporaries(tmp_path) == []


def _temporary(folder: Path, destination: str, random: str = "abcd1234") -> Path:
    return folder / f".{destination}.{random}.tmp"


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """kill -9 in the middle of a write leaves a hidden temporary; the next write to the same destination removes it."""
    code = (
        "import sys, time\n"
        "from qualoader._atomic import atomic_writer\n"
        "with atomic_writer(sys.argv[1]) as file:\n"
        "    file.write(b'partial' * 1000)\n"
        "    file.flush()\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    path, other = tmp_path / "scores.csv", tmp_path / "other.csv"
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "writing"
        stale = _temporaries(tmp_path)
        assert len(stale) == 1  # the live writer's file: a write now must leave it alone
        write_bytes_atomic(path, b"concurrent\n")
        assert _temporaries(tmp_path) == stale
    finally:
        child.kill()
        child.wait(timeout=30)
    write_bytes_atomic(other, b"other\n")
    assert _temporaries(tmp_path) == stale  # another destination's write does not touch it
    write_bytes_atomic(path, b"complete\n")
    assert _temporaries(tmp_path) == [] and path.read_bytes() == b"complete\n"


def test_a_locked_or_fresh_empty_temporary_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    locked = _temporary(tmp_path, "out.csv", "locked01")
    locked.write_bytes(b"live writer's bytes")
    fresh = _temporary(tmp_path, "out.csv", "fresh001")
    fresh.touch()  # a writer between creating and locking its file
    old_empty = _temporary(tmp_path, "out.csv", "oldempty")
    old_empty.touch()
    os.utime(old_empty, (time.time() - STALE_AFTER_S - 5,) * 2)
    unrelated = tmp_path / ".out.csv.not-ours.tmp"  # not mkstemp's shape: never ours to remove
    unrelated.write_bytes(b"x")
    handle = os.open(locked, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        write_bytes_atomic(path, b"new\n")
    finally:
        os.close(handle)
    assert locked.exists() and fresh.exists() and unrelated.exists() and not old_empty.exists()
