"""``qualoader tag``: real shards in, tagged shards + sidecars out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import webdataset as wds

from qualoader.calibration import DifficultyCalibration
from qualoader.cli import main
from qualoader.metrics import create_metric
from qualoader.webdataset import SkippedSampleWarning, read_sidecar, write_image_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> list[str]:
    images, labels = fashion_mnist_test
    folder = tmp_path_factory.mktemp("cli-tag")
    return [str(p) for p in write_image_shards(images[:60], str(folder / "in-%06d.tar"), labels=labels[:60], maxcount=25)]


def _samples(paths: list[Path] | list[str]) -> list[dict]:
    return list(wds.WebDataset([str(p) for p in paths], shardshuffle=False, empty_check=False))


def test_tag_writes_shards_and_sidecars(shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    pattern = shards[0].replace("in-000000", "in-{000000..000002}")
    code = main(["tag", pattern, str(out), "--metric", "sharpness", "--metric", "entropy", "--maxcount", "40", "--batch-size", "16"])
    assert code == 0 and "tagged 60 samples into 2 shards" in capsys.readouterr().out
    written = sorted(out.glob("*.tar"))
    assert [p.name for p in written] == ["tagged-000000.tar", "tagged-000001.tar"]
    before, after = _samples(shards), _samples(written)
    assert [s["__key__"] for s in after] == [s["__key__"] for s in before]
    for old, new in zip(before, after, strict=True):
        assert new["png"] == old["png"] and new["cls"] == old["cls"]
        assert set(json.loads(new["quality.json"])["quality"]) == {"sharpness", "entropy"}
    index = read_sidecar(out / "tagged-000001.tar.quality.json")
    assert len(index.quality) == 20 and index.metrics["entropy"]["fingerprint"] == create_metric("entropy").fingerprint()


def test_tag_with_calibration(shards: list[str], tmp_path: Path) -> None:
    calibration = DifficultyCalibration("logistic", True, {"mean": 0.1, "std": 0.05, "slope": -2.0, "bias": 0.0})
    calibration.save(tmp_path / "cal.json")
    code = main(["tag", shards[0], str(tmp_path / "out"), "--metric", "sharpness", "--calibration", f"sharpness={tmp_path / 'cal.json'}"])
    assert code == 0
    tags = [json.loads(s["quality.json"]) for s in _samples(sorted((tmp_path / "out").glob("*.tar")))]
    assert len(tags) == 25 and all(0 <= t["difficulty"]["sharpness"] <= 1 for t in tags)


def test_tag_console_script(shards: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qualoader", "tag", shards[1], str(tmp_path), "--metric", "brightness", "--prefix", "b"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listing = subprocess.run(["tar", "-tf", str(tmp_path / "b-000000.tar")], capture_output=True, text=True, check=True).stdout.split()
    assert listing[:3] == ["00000025.cls", "00000025.png", "00000025.quality.json"] and len(listing) == 75


def test_tag_corrupt_input(shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(shards[0]).read_bytes()
    bad = tmp_path / "bad.tar"
    bad.write_bytes(data[: len(data) // 2])
    assert main(["tag", str(bad), shards[1], str(tmp_path / "a"), "--metric", "sharpness"]) == 1
    assert "CorruptShardError" in capsys.readouterr().err
    with pytest.warns(SkippedSampleWarning, match="skipping after CorruptShardError"):
        assert main(["tag", str(bad), shards[1], str(tmp_path / "b"), "--metric", "sharpness", "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "1 skipped" in captured.out and "skipped 1 x CorruptShardError" in captured.out
    # qualoader's own warning: one line naming the command, as errors are
    assert "qualoader tag: warning: skipping after CorruptShardError" in captured.err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metric", "no-such"], "no-such"),
        (["--metric", "sharpness", "--maxcount", "0"], "--maxcount should be a positive int"),
        (["--metric", "sharpness", "--batch-size", "-1"], "--batch-size should be a positive int"),
        (["--metric", "sharpness", "--calibration", "contrast=x.json"], "--calibration should be NAME=PATH"),
        (["--metric", "psnr"], "no-reference"),
        (["--metric", "sharpness", "--prefix", "a/b"], "prefix should be"),
    ],
)
def test_tag_bad_arguments(shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    assert main(["tag", shards[0], str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


def test_tag_needs_out_dir(shards: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tag", shards[0], "--metric", "sharpness"]) == 2
    assert "at least one input shard and the output folder" in capsys.readouterr().err
    assert main(["tag", shards[0], "out"]) == 2  # --metric (or --profile) is required
    assert "--metric or --profile should name at least one metric, but got neither" in capsys.readouterr().err


def test_tag_refuses_its_own_input_folder(shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    shard = folder / "tagged-000000.tar"
    shard.write_bytes(Path(shards[0]).read_bytes())
    before = shard.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert main(["tag", str(shard), str(folder), "--metric", "contrast", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("qualoader tag: error: out_dir should not hold any input shard") and err.count("\n") == 1
    assert shard.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["tagged-000000.tar"]


def test_tag_overwrite_replaces_the_old_set(shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["tag", *shards, str(out), "--metric", "contrast", "--maxcount", "10"]) == 0
    assert len(list(out.glob("*.tar"))) == 6
    assert main(["tag", *shards, str(out), "--metric", "contrast", "--maxcount", "40"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["tag", *shards, str(out), "--metric", "contrast", "--maxcount", "40", "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("*.tar")) == ["tagged-000000.tar", "tagged-000001.tar"]
    assert len(_samples(sorted(out.glob("*.tar")))) == 60  # no stale shard counted twice


def test_tag_lists_skipped_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import tarfile

    shard = tmp_path / "in.tar"
    png = write_image_shards(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), str(tmp_path / "g-%d.tar"))[0]
    with tarfile.open(png) as archive:
        good = archive.extractfile("00000000.png").read()
    with tarfile.open(shard, "w") as tar:
        for name, data in (("a.png", good), ("b.png", b"broken"), ("c.png", good)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert main(["tag", str(shard), str(tmp_path / "x"), "--metric", "contrast"]) == 2  # a bad input image: a user error
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("qualoader tag")]  # one line (after the progress bar)
    assert line.startswith("qualoader tag: error: ") and "in.tar: sample 'b'" in line
    assert not (tmp_path / "x").exists()
    with pytest.warns(RuntimeWarning):
        assert main(["tag", str(shard), str(tmp_path / "y"), "--metric", "contrast", "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert "tagged 2 samples into 1 shards" in out and "(1 skipped)" in out
    assert f"skipped {shard} sample 'b': ImageDecodeError" in out
    index = read_sidecar(tmp_path / "y" / "tagged-000000.tar.quality.json")
    assert index.keys == ["a", "c"] and [(e.shard, e.key) for e in index.skipped_samples] == [(str(shard), "b")]
