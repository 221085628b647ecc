"""``qualoader calibrate --reference/--profile``: quality profiles fitted on labelled data, measured on a held-out part,
and refused bad input.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from qualoader.datasets import load_fashion_mnist
from qualoader.metrics import create_metric
from qualoader.profiles import ProfileError, load_profile
from qualoader.reference import DEFAULT_CHECKPOINT
from qualoader.webdataset import write_image_shards

#: A small calibration run: 3 conditions per image, 2 corruptions; so few images may give a weak fit, which these tests accept.
QUICK_SWEEP = ["--severities", "0", "4", "--corruptions", "gaussian_noise", "contrast", "--no-progress", "--allow-weak"]

#: The embedded network's class as a user's ``module:function`` entry point (any importable factory works the same way).
ENTRY_POINT = "qualoader.reference.architectures:FashionCNN"
_FIGURES = {"auroc", "auroc_ci", "brier", "brier_base", "error_rate", "rows", "clean_error_rate"}
_TRANSFORM_28 = ["--input-size", "28", "--in-channels", "1", "--mean", "0.286", "--std", "0.353"]


def _strict_json(path: Path) -> dict:
    """The file parsed as strict JSON (NaN / Infinity raise)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _calibrate(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["calibrate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _fails(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str], *messages: str) -> None:
    """The run exits 2 with one error line holding every message, and writes nothing at ``out``."""
    code, _, err = _calibrate([*argv, "--out", str(out)], capsys)
    assert code == 2, err
    assert err.startswith("qualoader calibrate: error: ") and err.count("\n") == 1, err
    for message in messages:
        assert message in err, err
    assert list(out.parent.glob(out.name + "*")) == []  # neither the file nor a temporary leftover


def test_embedded_profile_reports_held_out_fit(tmp_path, capsys) -> None:
    out = tmp_path / "profile.json"
    argv = [
        "--reference",
        "embedded",
        "--metric",
        "bn-shift",
        "--data",
        "fashion-mnist:test",
        "--max-images",
        "80",
        "--seed",
        "1",
        *QUICK_SWEEP,
        "--out",
        str(out),
    ]
    code, stdout, err = _calibrate(argv, capsys)
    assert code == 0, err
    data = _strict_json(out)
    held = data["provenance"]["held_out"]
    assert set(held) == _FIGURES
    assert 0.0 < held["error_rate"] < 1.0 and 0.0 <= held["auroc"] <= 1.0
    assert held["rows"] == 24 * 3  # 30% of 80 held out, clean + 2 corruptions at severity 4
    assert data["provenance"]["split"] == {"holdout": 0.3, "seed": 1, "n_fit": 56, "n_held_out": 24}
    assert math.isclose(held["brier_base"], held["error_rate"] * (1 - held["error_rate"]), rel_tol=1e-4)
    assert json.loads(stdout)["held_out"] == held
    profile = load_profile(out)
    assert profile.reference.source == "embedded" and profile.metric.name == "bn-shift"
    assert profile.reference.domain.image_mean_range is not None  # measured on the calibration images
    metric = create_metric("bn-shift", profile=out)
    images, _ = load_fashion_mnist("test")
    difficulty = metric.difficulty(metric(images[:16]))
    assert difficulty.shape == (16,) and bool(((difficulty >= 0) & (difficulty <= 1)).all())
    # the same seed gives the same profile
    again = tmp_path / "again.json"
    argv[-1] = str(again)
    assert _calibrate(argv, capsys)[0] == 0
    assert load_profile(again).identity == profile.identity


def test_entry_point_reference_on_image_folder(tmp_path, write_image_folder, capsys) -> None:
    root = write_image_folder({"Trouser": 1, "Bag": 8, "Sneaker": 7, "Shirt": 6}, per_class=10)
    weights = tmp_path / "weights.pt"
    shutil.copyfile(DEFAULT_CHECKPOINT, weights)
    out = tmp_path / "entry.json"
    labels = "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
    code, _, err = _calibrate(
        [
            "--reference",
            ENTRY_POINT,
            "--weights",
            str(weights),
            *_TRANSFORM_28,
            "--labels",
            labels,
            "--metric",
            "bn-shift",
            "--data",
            str(root),
            "--max-images",
            "40",
            *QUICK_SWEEP,
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    profile = load_profile(out, trust=True)
    assert (profile.reference.source, profile.reference.name) == ("entry_point", ENTRY_POINT)
    assert profile.reference.transform.input_size == (28, 28) and profile.reference.weights.path == weights
    assert profile.provenance["data"] == f"imagefolder:{root}"
    assert 0.0 < profile.provenance["held_out"]["error_rate"] < 1.0
    # altered weights are refused when the profile is used
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ProfileError, match="sha256"):
        create_metric("bn-shift", profile=out, trust_profile=True)


def test_shards_with_class_indices(tmp_path, capsys) -> None:
    images, labels = load_fashion_mnist("test")
    shards = write_image_shards(images[:40], str(tmp_path / "data-%03d.tar"), labels=labels[:40], maxcount=20)
    out = tmp_path / "shards.json"
    code, _, err = _calibrate(
        ["--reference", "embedded", "--metric", "bn-shift", "--data", *map(str, shards), *QUICK_SWEEP, "--out", str(out)], capsys
    )
    assert code == 0, err
    assert load_profile(out).provenance["split"]["n_fit"] + load_profile(out).provenance["split"]["n_held_out"] == 40
    _fails(["--reference", "embedded", "--metric", "bn-shift", "--data", *map(str, shards), "--label-key", "label", *QUICK_SWEEP],
           tmp_path / "missing_key.json", capsys, "--label-key should name a member of every shard sample", "--label-key='label'")


def test_refit_existing_profile(tmp_path, capsys) -> None:
    first = tmp_path / "first.json"
    common = ["--max-images", "60", *QUICK_SWEEP]
    assert (
        _calibrate(
            ["--reference", "embedded", "--metric", "bn-shift", "--data", "fashion-mnist:test", *common, "--out", str(first)], capsys
        )[0]
        == 0
    )
    second = tmp_path / "second.json"
    code, _, err = _calibrate(
        ["--profile", str(first), "--data", "fashion-mnist:train", "--seed", "5", *common, "--out", str(second)], capsys
    )
    assert code == 0, err
    old, new = load_profile(first), load_profile(second)
    assert new.provenance["refit_of"] == old.identity and new.provenance["data"] == "fashion-mnist:train"
    assert new.score_identity == old.score_identity  # same network and metric: stored scores stay valid
    assert new.identity != old.identity


# -- statistics that cannot be fitted ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("classes", "per_class", "messages"),
    [
        # a network that always answers class 0 gets every image of classes 1 and 8 wrong ...
        ({"1": 1, "8": 8}, 10, ("error rate on the fit sweep should be strictly between 0 and 1", "error_rate=1", "no image right")),
        # ... and every image of class 0 right
        ({"0": 0}, 12, ("should be strictly between 0 and 1", "error_rate=0", "no error")),
    ],
    ids=["error-rate-one", "error-rate-zero"],
)
def test_error_rate_of_zero_or_one_is_refused(
    tmp_path, always_class_zero, write_image_folder, capsys, classes, per_class, messages
) -> None:
    root = write_image_folder(classes, per_class=per_class)
    _fails(
        [
            "--reference",
            ENTRY_POINT,
            "--weights",
            str(always_class_zero),
            *_TRANSFORM_28,
            "--metric",
            "bn-shift",
            "--data",
            str(root),
            *QUICK_SWEEP,
            "--labels",
            ",".join(map(str, range(10))),
        ],
        tmp_path / "p.json",
        capsys,
        *messages,
    )


# -- bad input: each a one-line error, nothing written ----------------------------------------------
def test_folder_labels_outside_the_network(tmp_path, write_image_folder, capsys) -> None:
    root = write_image_folder({"Trouser": 1, "Giraffe": 2}, per_class=4)
    _fails(["--reference", "embedded", "--metric", "bn-shift", "--data", str(root), *QUICK_SWEEP], tmp_path / "p.json", capsys,
           "the class folders of SOURCE=", "'Giraffe'", "outside the network's label set")


def test_imagenet_network_on_fashion_mnist_names_the_foreign_labels(tmp_path, capsys) -> None:
    # the case: a torchvision ImageNet classifier calibrated on Fashion-MNIST used to write "auroc": NaN
    from torchvision.models import resnet18

    weights = tmp_path / "resnet18.pt"
    torch.save(resnet18(weights=None).state_dict(), weights)
    _fails(
        ["--reference", "resnet18", "--weights", str(weights), "--metric", "bn-shift", *QUICK_SWEEP],
        tmp_path / "p.json",
        capsys,
        "the Fashion-MNIST class names of SOURCE='fashion-mnist' should name the network's outputs",
        "'Ankle boot'",
        "outside the network's label set: tench",
    )


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (
            ["--reference", ENTRY_POINT, "--weights", str(DEFAULT_CHECKPOINT), *_TRANSFORM_28],
            "labels should name one class per network output (10), but got 3 labels",
        ),
        # a named architecture is built with one output per label, so the trained head does not fit it
        (["--reference", "embedded"], "shape mismatches ['classifier.4.bias: (10,) for (3,)'"),
    ],
)
def test_label_count_must_match_outputs(tmp_path, reference, message, capsys) -> None:
    _fails([*reference, "--metric", "bn-shift", "--labels", "a,b,c", *QUICK_SWEEP], tmp_path / "p.json", capsys, message)


def test_weights_that_do_not_fit_the_architecture(tmp_path, capsys) -> None:
    _fails(
        ["--reference", "resnet18", "--weights", str(DEFAULT_CHECKPOINT), "--metric", "bn-shift", *QUICK_SWEEP],
        tmp_path / "p.json",
        capsys,
        "weights should fit the architecture torchvision resnet18",
        "missing keys ['bn1.bias'",
        "unexpected keys ['classifier.1.bias'",
    )


def test_unreadable_weights(tmp_path, capsys) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"this is not a checkpoint")
    _fails(["--reference", "embedded", "--weights", str(broken), "--metric", "bn-shift", *QUICK_SWEEP], tmp_path / "p.json", capsys,
           "weights should be a readable state_dict file", "cannot be read")


def test_profile_of_a_newer_format(tmp_path, capsys) -> None:
    from qualoader.profiles import default_profile_path

    data = json.loads(default_profile_path("bn-shift").read_text())
    data["format_version"] = 99
    data["reference"]["weights"]["path"] = str(DEFAULT_CHECKPOINT)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(data))
    _fails(["--profile", str(newer), *QUICK_SWEEP], tmp_path / "p.json", capsys, "format_version=99", "written by a newer qualoader")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--reference", "resnet18", "--metric", "bn-shift"], "--weights should be a local state_dict file for --reference='resnet18'"),
        (
            ["--reference", "resnet18", "--weights", "no_such.pt", "--metric", "bn-shift"],
            "--weights should be an existing file, but got --weights='no_such.pt'",
        ),
        (["--reference", "resnet181", "--weights", "w.pt", "--metric", "bn-shift"], "did you mean 'resnet18'"),
        (["--reference", "embedded", "--metric", "sharpness"], "--metric should be an aligned metric with a reference network"),
        (
            ["--reference", "embedded", "--metric", "bn-shift", "--holdout", "1.5"],
            "--holdout should be a fraction in (0, 1) or a SOURCE, but got --holdout='1.5'",
        ),
        (
            ["--reference", "pkg.models:net", "--weights", str(DEFAULT_CHECKPOINT), "--metric", "bn-shift"],
            "--input-size and --in-channels should be given for an entry-point --reference",
        ),
        (
            ["--reference", "no_such_module:net", "--weights", str(DEFAULT_CHECKPOINT), *_TRANSFORM_28, "--metric", "bn-shift"],
            "should be an importable 'module:function'",
        ),
        (["--metric", "bn-shift", "--weights", str(DEFAULT_CHECKPOINT)], "--weights should come with --reference"),
        (["--reference", "embedded", "--metric", "bn-shift", "--data", "fashion-mnist:valid"], "fashion-mnist:valid"),
        (
            ["fashion-mnist", "--reference", "embedded", "--metric", "bn-shift", "--data", "fashion-mnist:test"],
            "SOURCE should be given once",
        ),
    ],
)
def test_bad_profile_arguments(tmp_path, argv, message, capsys) -> None:
    _fails(argv, tmp_path / "p.json", capsys, message)
