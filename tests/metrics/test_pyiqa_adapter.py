from __future__ import annotations

import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from qualoader.datasets import load_photos
from qualoader.metrics import create_metric
from qualoader.metrics.pyiqa_adapter import (
    PyiqaMetric,
    UnsafeCheckpointError,
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
def no_sockets(block_sockets) -> None:
    """Fail the test at once if anything opens a connection."""
    block_sockets(AssertionError, "a network connection was attempted")


@pytest.fixture
def no_network(no_sockets: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`no_sockets`, and fail at once if pyiqa's downloader is called at all (even for a cached file)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"pyiqa's downloader was called with {args}")

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


@pytest.mark.parametrize(
    ("name", "higher_is_better", "requires_reference"), [("fsim", True, True), ("gmsd", False, True), ("entropy", True, False)]
)
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


@pytest.mark.parametrize("name", ["psnr", "fsim", "entropy"])
def test_scores_follow_the_metric_dtype_policy(name, pair):
    metric = create_metric(f"pyiqa:{name}")
    images, reference = pair
    for dtype, expected in ((torch.float16, torch.float32), (torch.float32, torch.float32), (torch.float64, torch.float64)):
        x, y = images.to(dtype).requires_grad_(True), reference.to(dtype)
        scores = metric(x, y) if metric.requires_reference else metric(x)
        assert scores.dtype == expected and scores.shape == (len(images),)
        assert not scores.requires_grad


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_declared_min_size_is_exact(name):
    metric = create_metric(f"pyiqa:{name}")
    size = metric.min_size
    images = torch.rand(1, 3, size, size + 3, generator=torch.Generator().manual_seed(0))
    scores = metric(images, images.flip(-1)) if metric.requires_reference else metric(images)
    assert bool(torch.isfinite(scores).all()), f"pyiqa:{name} fails at its declared minimum {size}"
    if size > 1:
        smaller = images[..., 1:, :].contiguous()
        with pytest.raises(ValueError, match=f"at least {size}x{size} pixels .* for metric 'pyiqa:{name}'"):
            metric(smaller, smaller) if metric.requires_reference else metric(smaller)
        square = images[..., 1:, 4:].contiguous()  # (size - 1) px square
        try:  # not too strict either: pyiqa itself breaks on a square one pixel below the declared minimum
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # pyiqa's own complaints about the tiny input
                raw = metric.network(square, square.flip(-1)) if metric.requires_reference else metric.network(square)
        except (RuntimeError, ValueError, IndexError):
            return
        assert not bool(torch.isfinite(raw).all()), f"pyiqa:{name} still works at {size - 1} px"


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


# -- no cached pickle ever runs (planted files) ----------------------------------------------------

BRISQUE_FILE = "brisque_svm_weights.pth"


class _Payload:
    """Unpickling this runs ``exec`` on code that creates the marker file: what a planted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('executed')",))


def _plant(path: Path, marker: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"sv_coef": _Payload(marker)}
    if fmt == "zip":
        torch.save(payload, path)
    elif fmt == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload))


@pytest.fixture
def pyiqa_cache(tmp_path, monkeypatch) -> Path:
    """An empty pyiqa weight cache in ``tmp_path`` (read by pyiqa and by the weight check at call time)."""
    from pyiqa.utils import download_util

    cache = tmp_path / "pyiqa"
    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(cache))
    return cache


@pytest.mark.parametrize("fmt", ["zip", "legacy", "pickle"])
def test_planted_pickle_is_live_without_the_guard(fmt, tmp_path):
    """The control: the planted file really runs its code when unpickled as pyiqa does (weights_only=False)."""
    path, marker = tmp_path / BRISQUE_FILE, tmp_path / "marker"
    _plant(path, marker, fmt)
    try:
        torch.load(path, weights_only=False)
    except RuntimeError:
        assert fmt == "pickle"  # a bare pickle runs while torch reads it as its header, then fails
    assert marker.read_text() == "executed"


@pytest.mark.parametrize("check_weights", [True, False])
@pytest.mark.parametrize("fmt", ["zip", "legacy", "pickle"])
def test_planted_pickle_never_runs(fmt, check_weights, pyiqa_cache, tmp_path, monkeypatch, no_network):
    marker = tmp_path / "marker"
    _plant(pyiqa_cache / BRISQUE_FILE, marker, fmt)
    calls = []
    monkeypatch.setattr(pyiqa, "create_metric", lambda *args, **kwargs: calls.append(args))
    with pytest.raises(UnsafeCheckpointError) as error:
        create_metric("pyiqa:brisque", check_weights=check_weights)
    message = str(error.value)
    assert str(pyiqa_cache / BRISQUE_FILE) in message
    assert "weights_only=True" in message and "Delete the file" in message
    assert isinstance(error.value, ValueError)  # a bad value: callers and the CLI treat it as a user error
    assert not marker.exists()
    assert calls == [], "pyiqa's loader must never see a refused file"


def test_planted_pretrained_model_path_is_refused(tmp_path, pyiqa_cache, no_network):
    marker, path = tmp_path / "marker", tmp_path / "elsewhere" / "weights.pth"
    _plant(path, marker, "zip")
    with pytest.raises(UnsafeCheckpointError, match=str(path)):
        create_metric("pyiqa:brisque", pretrained_model_path=str(path))
    assert not marker.exists()


def test_safe_cached_weights_build_and_score(pyiqa_cache, no_sockets, pair):
    """A tensors-only file passes the check and pyiqa builds and scores with it, offline."""
    generator = torch.Generator().manual_seed(0)
    pyiqa_cache.mkdir(parents=True)
    torch.save((torch.randn(40, generator=generator), torch.randn(40, 36, generator=generator)), pyiqa_cache / BRISQUE_FILE)
    metric = create_metric("pyiqa:brisque")
    assert metric.requires_weights and not metric.requires_reference
    scores = metric(pair[0])
    assert scores.shape == (len(pair[0]),) and bool(torch.isfinite(scores).all())
    assert torch.load is torch.serialization.load, "the weights-only guard is removed after construction"
