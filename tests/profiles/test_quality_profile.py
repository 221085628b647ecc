"""Quality profiles: the shipped defaults, save/load round trips, every reference source, and each bad-input error."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torchvision import models

from qualoader.calibration import SHIPPED_DEFAULTS, default_calibration
from qualoader.profiles import (
    PROFILE_VERSION,
    ProfileError,
    WeightsFile,
    build_reference,
    default_profile_path,
    file_sha256,
    load_profile,
    save_profile,
)
from qualoader.reference import DEFAULT_CHECKPOINT, FashionCNN, default_reference

SHIPPED_PROFILES = sorted(name for name, entry in SHIPPED_DEFAULTS.items() if entry.profile is not None)


@pytest.mark.parametrize("name", SHIPPED_PROFILES)
def test_shipped_profile_is_the_default(name: str) -> None:
    profile = load_profile(default_profile_path(name))
    assert profile.metric.name == name and profile.reference.source == "embedded"
    assert profile.reference.weights.path == DEFAULT_CHECKPOINT.resolve()
    assert profile.calibration == default_calibration(name)
    held_out = profile.provenance["held_out"]
    assert held_out["split"] == "test" and 0.5 < held_out["auroc"] <= 1.0 and held_out["brier"] < held_out["brier_base"]
    network = build_reference(profile)
    assert network.weights_hash == default_reference().weights_hash  # the same network as the embedded default
    assert profile.reference.domain.channels == 1 and profile.reference.domain.size == (28, 28)


def test_round_trip_keeps_identity_and_relative_paths(copied_default: Path, tmp_path: Path) -> None:
    stored = json.loads(copied_default.read_text())
    assert stored["reference"]["weights"]["path"] == "weights.pt"  # relative to the profile's folder
    profile = load_profile(copied_default)
    shipped = load_profile(default_profile_path("bn-shift"))
    assert profile.identity == shipped.identity and profile.score_identity == shipped.score_identity
    again = save_profile(profile, tmp_path / "again.json")
    assert load_profile(again).to_dict() == profile.to_dict()
    recalibrated = profile.with_calibration(None, note="uncalibrated")
    assert recalibrated.score_identity == profile.score_identity and recalibrated.identity != profile.identity


def test_altered_weights_are_refused(copied_default: Path) -> None:
    weights = copied_default.parent / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ProfileError, match="should have the sha256 .* but got .* with sha256"):
        load_profile(copied_default)
    profile = load_profile(copied_default, verify=False)
    with pytest.raises(ProfileError, match="sha256"):
        build_reference(profile)  # checked again when the network is built


def test_missing_weights_are_refused(copied_default: Path) -> None:
    (copied_default.parent / "weights.pt").unlink()
    with pytest.raises(ProfileError, match="never downloads"):
        load_profile(copied_default)


def test_newer_format_version_is_refused(copied_default: Path) -> None:
    data = json.loads(copied_default.read_text())
    data["format_version"] = PROFILE_VERSION + 1
    copied_default.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="newer qualoader"):
        load_profile(copied_default)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("metric"), "missing \\['metric'\\]"),
        (lambda d: d.update(format="something-else"), "format"),
        (lambda d: d["reference"].update(source="onnx"), "source should be one of"),
        (lambda d: d["reference"]["transform"].update(resize="crop"), "resize should be one of"),
        (lambda d: d["reference"].update(labels=["only one"]), "labels should be at least 2"),
        (lambda d: d["reference"]["weights"].update(sha256="abc"), "64 lower-case hex"),
        (lambda d: d["reference"]["domain"].update(channels=2), "channels should be 1 or 3"),
        (lambda d: d["calibration"].update(method="spline"), "method should be one of"),
    ],
)
def test_invalid_layout_is_refused(copied_default: Path, edit, match: str) -> None:
    data = json.loads(copied_default.read_text())
    edit(data)
    copied_default.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=match):
        load_profile(copied_default)


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ProfileError, match="should be a valid JSON document"):
        load_profile(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_profile(tmp_path / "absent.json")


def test_nan_is_never_written(copied_default: Path, tmp_path: Path) -> None:
    profile = replace(load_profile(copied_default), provenance={"held_out": {"auroc": math.nan}})
    with pytest.raises(ValueError, match="JSON"):
        save_profile(profile, tmp_path / "nan.json")
    assert not (tmp_path / "nan.json").exists() and not list(tmp_path.glob(".nan.json*"))


def test_torchvision_profile_builds_a_strictly_loaded_network(make_profile) -> None:
    torch.manual_seed(0)
    model = models.resnet18(num_classes=10)
    profile = make_profile("torchvision", "resnet18", model)
    network = build_reference(profile)
    assert network.input_size == (64, 64) and network.in_channels == 3
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model.eval()((images - 0.5) / 0.25)
    assert torch.allclose(network(images), expected, atol=1e-5)


def test_weights_that_do_not_fit_name_the_keys(make_profile) -> None:
    profile = make_profile("embedded", "fashion-mnist-cnn", models.resnet18(num_classes=10))
    with pytest.raises(
        ProfileError, match=r"fit the architecture FashionCNN.*missing keys \['classifier.1.bias'.*unexpected keys \['bn1.bias'"
    ):
        build_reference(profile)
    wrong_classes = make_profile("embedded", "fashion-mnist-cnn", FashionCNN(num_classes=7), labels=10)
    with pytest.raises(ProfileError, match=r"shape mismatches \['classifier.4.bias: \(7,\) for \(10,\)'"):
        build_reference(wrong_classes)


def test_unreadable_weights(make_profile, tmp_path: Path) -> None:
    profile = make_profile("entry_point", "qualoader.reference.architectures:FashionCNN", FashionCNN(), size=28, channels=1)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    broken = replace(profile, reference=replace(profile.reference, weights=WeightsFile.of(garbage)))
    with pytest.raises(ProfileError, match="cannot be read"):
        build_reference(broken)


def test_entry_point_and_torchscript_sources(make_profile) -> None:
    torch.manual_seed(1)
    model = FashionCNN().eval()
    images = torch.rand(3, 1, 28, 28)
    entry = build_reference(make_profile("entry_point", "qualoader.reference.architectures:FashionCNN", model, size=28, channels=1))
    scripted = build_reference(make_profile("torchscript", None, model, size=28, channels=1, torchscript=True))
    with torch.no_grad():
        expected = model((images - 0.5) / 0.25)
    assert torch.allclose(entry(images), expected, atol=1e-6) and torch.allclose(scripted(images), expected, atol=1e-6)
    with pytest.raises(ProfileError, match="importable 'module:function'"):
        build_reference(make_profile("entry_point", "qualoader.reference:no_such_factory", model, size=28, channels=1))


def test_labels_must_match_the_outputs(make_profile) -> None:
    with pytest.raises(ProfileError, match=r"one class per network output \(10\), but got 4 labels"):
        build_reference(
            make_profile("entry_point", "qualoader.reference.architectures:FashionCNN", FashionCNN(), labels=4, size=28, channels=1)
        )


def test_weights_file_records_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    record = WeightsFile.of(path)
    assert record.sha256 == file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert record.verify() == path.resolve()
