"""A disk that fills while a score store is made (simulated with ``RLIMIT_FSIZE`` in a subprocess):
a clear error, never SIGBUS, and nothing half-made that reads as a valid store or table."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from qualoader.data import ScoreStore, identify_dataset
from qualoader.metrics import create_metric
from tests.helpers import precompute_argv, save_photo_crops


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child before exec
        # ignored, a write past the limit fails with EFBIG (like ENOSPC) instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _run(code: str, limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        preexec_fn=_limit_file_size(limit),
    )


_CREATE_TABLE = """
import sys
from qualoader.data import ScoreStore
from qualoader.metrics import create_metric
store = ScoreStore(sys.argv[1], 200_000, dataset_id="big")   # store.json fits under the limit
try:
    store.table(create_metric("sharpness"), create=True)     # 1.6 MB of scores does not
except OSError as error:
    print(f"OSError {error.errno}: {error}")
    sys.exit(3)
"""


@pytest.mark.slow
def test_full_disk_while_creating_a_table(tmp_path: Path) -> None:
    result = _run(_CREATE_TABLE, 64 * 1024, str(tmp_path / "s"))
    assert result.returncode == 3, (result.returncode, result.stderr)  # an error, not a SIGBUS/SIGXFSZ death
    assert "OSError 27" in result.stdout and "could not be written (File too large); free some disk space" in result.stdout
    store = ScoreStore(tmp_path / "s")  # the store itself is intact
    assert store.length == 200_000 and store.tables() == []
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [".lock", "store.json"]  # no half-made table
    with pytest.raises(LookupError, match="store should hold scores for metric 'sharpness'"):
        store.table(create_metric("sharpness"))
    assert store.table(create_metric("sharpness"), create=True).num_scored == 0  # with space, it just works


_CREATE_STORE = """
import sys
from torchvision.datasets import ImageFolder
from qualoader.data import ScoreStore, identify_dataset
try:
    ScoreStore(sys.argv[1], identity=identify_dataset(ImageFolder(sys.argv[2])))  # the manifest does not fit
except OSError as error:
    print(f"OSError {error.errno}: {error}")
    sys.exit(3)
"""


@pytest.mark.slow
def test_full_disk_while_creating_a_store(tmp_path: Path, photos: torch.Tensor) -> None:
    for k in range(40):
        (tmp_path / "images" / "c").mkdir(parents=True, exist_ok=True)
        Image.fromarray((photos[k % 15, :, :8, k : k + 8].permute(1, 2, 0) * 255).byte().numpy()).save(
            tmp_path / "images" / "c" / f"image-{k:04d}.png"
        )
    result = _run(_CREATE_STORE, 512, str(tmp_path / "s"), str(tmp_path / "images"))
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert "could not be written (File too large)" in result.stdout
    assert not (tmp_path / "s" / "store.json").exists()  # written last: never there without its manifest
    with pytest.raises(ValueError, match="length should be given to create a new store"):
        ScoreStore(tmp_path / "s")  # the folder does not read as a store
    identity = identify_dataset(ImageFolder(str(tmp_path / "images")))
    assert ScoreStore(tmp_path / "s", identity=identity).identity == identity  # retried with space: created


@pytest.mark.slow
def test_full_disk_in_precompute_cli(tmp_path: Path, photos: torch.Tensor) -> None:
    save_photo_crops(tmp_path / "images" / "c", photos, count=4, side=16)
    result = subprocess.run(
        [sys.executable, "-m", "qualoader", *precompute_argv(tmp_path / "images", tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        preexec_fn=_limit_file_size(100),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("qualoader precompute: error: ") and "File too large" in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback
    assert not (tmp_path / "s" / "store.json").exists()


_FILL_BETWEEN = """
import resource, sys
import torch
from torch.utils.data import TensorDataset
from qualoader.data import ScoreStore, identify_dataset, precompute
from qualoader.metrics import create_metric
dataset = TensorDataset(torch.zeros(5000, 1, 8, 8))
store = ScoreStore(sys.argv[1], dataset_id="zeros", identity=identify_dataset(dataset, dataset_id="zeros"))  # its files fit
resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))   # then the disk fills: 40 KB of scores do not
try:
    precompute(dataset, create_metric("sharpness"), store, progress=False)
except OSError as error:
    print(f"OSError {error.errno}: {error}")
    sys.exit(3)
"""


@pytest.mark.slow
def test_full_disk_between_store_and_tables_leaves_no_store(tmp_path: Path) -> None:
    result = _run(_FILL_BETWEEN, 1 << 30, str(tmp_path / "s"))
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert "could not be written (File too large)" in result.stdout
    # what was made is removed again, store.json first: nothing reads as a store with empty tables
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [".lock"]
    with pytest.raises(ValueError, match="length should be given to create a new store"):
        ScoreStore(tmp_path / "s")


def test_sparse_store_arrays_are_never_mapped(tmp_path: Path) -> None:
    """Every array of a store is written with real blocks (a full disk fails the write, never a later SIGBUS)."""
    store = ScoreStore(tmp_path / "s", 100_000, dataset_id="big")
    table = store.table(create_metric("sharpness"), create=True)
    assert store.provenance.records().shape == (100_000,)  # made when first used (a store of in-memory data)
    for path in (tmp_path / "s" / "content.npy", table.path / "scores.npy", table.path / "scored.npy"):
        status = path.stat()
        assert status.st_blocks * 512 >= status.st_size, path  # allocated, not a hole


def test_a_sparse_table_gets_real_blocks_before_it_is_written(tmp_path: Path) -> None:
    """A table whose scores file has a hole (a sparse copy) is allocated before it is mapped for writing."""
    store = ScoreStore(tmp_path / "s", 100_000, dataset_id="big")
    table = store.table(create_metric("sharpness"), create=True)
    path = table.path / "scores.npy"
    data = path.read_bytes()
    header = data[: data.index(b"\n") + 1]
    with open(path, "wb") as file:  # the same file, its NaN body left as a hole
        file.write(header)
        file.truncate(len(data))
    hole = path.stat()
    if hole.st_blocks * 512 >= hole.st_size:
        pytest.skip("this file system does not make sparse files")
    table = ScoreStore(tmp_path / "s").table(create_metric("sharpness"))
    table.write([5], [0.25])
    status = path.stat()
    assert status.st_blocks * 512 >= status.st_size and table.read([5])[0].tolist() == [0.25]
