"""``--profile PATH`` on precompute, tag, score and report, and the store's fingerprint of a profile's metric."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from qualoader.cli import main
from qualoader.data import ScoreStore
from qualoader.datasets import load_fashion_mnist
from qualoader.metrics import create_metric
from qualoader.profiles import load_profile, save_profile
from qualoader.webdataset import parse_quality_tags, read_shards, write_image_shards


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    images, labels = load_fashion_mnist("test")
    (path,) = write_image_shards(images[:12], str(tmp_path / "in-%03d.tar"), labels=labels[:12])
    return path


_USER_NETS = """
from qualoader.reference import FashionCNN


class Flipped(FashionCNN):
    def forward(self, x):
        return super().forward(x.flip(-1))


def plain():
    return FashionCNN(num_classes=10)


def flipped():
    return Flipped(num_classes=10)
"""


def test_two_profiles_of_one_metric_get_two_tables(tmp_path, copied_default, monkeypatch) -> None:
    # two user networks with the same parameters and another forward: only the profiles tell them apart
    (tmp_path / "user_nets.py").write_text(_USER_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    profile = load_profile(copied_default)
    paths = []
    for name in ("plain", "flipped"):
        reference = replace(profile.reference, source="entry_point", name=f"user_nets:{name}")
        paths.append(save_profile(replace(profile, name=name, reference=reference, path=None), tmp_path / f"{name}.json"))
    first, second = (create_metric("bn-shift", profile=path, trust_profile=True) for path in paths)
    assert first.state_dict().keys() == second.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True))
    images, _ = load_fashion_mnist("test")
    assert not torch.allclose(first(images[:8]), second(images[:8]))  # yet they score differently
    assert first.fingerprint() != second.fingerprint()
    store = ScoreStore(tmp_path / "store", length=8)
    tables = [store.table(metric, create=True) for metric in (first, second)]
    assert tables[0].path != tables[1].path and len(store.tables()) == 2
    tables[0].write(np.arange(8), first(images[:8]).double().numpy())
    assert tables[1].num_scored == 0  # the second profile reads none of the first one's scores


def test_precompute_with_profile(tmp_path, copied_default, capsys) -> None:
    store = tmp_path / "store"
    argv = ["precompute", "fashion-mnist:test", "--limit", "40", "--profile", str(copied_default), "--store", str(store), "--no-progress"]
    assert main(argv) == 0
    assert "40/40 scored" in capsys.readouterr().out
    (table,) = ScoreStore(store).tables()
    metric = create_metric("bn-shift", profile=copied_default)
    assert table.fingerprint == metric.fingerprint()
    images, _ = load_fashion_mnist("test")
    np.testing.assert_allclose(table.scores(), metric(images[:40]).double().numpy(), rtol=1e-5)
    # a copy of the shipped profile scores exactly as the shipped default: one table, read again, not rescored
    assert create_metric("bn-shift").fingerprint() == metric.fingerprint()
    assert main(["precompute", "fashion-mnist:test", "--limit", "40", "--metric", "bn-shift", "--store", str(store), "--no-progress"]) == 0
    assert len(ScoreStore(store).tables()) == 1


def test_tag_and_score_with_profile(tmp_path, copied_default, shard, capsys) -> None:
    out = tmp_path / "tagged"
    assert main(["tag", str(shard), str(out), "--profile", str(copied_default), "--metric", "sharpness", "--no-progress"]) == 0
    samples = list(parse_quality_tags()(read_shards()([str(path) for path in sorted(out.glob("*.tar"))])))
    metric = create_metric("bn-shift", profile=copied_default)
    assert len(samples) == 12 and set(samples[0]["__quality__"]) == {"bn-shift", "sharpness"}
    assert samples[0]["__fingerprints__"]["bn-shift"] == metric.fingerprint()
    assert all(0.0 <= sample["__difficulty__"]["bn-shift"] <= 1.0 for sample in samples)  # the profile's calibration
    sidecars = tmp_path / "sidecars"
    assert main(["score", str(shard), "--out", str(sidecars), "--profile", str(copied_default), "--no-progress"]) == 0
    assert "with bn-shift (local)" in capsys.readouterr().out
    index = json.loads(next(sidecars.glob("*.quality.json")).read_text())
    assert "bn-shift" in json.dumps(index)


def test_report_with_profile(tmp_path, copied_default, capsys) -> None:
    out = tmp_path / "report"
    assert (
        main(
            [
                "report",
                "fashion-mnist:test",
                "--profile",
                str(copied_default),
                "--max-images",
                "24",
                "--examples",
                "2",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert "bn-shift" in json.dumps(report)


def _newer(profile_path: Path) -> Path:
    data = json.loads(profile_path.read_text())
    data["format_version"] = 2
    newer = profile_path.with_name("newer.json")
    newer.write_text(json.dumps(data))
    return newer


@pytest.mark.parametrize("command", ["precompute", "tag", "score", "report"])
@pytest.mark.parametrize("problem", ["altered weights", "newer format", "no metric", "nested JSON"])
def test_bad_profiles_are_one_line_errors(tmp_path, copied_default, shard, command, problem, capsys) -> None:
    if problem == "altered weights":
        weights = tmp_path / "weights.pt"
        data = weights.read_bytes()
        weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        option, message = ["--profile", str(copied_default)], "should have the sha256"
    elif problem == "newer format":
        option, message = ["--profile", str(_newer(copied_default))], "written by a newer qualoader"
    elif problem == "nested JSON":  # a RecursionError in the JSON parser before; now one line naming the file
        nested = tmp_path / "nested.json"
        nested.write_text("[" * 100_000 + "]" * 100_000)
        option, message = ["--profile", str(nested)], "nested at most 64 levels"
    else:
        option, message = [], "--metric or --profile should name at least one metric, but got neither"
    out = tmp_path / "out"
    argv = {
        "precompute": ["precompute", "fashion-mnist:test", "--limit", "8", "--store", str(out)],
        "tag": ["tag", str(shard), str(out)],
        "score": ["score", str(shard), "--out", str(out)],
        "report": ["report", "fashion-mnist:test", "--out", str(out)],
    }[command]
    assert main([*argv, *option, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"qualoader {command}: error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("command", ["precompute", "tag"])
def test_a_nested_calibration_file_is_one_line_error(tmp_path, shard, command, capsys) -> None:
    nested = tmp_path / "nested.json"
    nested.write_text("{" + '"a":{' * 50_000 + "}" * 50_001)
    out = tmp_path / "out"
    argv = {
        "precompute": ["precompute", "fashion-mnist:test", "--limit", "8", "--store", str(out), "--calibration", str(nested)],
        "tag": ["tag", str(shard), str(out), "--calibration", f"sharpness={nested}"],
    }[command]
    assert main([*argv, "--metric", "sharpness", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"qualoader {command}: error: ") and err.count("\n") == 1 and "nested at most 64 levels" in err, err
    assert not out.exists()


def test_precompute_scores_metric_and_profile_in_one_pass(tmp_path, copied_default, capsys) -> None:
    """As on tag, score and report: --metric names and --profile metrics are all scored, one table each."""
    store = tmp_path / "s"
    command = ["precompute", "fashion-mnist:test", "--limit", "16", "--metric", "sharpness", "--profile", str(copied_default)]
    assert main([*command, "--store", str(store), "--no-progress"]) == 0
    tables = {table.fingerprint: table for table in ScoreStore(store).tables()}
    images, _ = load_fashion_mnist("test")
    for metric in (create_metric("sharpness"), create_metric("bn-shift", profile=copied_default)):
        np.testing.assert_allclose(tables.pop(metric.fingerprint()).scores(), metric(images[:16]).double().numpy(), rtol=1e-5)
    assert not tables
