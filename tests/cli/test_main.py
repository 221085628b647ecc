"""``qualoader`` as a whole process: one-line errors for failed writes (file size limit, read-only file system),
Ctrl-C during the imports, a closed pipe, options given twice, ``--help`` without torch.

Commands run as subprocesses (``python -m qualoader``, this checkout first on the path) where the case is
about the process: its exit code, its stderr, signals and resource limits. Every file they write lies in tmp_path.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from tests.helpers import precompute_argv, save_photo_crops

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def run_cli(argv: list[str], cwd: Path, *, file_size: int | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m qualoader ARGV`` in ``cwd``; ``file_size`` caps every file it writes (RLIMIT_FSIZE: EFBIG, a full disk's stand-in)."""

    def limit() -> None:
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    return subprocess.run(
        [sys.executable, "-m", "qualoader", *argv], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, preexec_fn=limit
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], command: str, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"qualoader {command}: error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def images(tmp_path: Path, photos: torch.Tensor) -> Path:
    save_photo_crops(tmp_path / "images" / "c", photos, count=6, side=24)
    return tmp_path / "images"


@pytest.fixture
def store(tmp_path: Path, images: Path) -> Path:
    assert main(precompute_argv(images, tmp_path / "store")) == 0
    return tmp_path / "store"


def _hidden(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom qualoader.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "False", result.stderr


@pytest.mark.slow  # a process that imports torch (~5-10 s on two shared cores)
def test_export_over_the_file_size_limit_is_one_line(store: Path, tmp_path: Path) -> None:
    result = run_cli(["export", str(store), "-o", "scores.csv"], tmp_path, file_size=64)
    assert_one_line_error(result, "export", "--output should be writable", "--output='scores.csv'", "EFBIG")
    assert not (tmp_path / "scores.csv").exists() and _hidden(tmp_path) == []


@pytest.mark.slow  # two processes that import torch and score (~10 s on two shared cores)
def test_report_and_precompute_over_the_file_size_limit(images: Path, tmp_path: Path) -> None:
    result = run_cli(["report", str(images), "--metric", "sharpness", "--out", "rep/new", "--no-progress"], tmp_path, file_size=2048)
    assert_one_line_error(result, "report", "--out should be writable", "--out='rep/new'")
    assert not (tmp_path / "rep").exists()  # no partial folder: neither the report nor the parent made for it
    assert _hidden(tmp_path) == []
    result = run_cli(precompute_argv(images, Path("store")), tmp_path, file_size=300)
    assert_one_line_error(result, "precompute", "--store should be writable", "--store='store'")


def _read_only_mount_works(folder: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro none '{folder}' && ! touch '{folder}/x' 2>/dev/null"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


@pytest.mark.slow  # three processes that import torch (~10 s)
def test_read_only_file_system_is_one_line_naming_the_option(store: Path, images: Path, tmp_path: Path) -> None:
    """EROFS for real: a read-only tmpfs mounted over tmp_path/ro in a private mount namespace of the command alone."""
    read_only = tmp_path / "ro"
    read_only.mkdir()
    if not _read_only_mount_works(read_only):
        pytest.skip("no private read-only mount here (needs unshare -m and the right to mount)")
    cases = [
        ("export", ["export", str(store), "-o", f"{read_only}/s.csv"], "--output"),
        ("report", ["report", str(images), "--metric", "sharpness", "--out", f"{read_only}/rep", "--no-progress"], "--out"),
        ("precompute", precompute_argv(images, read_only / "st"), "--store"),
    ]
    for command, argv, option in cases:
        quoted = " ".join(f"'{arg}'" for arg in [sys.executable, "-m", "qualoader", *argv])
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro none '{read_only}' && exec {quoted}"],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert_one_line_error(result, command, f"{option} should be writable", "Read-only file system (EROFS)")


def _wait_for_torch(process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until the process maps libtorch: it is then inside ``main``, importing torch."""
    deadline = time.monotonic() + timeout
    maps = Path(f"/proc/{process.pid}/maps")
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if "libtorch" in maps.read_text():
                return
        except OSError:
            pass
        time.sleep(0.01)
    pytest.fail("the command never imported torch")


def test_ctrl_c_during_the_imports_exits_130_without_a_traceback(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "qualoader", "precompute", "fashion-mnist", "--store", "s", "--metric", "sharpness", "--limit", "8"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_torch(process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert "interrupted by SIGINT" in stderr


@pytest.mark.parametrize("argv", [["--help"], pytest.param(["metrics"], marks=pytest.mark.slow)])  # metrics: imports torch, ~5 s
def test_a_closed_pipe_ends_quietly(argv: list[str], tmp_path: Path) -> None:
    """``qualoader ... | head``: the reader is gone before the command writes; no BrokenPipeError traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "qualoader", *argv], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert stderr == "" and process.returncode in (0, 141)


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["export", "store", "-o", "a.csv", "--format", "csv", "--format", "jsonl"], "--format"),
        (["precompute", "fashion-mnist", "--store", "s", "--split", "train", "--split", "test"], "--split"),
        (["precompute", "fashion-mnist", "--store", "s", "--store", "t"], "--store"),
        (["report", "fashion-mnist", "--out", "a", "--out", "b"], "--out"),
    ],
)
def test_an_option_of_one_value_given_twice_is_refused(
    argv: list[str], option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert f"{option} should be given once (it takes one value)" in error and len(error.splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_device_meta_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["precompute", "fashion-mnist", "--store", str(tmp_path / "s"), "--metric", "sharpness", "--device", "meta"]) == 2
    assert "--device should be a device that holds data" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_failed_write_is_blamed_on_the_output_only_when_it_is_the_outputs(tmp_path: Path) -> None:
    from qualoader.cli import _belongs_to

    out = tmp_path / "scores.csv"
    assert _belongs_to(None, out)  # a failed write() names no file: the command's output is the one being written
    assert _belongs_to(out, out) and _belongs_to(tmp_path / ".scores.csv.abcd1234.tmp", out)
    assert _belongs_to(tmp_path / "rep" / "plots" / "a.png", tmp_path / "rep")
    assert not _belongs_to(tmp_path / "profile.json", out)  # an input that failed: named by itself, not as --output
