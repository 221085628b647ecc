"""Content provenance of a store: edits that keep a file's size and mtime are rescored, a copied folder is not,
and a write read from another version of a file than the store holds is refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from qualoader.data import ScoreStore, precompute
from qualoader.data._provenance import FileDigest, file_digest
from qualoader.data._samples import image_to_tensor
from qualoader.metrics import create_metric
from tests.helpers import CountingMetric


def _bmp_folder(root: Path, photos: torch.Tensor, count: int = 8) -> list[Path]:
    """Uncompressed 24x24 BMPs (every file the same size, so swaps and pixel edits keep sizes)."""
    files = []
    for k in range(count):
        crop = photos[k % len(photos), :, 5 + k : 29 + k, 5 + k : 29 + k]
        path = root / ("a" if k % 2 == 0 else "b") / f"{k:02d}.bmp"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((crop.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()).save(path)
        files.append(path)
    return sorted(files)


def _fresh(files: list[Path]) -> np.ndarray:
    """Sharpness of every file as it is now, float64 (N,)."""
    metric = create_metric("sharpness")
    return np.array([float(metric(image_to_tensor(Image.open(f).convert("RGB"))[None])[0]) for f in files])


def _rewrite_keeping_stat(path: Path, data: bytes) -> None:
    """Replace a file's bytes, then put its modification time back (as ``exiftool -P`` or an archive does)."""
    status = path.stat()
    assert len(data) == status.st_size
    path.write_bytes(data)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))


@pytest.fixture
def bmp_folder(tmp_path: Path, photos: torch.Tensor) -> list[Path]:
    return _bmp_folder(tmp_path / "images", photos)


def test_file_digest_is_size_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"abc")
    (tmp_path / "y").write_bytes(b"abd")
    x, y = file_digest(tmp_path / "x"), file_digest(tmp_path / "y")
    assert isinstance(x, FileDigest) and x.size == 3 and len(x.digest) == 16
    assert x.digest != y.digest and file_digest(tmp_path / "x") == x
    assert file_digest(tmp_path / "missing") is None


def test_edit_keeping_size_and_mtime_is_rescored(tmp_path: Path, bmp_folder: list[Path]) -> None:
    table = precompute(ImageFolder(str(tmp_path / "images")), create_metric("sharpness"), tmp_path / "s", progress=False)
    before = table.scores()
    # pixels of file 3 replaced by those of file 0 (same size): the bytes change, size and mtime do not
    _rewrite_keeping_stat(bmp_folder[3], bmp_folder[0].read_bytes())
    kept = precompute(ImageFolder(str(tmp_path / "images")), create_metric("sharpness"), tmp_path / "s", progress=False, trust_mtime=True)
    assert kept.scores()[3] == before[3] != before[0]  # the opt-out trusts size and mtime: the old score stays
    counting = CountingMetric(create_metric("sharpness"))
    table = precompute(ImageFolder(str(tmp_path / "images")), counting, tmp_path / "s", progress=False)
    assert counting.scored == 1  # exactly the edited file was rescored
    # float32 scores of a batch of one differ from a batch of eight in the last bits
    assert np.allclose(table.scores(), _fresh(bmp_folder), rtol=1e-5, atol=0) and np.isclose(table.scores()[3], before[0], rtol=1e-5)


def test_same_size_swap_is_rescored(tmp_path: Path, bmp_folder: list[Path]) -> None:
    precompute(ImageFolder(str(tmp_path / "images")), create_metric("sharpness"), tmp_path / "s", progress=False)
    one, two = bmp_folder[1].read_bytes(), bmp_folder[6].read_bytes()
    _rewrite_keeping_stat(bmp_folder[1], two)
    _rewrite_keeping_stat(bmp_folder[6], one)
    counting = CountingMetric(create_metric("sharpness"))
    table = precompute(ImageFolder(str(tmp_path / "images")), counting, tmp_path / "s", progress=False)
    assert counting.scored == 2
    assert np.allclose(table.scores(), _fresh(bmp_folder), rtol=1e-5, atol=0)


def test_copied_folder_is_not_rescored(tmp_path: Path, bmp_folder: list[Path]) -> None:
    precompute(ImageFolder(str(tmp_path / "images")), create_metric("sharpness"), tmp_path / "s", progress=False)
    scores = ScoreStore(tmp_path / "s").table(create_metric("sharpness")).scores()
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "images", copy, copy_function=shutil.copyfile)  # new mtimes, same bytes
    assert all((copy / f.relative_to(tmp_path / "images")).stat().st_mtime_ns != f.stat().st_mtime_ns for f in bmp_folder)
    store = ScoreStore(tmp_path / "s")
    counting = CountingMetric(create_metric("sharpness"))
    table = precompute(ImageFolder(str(copy)), counting, store, progress=False)
    assert counting.scored == 0 and np.array_equal(table.scores(), scores)
    # and a copied folder with one file changed rescores that file only
    (copy / bmp_folder[6].relative_to(tmp_path / "images")).write_bytes(bmp_folder[2].read_bytes())
    counting = CountingMetric(create_metric("sharpness"))
    table = precompute(ImageFolder(str(copy)), counting, ScoreStore(tmp_path / "s"), progress=False, trust_mtime=True)
    assert counting.scored == 1 and np.isclose(table.scores()[6], scores[2], rtol=1e-5)


def test_write_of_another_version_is_refused(tmp_path: Path, bmp_folder: list[Path]) -> None:
    """The overlapping-runs rule, step by step: a score read from a version the store does not hold is never stored."""
    dataset = ImageFolder(str(tmp_path / "images"))
    table = precompute(dataset, create_metric("sharpness"), tmp_path / "s", progress=False)
    store = ScoreStore(tmp_path / "s")
    provenance = store.provenance
    old = file_digest(bmp_folder[4])
    assert old is not None
    assert provenance.claim([4], [old], store.tables).tolist() == [True]  # the version the store holds
    _rewrite_keeping_stat(bmp_folder[4], bmp_folder[0].read_bytes())
    new = file_digest(bmp_folder[4])
    assert new is not None and (new.size, new.mtime_ns) == (old.size, old.mtime_ns) and new.digest != old.digest
    # another run read the new bytes: refused (the store's cells came from the old ones) and the cell is forgotten
    assert provenance.claim([4], [new], store.tables).tolist() == [False]
    assert table.missing().tolist() == [4]
    # the old run's late write is refused too: the record no longer vouches for any version until one is read again
    assert provenance.claim([4], [new], store.tables).tolist() == [True]
    assert provenance.claim([4], [old], store.tables).tolist() == [False]
    # a version read after the file was rewritten with a new mtime is refused until the store has matched it
    bmp_folder[5].write_bytes(bmp_folder[5].read_bytes())
    os.utime(bmp_folder[5], ns=(0, 10**18))
    assert provenance.claim([5], [file_digest(bmp_folder[5])], store.tables).tolist() == [False]
    final = precompute(dataset, create_metric("sharpness"), tmp_path / "s", progress=False)
    assert final.complete and np.allclose(final.scores(), _fresh(bmp_folder), rtol=1e-5, atol=0)


def test_cli_trust_mtime_option(tmp_path: Path, bmp_folder: list[Path]) -> None:
    from qualoader.cli import main

    argv = ["precompute", str(tmp_path / "images"), "--store", str(tmp_path / "s"), "--metric", "sharpness", "--no-progress"]
    assert main(argv) == 0
    before = ScoreStore(tmp_path / "s").table(create_metric("sharpness")).scores()
    _rewrite_keeping_stat(bmp_folder[2], bmp_folder[7].read_bytes())
    assert main([*argv, "--trust-mtime"]) == 0
    assert ScoreStore(tmp_path / "s").table(create_metric("sharpness")).scores()[2] == before[2]  # trusted: not read
    assert main(argv) == 0
    assert np.isclose(ScoreStore(tmp_path / "s").table(create_metric("sharpness")).scores()[2], before[7], rtol=1e-5)


class Interleaving(CountingMetric):
    """``sharpness`` whose first batch runs ``hook`` between reading its images and storing their scores."""

    def __init__(self, hook: Any) -> None:
        super().__init__(create_metric("sharpness"))
        self.hook = hook

    def score(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return super().score(images)


@pytest.mark.parametrize("keep_stat", [False, True], ids=["rewritten", "rewritten-keeping-size-and-mtime"])
def test_overlapping_run_cannot_store_the_version_it_read_before_a_change(tmp_path: Path, bmp_folder: list[Path], keep_stat: bool) -> None:
    """Run A reads the files; file 2 then changes and run B scores the new version; A's old score must not be kept."""
    dataset = ImageFolder(str(tmp_path / "images"))

    def change_then_run_b() -> None:
        if keep_stat:
            _rewrite_keeping_stat(bmp_folder[2], bmp_folder[5].read_bytes())
        else:
            bmp_folder[2].write_bytes(bmp_folder[5].read_bytes())
            os.utime(bmp_folder[2], ns=(0, bmp_folder[2].stat().st_mtime_ns + 10**9))
        assert precompute(dataset, create_metric("sharpness"), tmp_path / "s", progress=False).complete

    run_a = Interleaving(change_then_run_b)
    table = precompute(dataset, run_a, tmp_path / "s", batch_size=8, progress=False)
    assert run_a.scored == 8 + 1  # its batch of 8 (file 2's score refused), then file 2 again in a further pass
    fresh = _fresh(bmp_folder)
    assert table.complete and np.allclose(table.scores(), fresh, rtol=1e-5, atol=0)
    # nothing stale is left for a later run to trust: even one that trusts size and mtime finds every score fresh
    again = CountingMetric(create_metric("sharpness"))
    assert np.allclose(precompute(dataset, again, tmp_path / "s", progress=False, trust_mtime=True).scores(), fresh, rtol=1e-5, atol=0)
    assert again.scored == 0


def test_a_vanished_file_is_skipped_by_name(tmp_path: Path, bmp_folder: list[Path]) -> None:
    dataset = ImageFolder(str(tmp_path / "images"))
    bmp_folder[3].unlink()  # listed, then gone: nothing to hash and nothing to decode
    table = precompute(dataset, create_metric("sharpness"), tmp_path / "s", progress=False, on_error="skip")
    assert table.complete and list(table.skipped()) == [3] and "06.bmp" in table.skipped()[3]  # named by its file
    assert table.num_scored == 7
