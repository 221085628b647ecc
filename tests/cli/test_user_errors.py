"""Every command answers a user error with one line, ``qualoader <command>: error: <message>``, and exit code 2.

The errors are driven in-process through :func:`qualoader.cli.main`; ``--debug`` brings the traceback back.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from qualoader.cli._errors import UserError
from qualoader.webdataset import write_image_shards

Argv = Callable[[Path, list[str]], list[str]]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> list[str]:
    images, labels = fashion_mnist_test
    folder = tmp_path_factory.mktemp("user-errors")
    return [str(p) for p in write_image_shards(images[:12], str(folder / "in-%06d.tar"), labels=labels[:12], maxcount=6)]


def _check_one_line(command: str, capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"qualoader {command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


# (command, argv built from a scratch folder and the shards, what the message must say)
_METRIC_CASES: list[tuple[str, Argv]] = [
    ("report", lambda tmp, shards: ["report", "fashion-mnist:test", "--out", str(tmp / "r"), "--max-images", "8"]),
    ("precompute", lambda tmp, shards: ["precompute", "fashion-mnist:test", "--store", str(tmp / "s"), "--limit", "8"]),
    ("tag", lambda tmp, shards: ["tag", shards[0], str(tmp / "tagged")]),
    ("score", lambda tmp, shards: ["score", shards[0], "--out", str(tmp / "sidecars")]),
    ("demo", lambda tmp, shards: ["demo", "--max-images", "8", "--output", str(tmp / "d")]),
]


@pytest.mark.parametrize(("command", "argv"), _METRIC_CASES, ids=[case[0] for case in _METRIC_CASES])
def test_unknown_metric_with_did_you_mean(
    command: str, argv: Argv, tmp_path: Path, shards: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv(tmp_path, shards), "--metric", "bn-shif", "--no-progress"]) == 2
    _check_one_line(command, capsys, "--metric should be a registered metric", "did you mean 'bn-shift'?")
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.parametrize(("command", "argv"), _METRIC_CASES, ids=[case[0] for case in _METRIC_CASES])
def test_full_reference_metric_where_no_reference_is_needed(
    command: str, argv: Argv, tmp_path: Path, shards: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv(tmp_path, shards), "--metric", "ssim", "--no-progress"]) == 2
    _check_one_line(command, capsys, "--metric should be a no-reference metric", "'ssim'")


@pytest.mark.parametrize(("command", "argv"), _METRIC_CASES, ids=[case[0] for case in _METRIC_CASES])
def test_missing_pyiqa_weights(
    command: str, argv: Argv, tmp_path: Path, shards: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyiqa")
    from pyiqa.utils import download_util

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("no download may start")

    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(download_util, "load_file_from_url", refuse)
    (tmp_path / "empty-cache").mkdir()
    assert main([*argv(tmp_path, shards), "--metric", "pyiqa:brisque", "--no-progress"]) == 2
    _check_one_line(command, capsys, "brisque", str(tmp_path / "empty-cache"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize(("command", "argv"), _METRIC_CASES, ids=[case[0] for case in _METRIC_CASES])
def test_cuda_device_without_a_gpu(command: str, argv: Argv, tmp_path: Path, shards: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv(tmp_path, shards), "--metric", "sharpness", "--device", "cuda", "--no-progress"]) == 2
    _check_one_line(command, capsys, "--device should be a device this machine has, but got --device='cuda'")


@pytest.mark.parametrize(
    ("command", "argv", "fragments"),
    [
        (
            "report",
            ["report", "/no/such/folder", "--metric", "sharpness"],
            ["SOURCE should be an existing folder or shard", "'/no/such/folder'"],
        ),
        (
            "report",
            ["report", "fashion-mnist:valid", "--metric", "sharpness"],
            ["SOURCE should be fashion-mnist, fashion-mnist:train or fashion-mnist:test"],
        ),
        ("report", ["report", "fashion-mnist", "--metric", "sharpness", "--max-images", "0"], ["--max-images should be a positive int"]),
        (
            "precompute",
            ["precompute", "fashion-mnist:valid", "--metric", "sharpness"],
            ["SOURCE should be fashion-mnist, fashion-mnist:train"],
        ),
        (
            "precompute",
            ["precompute", "fashion-mnist:test", "--split", "train", "--metric", "sharpness"],
            ["--split should agree with SOURCE"],
        ),
        ("calibrate", ["calibrate", "--metric", "bn-shif"], ["did you mean 'bn-shift'?"]),
        (
            "calibrate",
            ["calibrate", "--metric", "bn-shift", "--corruptions", "hail"],
            ["--corruptions should be one of", "got --corruptions='hail'"],
        ),
        ("demo", ["demo", "fashion-mnist:valid"], ["SOURCE should be fashion-mnist, fashion-mnist:train"]),
    ],
)
def test_bad_source_and_options(
    command: str, argv: list[str], fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = {"report": "--out", "precompute": "--store", "calibrate": "--out", "demo": "--output"}[command]
    target = tmp_path / ("x.json" if command == "calibrate" else "out")
    assert main([*argv, out, str(target), "--no-progress"]) == 2
    _check_one_line(command, capsys, *fragments)
    assert not target.exists()


def test_precompute_refuses_shards(shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["precompute", shards[0], "--store", str(tmp_path / "s"), "--metric", "sharpness", "--no-progress"]) == 2
    _check_one_line("precompute", capsys, "SOURCE should be fashion-mnist[:split] or an image folder for this command")


def test_store_built_for_other_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "s")
    assert main(["precompute", "fashion-mnist:test", "--store", store, "--metric", "brightness", "--limit", "16", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["precompute", "fashion-mnist:test", "--store", store, "--metric", "brightness", "--limit", "8", "--no-progress"]) == 2
    _check_one_line("precompute", capsys, "length should be the store's dataset length 16")


def test_parser_errors_take_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse's own errors end the process
        main(["report", "fashion-mnist:test", "--metric", "sharpness", "--out", "x", "--max-images", "many"])
    assert exit_info.value.code == 2
    _check_one_line("report", capsys, "argument --max-images: invalid int value: 'many'", "(see 'qualoader report --help')")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "fashion-mnist:test", "--metric", "sharpness"])  # --out is required
    assert exit_info.value.code == 2
    _check_one_line("report", capsys, "the following arguments are required: --out")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where: str, tmp_path: Path) -> None:
    argv = ["report", "fashion-mnist:test", "--metric", "bn-shif", "--out", str(tmp_path / "r")]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(UserError, match="did you mean 'bn-shift'") as error:
        main(argv)
    assert isinstance(error.value.__cause__, KeyError)  # the registry's own error, chained


def test_console_script_exit_code_and_stderr(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qualoader", "report", "fashion-mnist:test", "--metric", "bn-shif", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("qualoader report: error: --metric should be a registered metric")
    assert result.stderr.endswith("but got --metric='bn-shif'; did you mean 'bn-shift'?\n") and result.stderr.count("\n") == 1
