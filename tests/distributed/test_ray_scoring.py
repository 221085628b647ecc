"""Ray Data scoring: same sidecars as single-process scoring (a local Ray with 2 CPUs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from qualoader.distributed import score_shards_ray
from qualoader.webdataset import read_sidecar, score_shard, write_image_shards


@pytest.fixture(scope="module")
def shards(
    tmp_path_factory: pytest.TempPathFactory, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor], photos: torch.Tensor
) -> list[str]:
    images, labels = fashion_mnist_test
    folder = tmp_path_factory.mktemp("ray")
    fm = write_image_shards(images[:40], str(folder / "fm-%06d.tar"), labels=labels[:40], maxcount=20)
    photo = write_image_shards(photos[:6], str(folder / "photo-%06d.tar"), keys=[f"p{i}" for i in range(6)])
    return [str(p) for p in [*fm, *photo]]


@pytest.mark.slow  # Ray start-up alone takes ~10 s on the CI machine (measured ~22 s in total)
def test_ray_scores_equal_local_scores(shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "score",
            "--engine",
            "ray",
            "--num-cpus",
            "2",
            *shards,
            "--metric",
            "sharpness",
            "--metric",
            "colorfulness",
            "--out",
            str(tmp_path),
            "--batch-size",
            "8",
        ]
    )
    assert code == 0 and "scored 46 samples of 3 shards" in capsys.readouterr().out
    for shard in shards:
        ray_index = read_sidecar(tmp_path / (Path(shard).name + ".quality.json"))
        local = score_shard(shard, ["sharpness", "colorfulness"], batch_size=8)
        assert ray_index.keys == local.keys and ray_index.metrics == local.metrics and ray_index.shard == local.shard
        for metric in ("sharpness", "colorfulness"):
            torch.testing.assert_close(ray_index.scores(metric), local.scores(metric))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"metrics": "no-such-metric"}, KeyError),
        ({"metrics": []}, ValueError),
        ({"metrics": "sharpness,psnr"}, ValueError),
        ({"metrics": 3}, TypeError),
        ({"metrics": "psnr"}, ValueError),
        ({"metrics": "sharpness", "num_cpus": 0}, ValueError),
        ({"metrics": "sharpness", "batch_size": 0}, ValueError),
        ({"metrics": "sharpness", "on_error": "ignore"}, ValueError),
        ({"metrics": "sharpness", "address": 5}, TypeError),
        ({"metrics": "sharpness", "image_keys": ()}, ValueError),
    ],
)
def test_bad_arguments_fail_before_ray_starts(shards: list[str], kwargs: dict, error: type[Exception]) -> None:
    import ray

    with pytest.raises(error, match="should|no-such"):
        score_shards_ray(shards, **kwargs)
    assert not ray.is_initialized()


def test_no_shards() -> None:
    with pytest.raises(ValueError, match="at least one shard"):
        score_shards_ray([], "sharpness")


def test_an_unreachable_address_fails_within_the_timeout(shards: list[str]) -> None:
    """Ray alone retries an address nobody listens on for minutes; the probe answers at once (refused) or after connect_timeout."""
    import socket
    import time

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=rf"address should be a reachable Ray cluster, but got address='127.0.0.1:{port}'"):
        score_shards_ray(shards[:1], "sharpness", address=f"127.0.0.1:{port}", connect_timeout=2.0, progress=False)
    assert time.monotonic() - start < 10
    with pytest.raises(ValueError, match="connect_timeout should be a positive number"):
        score_shards_ray(shards[:1], "sharpness", address="127.0.0.1:1", connect_timeout=0)
