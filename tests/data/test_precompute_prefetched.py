"""precompute with ``prefetched`` images (the command line's head start) and its ``threads`` rule."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import ImageFolder

from qualoader._file_versions import read_file
from qualoader.data import ScoreStore, precompute
from qualoader.data.precompute import PrefetchedImage
from qualoader.decoding import decode_array, load_image
from qualoader.metrics import QualityMetric, create_metric


class CountingLoader:
    """``load_image`` that counts its calls (picklable; counts in this process, so use with ``num_workers=0``)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: str) -> torch.Tensor:
        self.calls += 1
        return load_image(path)


def _prefetch(folder: ImageFolder, indices: list[int]) -> dict[int, PrefetchedImage]:
    """What the head start gives: each file read once, decoded, with the version of those bytes."""
    prefetched = {}
    for index in indices:
        data, version = read_file(folder.samples[index][0])
        prefetched[index] = PrefetchedImage(torch.from_numpy(decode_array(data)), version)
    return prefetched


def test_prefetched_images_are_scored_without_being_read_again(tmp_path: Path, image_folder: Path, sharpness: QualityMetric) -> None:
    loader = CountingLoader()
    folder = ImageFolder(str(image_folder), loader=loader)
    table = precompute(folder, sharpness, tmp_path / "s", batch_size=5, progress=False, prefetched=_prefetch(folder, [0, 3, 4, 7, 11]))
    assert loader.calls == 12 - 5 and table.complete
    plain = precompute(ImageFolder(str(image_folder), loader=load_image), sharpness, tmp_path / "plain", batch_size=5, progress=False)
    np.testing.assert_allclose(table.scores(), plain.scores(), rtol=1e-6)
    # the same file versions recorded, so neither store rescores anything on its next run
    assert (tmp_path / "s" / "content.npy").read_bytes() == (tmp_path / "plain" / "content.npy").read_bytes()


def test_prefetched_images_that_fail_the_checks_are_read_again(tmp_path: Path, image_folder: Path) -> None:
    loader = CountingLoader()
    folder = ImageFolder(str(image_folder), loader=loader)
    prefetched = _prefetch(folder, [0, 1, 2])
    prefetched[0] = PrefetchedImage(torch.full((3, 32, 32), float("nan")), prefetched[0].version)  # NaN pixels
    prefetched[1] = PrefetchedImage(prefetched[1].image[:, :2, :2], prefetched[1].version)  # under the metrics' smallest input
    prefetched[2] = PrefetchedImage(prefetched[2].image, None)  # no file version: its score could not be recorded with one
    metric = create_metric("noise")  # a 3x3 mask: min_size 3
    table = precompute(folder, metric, tmp_path / "s", progress=False, prefetched=prefetched)
    assert loader.calls == 12 and table.complete
    expected = precompute(ImageFolder(str(image_folder), loader=load_image), metric, tmp_path / "plain", progress=False)
    np.testing.assert_allclose(table.scores(), expected.scores(), rtol=1e-6)


def test_auto_threads_give_the_prefetched_images_every_core(
    tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While no worker decodes, scoring has every core; with the workers, the cores they leave; the caller's setting is back after."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    seen: list[tuple[int, int]] = []
    metric = create_metric("brightness")
    original = type(metric).score_features

    def recording(self: QualityMetric, features: object) -> torch.Tensor:
        seen.append((features.batch, torch.get_num_threads()))  # type: ignore[attr-defined]
        return original(self, features)

    monkeypatch.setattr(type(metric), "score_features", recording)
    folder = ImageFolder(str(image_folder), loader=load_image)
    before = torch.get_num_threads()
    precompute(folder, metric, tmp_path / "s", batch_size=4, num_workers=1, progress=False, threads="auto",
               prefetched=_prefetch(folder, list(range(8))))
    assert seen == [(4, cores), (4, cores), (4, max(1, cores - 1))] and torch.get_num_threads() == before


def test_threads_checked(tmp_path: Path, image_folder: Path, sharpness: QualityMetric) -> None:
    folder = ImageFolder(str(image_folder))
    for threads, kind in ((0, ValueError), ("all", TypeError), (True, TypeError)):
        with pytest.raises(kind, match=rf"threads should be a positive int, 'auto' or None, but got threads={threads!r}"):
            precompute(folder, sharpness, tmp_path / "s", progress=False, threads=threads)  # type: ignore[arg-type]
    assert not ScoreStore(tmp_path / "s", length=12).tables()  # refused before anything was scored
