"""A TorchScript reference: refused at construction by the metrics that read its layers, with the way out; accepted by ``confidence``.

The network is a small BatchNorm CNN scripted and saved to ``tmp_path``, then loaded back as a user
would load their archive (``torch.jit.load``), or named as the ``--reference`` of ``qualoader calibrate``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from qualoader.cli import main
from qualoader.metrics import create_metric, metric_from_profile
from qualoader.profiles import ProfileError

CONVENTION = {"input_size": 28, "in_channels": 1, "mean": (0.5,), "std": (0.25,)}


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    ).eval()


@pytest.fixture
def scripted_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated; users still have such archives
        torch.jit.script(_tiny_cnn()).save(str(path))
    return path


def _load(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path))


@pytest.mark.parametrize("name", ["bn-shift", "feature-distance"])
def test_layer_reading_metrics_refuse_a_scripted_network_at_construction(name: str, scripted_path: Path) -> None:
    with pytest.raises(TypeError) as raised:
        create_metric(name, reference=_load(scripted_path), **CONVENTION)
    message = str(raised.value)
    assert f"plain nn.Module for {name!r}" in message and "TorchScript module" in message
    assert "no forward hooks" in message and "torchvision or timm name" in message and "'package.module:function' entry point" in message


def test_a_traced_network_is_refused_too() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated
        traced = torch.jit.trace(_tiny_cnn(), torch.rand(1, 1, 28, 28))
    with pytest.raises(TypeError, match="TorchScript module"):
        create_metric("bn-shift", reference=traced, **CONVENTION)


def test_confidence_reads_only_logits_and_accepts_it(scripted_path: Path) -> None:
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    scripted = create_metric("confidence", reference=_load(scripted_path), **CONVENTION)
    plain = create_metric("confidence", reference=_tiny_cnn(), **CONVENTION)
    assert torch.allclose(scripted(images), plain(images), atol=1e-6)


def test_a_torchscript_profile_for_bn_shift_is_refused_by_name(make_profile) -> None:
    profile = make_profile("torchscript", None, _tiny_cnn(), size=28, channels=1, torchscript=True)
    with pytest.raises(ProfileError, match="plain network for 'bn-shift'"):
        metric_from_profile(profile)


def test_calibrate_stops_with_one_line_and_writes_nothing(
    scripted_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "profile.json"
    argv = ["calibrate", "--reference", str(scripted_path), "--input-size", "28", "--in-channels", "1", "--metric", "bn-shift"]
    argv += ["--labels", ",".join(f"c{i}" for i in range(10)), "--data", "fashion-mnist", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qualoader calibrate: error: reference should be a plain nn.Module for 'bn-shift'") and "\n" not in err
    assert not out.exists()
