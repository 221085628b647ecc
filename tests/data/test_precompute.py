"""precompute: fills the store with the metric's scores, resumes after an interruption."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from torch.utils.data import TensorDataset
from torchvision.datasets import ImageFolder

from qualoader.data import QualityDataset, SampleLoadError, ScoreStore, StoreError, describe, precompute
from qualoader.data._samples import image_to_tensor
from qualoader.metrics import QualityMetric
from tests.helpers import ListDataset


class Interrupted(RuntimeError):
    pass


class FailingAfter(QualityMetric):
    """The wrapped metric (same name and config, so the same fingerprint) that raises on call ``k + 1``."""

    def __init__(self, inner: QualityMetric, k: int) -> None:
        super().__init__()
        self.inner, self.k, self.calls = inner, k, 0
        self.name = inner.name

    def get_config(self) -> dict[str, Any]:
        return self.inner.get_config()

    def score(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        if self.calls == self.k:
            raise Interrupted(f"interrupted after {self.k} batches")
        self.calls += 1
        return self.inner.score(images)



def test_fills_store_with_direct_scores(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    table = precompute(fmnist_small, sharpness, tmp_path / "s", batch_size=40, progress=False)
    assert table.complete and table.length == 96
    assert np.array_equal(table.scores(), sharpness(fmnist_small.tensors[0]).double().numpy())
    assert ScoreStore(tmp_path / "s").table(sharpness).complete


def test_interrupt_and_resume_equals_uninterrupted(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    reference = precompute(fmnist_small, sharpness, ScoreStore(tmp_path / "a", 96), batch_size=16, progress=False)
    store = ScoreStore(tmp_path / "b", 96)
    failing = FailingAfter(sharpness, k=3)
    assert failing.fingerprint() == sharpness.fingerprint()
    with pytest.raises(Interrupted):
        precompute(fmnist_small, failing, store, batch_size=16, progress=False)
    partial = store.table(sharpness)
    assert partial.num_scored == 48 and partial.missing().tolist() == list(range(48, 96))
    resumed = FailingAfter(sharpness, k=100)
    table = precompute(fmnist_small, resumed, store, batch_size=16, progress=False)
    assert resumed.calls == 3  # only the 48 missing samples were scored
    assert np.array_equal(table.scores(), reference.scores()) and table.complete


def test_complete_store_loads_nothing(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    store = ScoreStore(tmp_path / "s", 96)
    precompute(fmnist_small, sharpness, store, progress=False, dataset_id="fmnist-96")

    class Exploding(TensorDataset):
        def __getitem__(self, index: int) -> Any:
            raise AssertionError("a complete store should not load samples")

    # with a dataset_id the identity needs no sample either (a content hash would load a few)
    assert precompute(Exploding(*fmnist_small.tensors), sharpness, store, progress=False, dataset_id="fmnist-96").complete


def test_workers_and_variable_sizes(tmp_path: Path, photos: torch.Tensor, sharpness: QualityMetric) -> None:
    samples = [{"image": photos[i, :, : 48 + 16 * (i % 2)], "name": str(i)} for i in range(len(photos))]
    table = precompute(ListDataset(samples), sharpness, tmp_path / "s", batch_size=4, num_workers=2, progress=False)
    expected = torch.cat([sharpness(s["image"][None]) for s in samples]).double().numpy()
    assert np.allclose(table.scores(), expected, rtol=1e-5, atol=0)


def test_bad_input(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    ScoreStore(tmp_path / "s", 95)
    with pytest.raises(StoreError, match="length should be the store's dataset length 95, but got length=96"):
        precompute(fmnist_small, sharpness, tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="store should hold scores for len"):
        precompute(fmnist_small, sharpness, ScoreStore(tmp_path / "s"), progress=False)
    with pytest.raises(TypeError, match="store should be a ScoreStore, a ScoreTable or a store folder, but got store=None"):
        precompute(fmnist_small, sharpness, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dataset should be a map-style Dataset"):
        precompute(iter([]), sharpness, tmp_path / "t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size should be a positive int"):
        precompute(fmnist_small, sharpness, tmp_path / "t", batch_size=0)
    with pytest.raises(TypeError, match=r"dataset\[0\] should be a tuple/list"):
        precompute(ListDataset([1, 2]), sharpness, tmp_path / "u", progress=False)
    with pytest.raises(ValueError, match=r"images should have C in \{1, 3\} channels|image should be a tensor of shape"):
        precompute(ListDataset([torch.zeros(5, 8, 8)]), sharpness, tmp_path / "v", progress=False)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _folder_scores(root: Path, metric: QualityMetric) -> np.ndarray:
    """Scores computed directly, file by file, in ImageFolder order (the expected store content)."""
    folder = ImageFolder(str(root))
    return np.array([float(metric(image_to_tensor(folder[i][0])[None])[0]) for i in range(len(folder))])


def test_blurred_in_place_files_are_rescored(tmp_path: Path, image_folder: Path, sharpness: QualityMetric) -> None:
    """Half the images blurred in place: the next run is not "done" with old scores; exactly those are rescored."""
    first = precompute(ImageFolder(str(image_folder)), sharpness, tmp_path / "s", batch_size=5, progress=False)
    before = first.scores()
    assert np.allclose(before, _folder_scores(image_folder, sharpness), rtol=1e-5, atol=0)
    files = [image_folder / key for key in ScoreStore(tmp_path / "s").keys() or ()]
    blurred = list(range(0, 12, 2))
    for k in blurred:
        Image.open(files[k]).filter(ImageFilter.GaussianBlur(2)).save(files[k])
    counting = FailingAfter(sharpness, k=100)
    table = precompute(ImageFolder(str(image_folder)), counting, tmp_path / "s", batch_size=5, progress=False)
    assert counting.calls == 2  # the 6 blurred files, in batches of 5: nothing else was rescored
    after = table.scores()
    assert np.allclose(after, _folder_scores(image_folder, sharpness), rtol=1e-5, atol=0)
    assert (after[blurred] < before[blurred]).all()  # blur lowers sharpness: the old scores are gone
    kept = [k for k in range(12) if k not in blurred]
    assert np.array_equal(after[kept], before[kept])


def test_added_file_is_refused(tmp_path: Path, image_folder: Path, sharpness: QualityMetric) -> None:
    precompute(ImageFolder(str(image_folder)), sharpness, tmp_path / "s", progress=False)
    (image_folder / "a" / "000.png").rename(image_folder / "a" / "zzz.png")
    with pytest.raises(StoreError, match=r"1 file\(s\) added, e.g. 'a/zzz.png', 1 file\(s\) removed, e.g. 'a/000.png'"):
        precompute(ImageFolder(str(image_folder)), sharpness, tmp_path / "s", progress=False)


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_unreadable_image_is_named(tmp_path: Path, image_folder: Path, sharpness: QualityMetric, suffix: str) -> None:
    bad = image_folder / "b" / f"broken.{suffix}"
    Image.open(image_folder / "a" / "000.png").convert("RGB").save(bad)
    _truncate(bad)
    folder = ImageFolder(str(image_folder))
    index = [path for path, _ in folder.samples].index(str(bad))
    expected = rf"dataset\[{index}\] \(file '{re.escape(str(bad))}'\) should be a readable sample, but got OSError"
    with pytest.raises(SampleLoadError, match=expected):
        precompute(folder, sharpness, tmp_path / "s", progress=False)
    with pytest.raises(SampleLoadError, match=rf"file '{re.escape(str(bad))}'"):
        QualityDataset(folder, sharpness)[index]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_unreadable_images_skipped(tmp_path: Path, image_folder: Path, sharpness: QualityMetric, num_workers: int) -> None:
    for name, suffix in (("broken", "png"), ("cut", "jpg")):
        path = image_folder / "a" / f"{name}.{suffix}"
        Image.open(image_folder / "a" / "000.png").convert("RGB").save(path)
        _truncate(path, 0.3)
    folder = ImageFolder(str(image_folder))
    bad = sorted(i for i, (path, _) in enumerate(folder.samples) if "broken" in path or "cut" in path)
    table = precompute(folder, sharpness, tmp_path / "s", batch_size=4, num_workers=num_workers, progress=False, on_error="skip")
    assert table.complete and table.num_skipped == 2 and table.num_scored == 12
    skipped = table.skipped()
    assert list(skipped) == bad
    assert all(folder.samples[i][0] in reason and "OSError" in reason for i, reason in skipped.items())
    scores = table.scores()
    assert np.isnan(scores[bad]).all()
    good = [i for i in range(14) if i not in bad]
    expected = [float(sharpness(image_to_tensor(folder[i][0])[None])[0]) for i in good]
    assert np.allclose(scores[good], expected, rtol=1e-5, atol=0)
    (summary,) = describe(table).metrics
    assert summary.skipped == 2 and summary.count == 12 and "skipped    2 unreadable sample(s)" in str(summary)
    again = FailingAfter(sharpness, k=0)  # a resumed run neither retries the skipped nor rescored the good
    precompute(folder, again, tmp_path / "s", progress=False, on_error="skip")
    assert again.calls == 0


def test_on_error_checked(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    with pytest.raises(ValueError, match=r"on_error should be one of \{'raise', 'skip'\}, but got on_error='ignore'"):
        precompute(fmnist_small, sharpness, tmp_path / "s", on_error="ignore")
