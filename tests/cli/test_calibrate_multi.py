"""``qualoader calibrate --metric a,b,c``: one sweep, one forward pass per batch, one profile per metric; held-out data,
weak fits, metric parameters, threads and progress phases.

Real data (Fashion-MNIST test images, the embedded network), short sweeps: each run takes seconds.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from qualoader.datasets import load_fashion_mnist
from qualoader.metrics import create_metric
from qualoader.profiles import load_profile
from qualoader.reference.network import ReferenceNetwork

#: Two corruptions at severity 4 plus the clean images: 3 rows per image.
SWEEP = ["--severities", "0", "4", "--corruptions", "gaussian_noise", "contrast", "--steps", "40"]
#: 100 test images, 70 fitted and 30 held out: enough for fits that clear chance on this network.
DATA = ["--reference", "embedded", "--data", "fashion-mnist:test", "--max-images", "100", "--seed", "2"]


def _calibrate(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["calibrate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """``(images, taps)`` of every forward pass of a reference network (through ``run_taps``, which every pass takes)."""
    seen: list[tuple[int, int]] = []
    original = ReferenceNetwork.run_taps

    def spy(self: ReferenceNetwork, images: torch.Tensor, taps: list) -> list:
        seen.append((int(images.shape[0]), len(taps)))
        return original(self, images, taps)

    monkeypatch.setattr(ReferenceNetwork, "run_taps", spy)
    return seen


def test_three_metrics_from_one_sweep_one_pass_per_batch(tmp_path: Path, passes: list, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "profiles"  # created by the command
    code, stdout, err = _calibrate([*DATA, "--metric", "confidence,task-guided,bn-shift", *SWEEP, "--no-progress", "--allow-weak",
                                    "--out", str(out)], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert sorted(summary) == ["bn-shift", "confidence", "task-guided"]
    assert sorted(path.name for path in out.iterdir()) == ["bn-shift.json", "confidence.json", "task-guided.head.pt", "task-guided.json"]
    # the sweep: 70 fit + 30 held-out images, 3 conditions, one batch each -> 6 passes, each read by every consumer at once
    # (confidence, bn-shift, the errors, the head's features); single images are the label check and bn-shift's map probe
    sweep = [taps for images, taps in passes if images > 1]
    assert sweep == [4] * 6
    assert sum(images for images, _ in passes if images > 1) == (70 + 30) * 3
    for name in summary:
        profile = load_profile(out / f"{name}.json")
        assert profile.metric.name == name and profile.provenance["split"]["n_held_out"] == 30
        assert profile.provenance["held_out"]["rows"] == 90
        low, high = profile.provenance["held_out"]["auroc_ci"]
        assert 0.0 <= low <= profile.provenance["held_out"]["auroc"] <= high <= 1.0
        scores = create_metric(name, profile=out / f"{name}.json")(load_fashion_mnist("test")[0][:8])
        assert scores.shape == (8,)


def test_a_metric_of_the_joint_sweep_is_the_metric_calibrated_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*DATA, *SWEEP, "--no-progress", "--allow-weak"]
    assert _calibrate([*argv, "--metric", "confidence,bn-shift", "--out", str(tmp_path / "{metric}-joint.json")], capsys)[0] == 0
    assert _calibrate([*argv, "--metric", "bn-shift", "--out", str(tmp_path / "alone.json")], capsys)[0] == 0
    joint, alone = load_profile(tmp_path / "bn-shift-joint.json"), load_profile(tmp_path / "alone.json")
    # the same rows, scored from the shared pass or alone: the same calibration and the same held-out figures
    assert joint.calibration.state_dict() == alone.calibration.state_dict()
    assert joint.provenance["held_out"] == alone.provenance["held_out"]


def test_progress_names_its_phases_and_estimates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 70 + 30 images, 3 conditions: 6 batches, the estimate comes after the third
    argv = [*DATA, "--metric", "confidence,task-guided", *SWEEP, "--allow-weak", "--out", str(tmp_path)]
    code, _, err = _calibrate(argv, capsys)
    assert code == 0, err
    phases = [line.split(": ")[1] for line in err.splitlines() if line.startswith("qualoader calibrate: ")]
    assert phases.index("sweep") < phases.index("head training") < phases.index("calibration fit")
    assert "s left" in err  # the estimate after the first batches


def test_held_out_split_is_recorded_and_defaults_to_fashion_mnist_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--reference", "embedded", "--metric", "confidence", "--max-images", "70", *SWEEP, "--no-progress", "--allow-weak"]
    code, _, err = _calibrate([*argv, "--data", "fashion-mnist:train", "--out", str(tmp_path / "default.json")], capsys)
    assert code == 0, err
    split = load_profile(tmp_path / "default.json").provenance["split"]
    assert split["holdout"] == "fashion-mnist:test" and split["n_fit"] == 70 and split["n_held_out"] == 30  # 3/7 of --max-images
    code, _, err = _calibrate([*argv, "--data", "fashion-mnist:train", "--holdout", "0.2", "--out", str(tmp_path / "f.json")], capsys)
    assert code == 0, err
    assert load_profile(tmp_path / "f.json").provenance["split"]["holdout"] == 0.2
    # the split the network is measured on may not be the one it is fitted on
    code, _, err = _calibrate([*argv, "--data", "fashion-mnist:test", "--holdout", "fashion-mnist:test", "--out", str(tmp_path / "x.json")],
                              capsys)
    assert code == 2 and "--holdout should be another split than --data's 'test'" in err and err.count("\n") == 1


def test_weak_fit_is_refused_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_image_folder, fashion_class_names: tuple[str, ...]
) -> None:
    # clean images only: what errors the network makes there, bn-shift does not rank (held-out AUROC 0.35 [0.17, 0.50]).
    # A folder of the first 10 TEST images of each class (not 'T-shirt/top', no folder name): the same images with the
    # full dataset and with the bundled sample, where a seeded subset of fashion-mnist:test would differ between them.
    classes = {name: index for index, name in enumerate(fashion_class_names) if "/" not in name}
    data = write_image_folder(classes, per_class=10)
    argv = ["--reference", "embedded", "--metric", "confidence,bn-shift", "--data", str(data),
            "--severities", "0", "--corruptions", "gaussian_noise", "--no-progress"]
    out = tmp_path / "weak"
    code, _, err = _calibrate([*argv, "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "should rank the network's errors better than chance, but got bn-shift: held-out AUROC" in err
    assert "does not clear chance (0.5) by 0.05" in err and "confidence:" not in err
    assert not out.exists()  # nothing written, not even the folder
    code, _, err = _calibrate([*argv, "--allow-weak", "--out", str(out)], capsys)
    assert code == 0, err
    assert "does not clear chance" in load_profile(out / "bn-shift.json").provenance["weak"]
    assert "weak" not in load_profile(out / "confidence.json").provenance
    assert "the bn-shift profile is weak" in err and "written because of --allow-weak" in err


def test_metric_param_and_threads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        argv = [*DATA, "--metric", "confidence,bn-shift", *SWEEP, "--no-progress", "--allow-weak", "--threads", "1"]
        argv += ["--metric-param", "confidence.measure=entropy", "--metric-param", "bn-shift.layers=features.0.1,features.2.1"]
        code, _, err = _calibrate([*argv, "--out", str(tmp_path)], capsys)
        assert code == 0, err
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert load_profile(tmp_path / "confidence.json").metric.params == {"measure": "entropy"}
    bn = create_metric("bn-shift", profile=tmp_path / "bn-shift.json")
    assert bn.layers == ("features.0.1", "features.2.1")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metric-param", "confidence.colour=red"], "--metric-param should name a parameter of confidence (measure)"),
        (["--metric-param", "bn-shift.layers=a"], "--metric-param should set a parameter of a --metric (confidence)"),
        (["--metric-param", "measure=entropy"], "--metric-param should be METRIC.KEY=VALUE"),
        (["--metric-param", "confidence.measure=loud"], "measure should be one of"),
        (["--threads", "0"], "--threads"),
        (["--metric", "confidence,sharpness"], "which names sharpness"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    metric = [] if "--metric" in extra else ["--metric", "confidence"]  # a repeated option is refused by the parser itself
    argv = [*DATA, *metric, *SWEEP, "--no-progress", *extra, "--out", str(tmp_path / "p.json")]
    code, _, err = _calibrate(argv, capsys)
    assert code == 2 and err.startswith("qualoader calibrate: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert list(tmp_path.iterdir()) == []


#: A user's network whose last BatchNorm sees 1x1 maps at its 8 px input (written to the test's folder, imported from there).
SMALL_NET = """
from torch import nn


def build():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 4, stride=4), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2),
    )
"""


def test_small_layers_are_left_out_and_named(
    tmp_path: Path, write_image_folder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "smallnet.py").write_text(SMALL_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    import smallnet

    torch.manual_seed(0)
    torch.save(smallnet.build().state_dict(), tmp_path / "small.pt")
    root = write_image_folder({"Trouser": 1, "Bag": 8}, per_class=20)
    argv = ["--reference", "smallnet:build", "--weights", str(tmp_path / "small.pt"), "--input-size", "8", "--in-channels", "1",
            "--labels", "Trouser,Bag", "--metric", "bn-shift", "--data", str(root), *SWEEP, "--no-progress", "--allow-weak"]
    code, _, err = _calibrate([*argv, "--out", str(tmp_path / "bn.json")], capsys)
    assert code == 0, err
    assert "left out 1 of 3 BatchNorm layers whose maps are under 4x4" in err and "7 (1x1)" in err
    profile = load_profile(tmp_path / "bn.json", trust=True)
    assert profile.provenance["skipped_layers"] == {"7": [1, 1]}
    assert profile.metric.params["layers"] == ["1", "4"]
    # the profile scores the kept layers by name: built from it, the metric warns no more
    from qualoader.metrics.aligned.bn_shift import SmallLayersWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # this random network's profile is weak, and says so on load
        warnings.simplefilter("error", SmallLayersWarning)  # filters added last are matched first
        assert create_metric("bn-shift", profile=tmp_path / "bn.json", trust_profile=True).layers == ("1", "4")
