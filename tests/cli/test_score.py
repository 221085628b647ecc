"""``qualoader score --engine local``: sidecar indexes of existing shards (Ray: tests/distributed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from qualoader.metrics import create_metric
from qualoader.webdataset import decode_image, read_sidecar, write_image_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> list[str]:
    images, labels = fashion_mnist_test
    folder = tmp_path_factory.mktemp("cli-score")
    return [str(p) for p in write_image_shards(images[:50], str(folder / "s-%06d.tar"), labels=labels[:50], maxcount=20)]


def test_score_local_writes_sidecars(
    shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]
) -> None:
    assert main(["score", *shards, "--metric", "contrast", "--metric", "noise", "--out", str(tmp_path)]) == 0
    assert "scored 50 samples of 3 shards" in capsys.readouterr().out
    indexes = [read_sidecar(tmp_path / (Path(s).name + ".quality.json")) for s in shards]
    assert [len(i.quality) for i in indexes] == [20, 20, 10]
    scores = torch.cat([i.scores("contrast") for i in indexes]).float()
    torch.testing.assert_close(scores, create_metric("contrast")(fashion_mnist_test[0][:50]))
    assert all(i.metrics["noise"]["higher_is_better"] is False for i in indexes)
    assert not any(Path(s).with_suffix(".tar.quality.json").exists() for s in shards)  # inputs untouched


def test_score_skips_broken_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import tarfile

    good = write_image_shards(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), str(tmp_path / "g-%d.tar"))[0]
    with tarfile.open(good) as archive:
        png = archive.extractfile("00000000.png").read()
    assert decode_image(png).shape == (1, 8, 8)
    shard = tmp_path / "mixed.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in (("a.png", png), ("b.png", b"broken"), ("c.txt", b"no image")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert main(["score", str(shard), "--metric", "brightness", "--out", str(tmp_path / "o")]) == 2  # a bad input image
    with pytest.warns(RuntimeWarning):
        assert main(["score", str(shard), "--metric", "brightness", "--out", str(tmp_path / "o"), "--on-error", "skip"]) == 0
    index = read_sidecar(tmp_path / "o" / "mixed.tar.quality.json")
    assert index.keys == ["a"] and index.skipped == 2 and index.quality["a"]["brightness"] == 0.0
    out = capsys.readouterr().out
    assert "2 skipped" in out and "sample 'b': ImageDecodeError" in out and "sample 'c': MissingImageError" in out
    assert [(e.key, e.error) for e in index.skipped_samples] == [("b", "ImageDecodeError"), ("c", "MissingImageError")]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metric", "nope"], "nope"),
        (["--metric", "contrast", "--batch-size", "0"], "--batch-size should be a positive int"),
        (["--metric", "contrast", "--num-cpus", "2"], "should be used with --engine ray"),
        (["--metric", "contrast", "--engine", "ray", "--num-cpus", "0"], "--num-cpus should be a positive int"),
    ],
)
def test_score_bad_arguments(shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    assert main(["score", shards[0], "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


def test_score_duplicate_names(shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "other"
    copy.mkdir()
    (copy / Path(shards[0]).name).write_bytes(Path(shards[0]).read_bytes())
    assert main(["score", shards[0], str(copy / Path(shards[0]).name), "--metric", "contrast", "--out", str(tmp_path)]) == 2
    assert "distinct file names" in capsys.readouterr().err
