from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch

from qualoader.datasets import load_photos
from qualoader.metrics import create_metric
from qualoader.metrics.pyiqa_adapter import (
    PyiqaMetric,
    create_pyiqa_metric,
    pyiqa_weight_requirement,
)

pyiqa = pytest.importorskip("pyiqa")

WEIGHT_FREE = ["entropy", "fsim", "gmsd", "mad", "ms_ssim", "nlpd", "piqe", "psnr", "ssim", "vif", "vsi"]


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    clean = load_photos(64, names=("astronaut", "coffee", "camera"))
    generator = torch.Generator().manual_seed(0)
    return (clean + 0.05 * torch.randn(clean.shape, generator=generator)).clamp(0, 1), clean


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test at once if anything opens a connection or calls pyiqa's downloader."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from pyiqa.utils import download_util

    monkeypatch.setattr(download_util, "load_file_from_url", refuse)


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_weight_free_metrics_need_no_weights(name):
    requirement = pyiqa_weight_requirement(name)
    assert not requirement.needs_weights
    assert requirement.missing() == ()


@pytest.mark.parametrize("name", ["brisque", "niqe", "lpips", "dists", "topiq_nr", "musiq", "clipiqa"])
def test_learned_metrics_are_detected(name):
    assert pyiqa_weight_requirement(name).needs_weights


@pytest.mark.parametrize(
    ("name", "expected_file"),
    [("brisque", "brisque_svm_weights.pth"), ("niqe", "niqe_modelparameters.mat"), ("lpips", "LPIPS_v0.1_alex-df73285e.pth")],
)
def test_missing_weights_error_names_file_and_folder_without_network(name, expected_file, tmp_path, monkeypatch, no_network):
    from pyiqa.utils import download_util

    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(tmp_path / "pyiqa"))
    with pytest.raises(FileNotFoundError) as error:
        create_metric(f"pyiqa:{name}", device="cpu")
    message = str(error.value)
    assert expected_file in message
    assert str(tmp_path / "pyiqa") in message
    assert name in message


def test_cached_weights_satisfy_the_check(tmp_path, monkeypatch):
    from pyiqa.utils import download_util

    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(tmp_path))
    requirement = pyiqa_weight_requirement("cnniqa")
    assert requirement.selected == ("CNNIQA_koniq10k-e6f14c91.pth",)
    assert requirement.missing() == requirement.selected
    (tmp_path / requirement.selected[0]).write_bytes(b"")
    assert pyiqa_weight_requirement("cnniqa").missing() == ()


@pytest.mark.parametrize(("name", "higher_is_better", "requires_reference"), [("fsim", True, True), ("gmsd", False, True), ("entropy", True, False)])
def test_wraps_metric_with_direction_and_mode(name, higher_is_better, requires_reference, pair, device, no_network):
    metric = create_metric(f"pyiqa:{name}", device=device)
    assert isinstance(metric, PyiqaMetric)
    assert metric.name == f"pyiqa:{name}"
    assert metric.higher_is_better is higher_is_better
    assert metric.requires_reference is requires_reference
    assert not metric.requires_weights
    images, reference = (tensor.to(device) for tensor in pair)
    scores = metric(images, reference) if requires_reference else metric(images)
    assert scores.shape == (len(images),) and scores.device.type == device.type
    direct = pyiqa.create_metric(name, device=device)
    expected = direct(images, reference) if requires_reference else direct(images)
    torch.testing.assert_close(scores, expected.reshape(-1).to(scores.dtype))


def test_adapted_psnr_matches_ours(pair):
    images, reference = pair
    torch.testing.assert_close(create_metric("pyiqa:psnr")(images, reference), create_metric("psnr")(images, reference))


def test_options_are_forwarded_and_fingerprinted(pair):
    images, reference = pair
    luma = create_metric("pyiqa:psnr", test_y_channel=True)
    torch.testing.assert_close(luma(images, reference), create_metric("psnr", y_channel=True)(images, reference))
    assert luma.fingerprint() != create_metric("pyiqa:psnr").fingerprint()
    assert luma.get_config() == {"pyiqa_name": "psnr", "options": {"test_y_channel": True}}


def test_bad_inputs_are_validated(pair):
    images, reference = pair
    metric = create_metric("pyiqa:fsim")
    with pytest.raises(ValueError, match="reference should be a tensor"):
        metric(images)
    with pytest.raises(ValueError, match=r"images should have shape \(B, C, H, W\)"):
        metric(images[0], reference[0])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        metric(images * 3, reference)
    with pytest.raises(ValueError, match="reference should be None"):
        create_metric("pyiqa:entropy")(images, reference)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="did you mean 'pyiqa:fsim'"):
        create_metric("pyiqa:fsmi")
    with pytest.raises(TypeError, match="check_weights should be a bool"):
        create_pyiqa_metric("fsim", check_weights="no")  # type: ignore[arg-type]


def test_missing_pyiqa_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyiqa", None)
    with pytest.raises(ImportError, match=r"pip install 'qualoader\[iqa\]'"):
        create_metric("pyiqa:fsim")


def test_importing_qualoader_metrics_does_not_import_pyiqa():
    code = "import sys, qualoader.metrics; sys.exit(1 if 'pyiqa' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
