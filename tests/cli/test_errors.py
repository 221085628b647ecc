"""The user-error helpers behind every command: messages, device check, metric check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from qualoader.cli._errors import UserError, as_option, check_device, create_cli_metric, error_line, user_errors


def test_user_errors_keep_the_message_and_chain_the_cause() -> None:
    with pytest.raises(UserError, match="^name should be a registered metric") as error, user_errors():
        raise KeyError("name should be a registered metric, but got name='x'")
    assert isinstance(error.value.__cause__, KeyError)
    with pytest.raises(RuntimeError), user_errors():  # not an argument error: a bug keeps its type
        raise RuntimeError("boom")


def test_messages_are_one_line_and_name_the_option() -> None:
    assert error_line("report", "a\nb  c") == "qualoader report: error: a b c"
    assert error_line(None, "x") == "qualoader: error: x"
    renamed = as_option(ValueError("name should be one of {'a'}, but got name='b'"), "name", "--corruptions")
    assert str(renamed) == "--corruptions should be one of {'a'}, but got --corruptions='b'"


def test_device_check() -> None:
    check_device("cpu")
    with pytest.raises(UserError, match="--device should be a torch device such as cpu, cuda or cuda:1, but got --device='gpu0'"):
        check_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="torch sees no CUDA device"):
            check_device("cuda:0")
    else:
        with pytest.raises(UserError, match="CUDA devices"):
            check_device(f"cuda:{torch.cuda.device_count()}")


def test_cli_metric() -> None:
    assert create_cli_metric("sharpness").name == "sharpness"
    assert create_cli_metric("ssim", no_reference=False).requires_reference
    with pytest.raises(UserError, match="--metric should be a no-reference metric .* but got the full-reference metric 'psnr'"):
        create_cli_metric("psnr")
    with pytest.raises(UserError, match="^--metric should be a registered metric, but got --metric='sharpnes'; did you mean 'sharpness'"):
        create_cli_metric("sharpnes")


def test_calibrate_out_over_its_inputs_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Data lost before: ``calibrate --out`` equal to ``--weights`` overwrote the weights. Refused before anything loads."""
    weights = tmp_path / "net.pt"
    weights.write_bytes(b"weights that must survive")
    (tmp_path / "data").mkdir()
    cases = [
        (["--weights", str(weights), "--out", str(weights)], "which is --weights="),
        (["--weights", str(weights), "--out", str(tmp_path / "sub" / ".." / "net.pt")], "which is --weights="),
        (["--weights", str(weights), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "data" / "p.json")], "lies inside --data="),
    ]
    for extra, relation in cases:
        (tmp_path / "sub").mkdir(exist_ok=True)
        assert main(["calibrate", "--reference", "resnet18", *extra]) == 2
        error = capsys.readouterr().err
        assert "qualoader calibrate: error: --out should not overwrite or lie inside an input" in error and relation in error
    assert weights.read_bytes() == b"weights that must survive"


def test_write_errors_name_the_option_and_the_file() -> None:
    import errno

    from qualoader.cli._errors import output_errors

    with pytest.raises(UserError) as raised, output_errors("--out", "r"):
        raise OSError(errno.ENOSPC, "No space left on device", "r/plots/a.png")
    assert (
        str(raised.value) == "--out should be writable, but got --out='r': No space left on device (ENOSPC) while writing 'r/plots/a.png'"
    )
    with pytest.raises(OSError, match="not a write error"), output_errors("--out", "r"):
        raise OSError(errno.EINVAL, "not a write error")
