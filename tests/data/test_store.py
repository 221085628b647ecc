"""Score store: persistence, fingerprints, atomic writes, corruption and mismatch errors."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset
from torchvision.datasets import ImageFolder

from qualoader.data import ScoreStore, ScoreTable, StoreError, identify_dataset, precompute
from qualoader.data.store import store_lock
from qualoader.metrics import QualityMetric, create_metric


@pytest.fixture
def table(tmp_path: Path, sharpness: QualityMetric) -> ScoreTable:
    return ScoreStore(tmp_path / "store", 50).table(sharpness, create=True)


def test_write_read_roundtrip(table: ScoreTable, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor], sharpness: QualityMetric) -> None:
    scores = sharpness(fashion_mnist_test[0][:10])
    index = torch.arange(10, 20)
    table.write(index, scores)
    values, valid = table.read(torch.arange(5, 25))
    assert valid.tolist() == [False] * 5 + [True] * 10 + [False] * 5
    assert np.array_equal(values[5:15], scores.double().numpy())
    assert np.isnan(values[:5]).all() and np.isnan(values[15:]).all()
    assert table.num_scored == 10 and not table.complete
    assert table.get(10) == float(scores[0]) and table.get(0) is None
    assert np.array_equal(table.missing(), np.r_[0:10, 20:50])
    assert np.array_equal(np.isfinite(table.scores()), table.scored())


def test_write_bad_input(table: ScoreTable) -> None:
    with pytest.raises(ValueError, match="values should be finite scores"):
        table.write([0, 1], [0.5, float("nan")])
    with pytest.raises(ValueError, match="values should have one score per index"):
        table.write([0, 1], [0.5])
    with pytest.raises(ValueError, match=r"indices should be in \[0, 50\)"):
        table.write([50], [0.5])
    with pytest.raises(TypeError, match="indices should be integers"):
        table.read([0.5])
    with pytest.raises(ValueError, match="index should be an int"):
        table.get(-1)
    assert table.num_scored == 0


def test_write_order_never_flags_without_score(table: ScoreTable, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between the score flush and the flag write leaves the samples unscored, not wrong."""
    def crash(self: np.memmap) -> None:
        raise KeyboardInterrupt("simulated crash after the scores were written")

    monkeypatch.setattr(np.memmap, "flush", crash)
    with pytest.raises(KeyboardInterrupt):
        table.write([3, 4], [0.25, 0.75])
    monkeypatch.undo()
    reopened = ScoreTable(table.path)
    assert reopened.read([3, 4])[1].tolist() == [False, False]
    reopened.write([3, 4], [0.25, 0.75])
    assert reopened.read([3, 4])[0].tolist() == [0.25, 0.75]


def test_pickled_table_reopens(table: ScoreTable) -> None:
    table.write([1], [0.5])
    clone = pickle.loads(pickle.dumps(table))
    assert clone.get(1) == 0.5
    table.write([2], [0.25])  # the clone sees writes made through another mapping of the files
    assert clone.get(2) == 0.25


def test_tables_per_fingerprint(tmp_path: Path) -> None:
    store = ScoreStore(tmp_path / "s", 10)
    a, b = create_metric("entropy", bins=256), create_metric("entropy", bins=64)
    table_a, table_b = store.table(a, create=True), store.table(b, create=True)
    assert table_a.path != table_b.path and table_a.config == {"bins": 256} and table_b.config == {"bins": 64}
    table_a.write([0], [1.0])
    assert table_b.get(0) is None
    assert [t.fingerprint for t in store.tables()] == sorted([a.fingerprint(), b.fingerprint()], key=lambda fp: f"entropy-{fp}")
    assert store.table(a).get(0) == 1.0


def test_missing_configuration_is_reported(tmp_path: Path) -> None:
    store = ScoreStore(tmp_path / "s", 10)
    store.table(create_metric("entropy", bins=256), create=True)
    with pytest.raises(LookupError, match=r"it holds other configurations of 'entropy': fingerprint \w+ with config \{'bins': 256\}"):
        store.table(create_metric("entropy", bins=64))
    with pytest.raises(StoreError, match="metric should have the fingerprint"):
        store.table(create_metric("entropy", bins=256)).check_metric(create_metric("entropy", bins=64))


def test_store_length_and_dataset_id_checked(tmp_path: Path) -> None:
    ScoreStore(tmp_path / "s", 10, dataset_id="fmnist-test")
    assert ScoreStore(tmp_path / "s").length == 10
    with pytest.raises(StoreError, match="length should be the store's dataset length 10, but got length=11"):
        ScoreStore(tmp_path / "s", 11)
    with pytest.raises(StoreError, match="dataset_id should be the store's 'fmnist-test'"):
        ScoreStore(tmp_path / "s", 10, dataset_id="cifar")
    with pytest.raises(ValueError, match="length should be given to create a new store"):
        ScoreStore(tmp_path / "new")
    with pytest.raises(ValueError, match="length should be a positive int"):
        ScoreStore(tmp_path / "new", 0)
    with pytest.raises(TypeError, match="root should be a folder path"):
        ScoreStore(3, 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metric should be a QualityMetric"):
        ScoreStore(tmp_path / "s").table("sharpness")  # type: ignore[arg-type]


def test_corrupt_store_header(tmp_path: Path) -> None:
    ScoreStore(tmp_path / "s", 10)
    (tmp_path / "s" / "store.json").write_text('{"format": "qualoader.score_st')
    with pytest.raises(StoreError, match="the store header '.*store.json' should be a valid JSON document, but it is not"):
        ScoreStore(tmp_path / "s", 10)
    # deeply nested JSON is one StoreError naming the file (the bounded reader), never a RecursionError
    (tmp_path / "s" / "store.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(StoreError, match="the store header '.*store.json' should be JSON nested at most 64 levels deep"):
        ScoreStore(tmp_path / "s", 10)


def test_corrupt_table_header(table: ScoreTable, sharpness: QualityMetric) -> None:
    (table.path / "header.json").write_bytes(b"\x00\xff garbage")
    with pytest.raises(StoreError, match="the table header .*header.json. should be a valid JSON document"):
        ScoreTable(table.path)
    with pytest.raises(StoreError, match="delete that folder to rebuild it"):
        ScoreStore(table.path.parent).table(sharpness)


def test_table_header_fields_checked(table: ScoreTable, sharpness: QualityMetric) -> None:
    header = json.loads((table.path / "header.json").read_text())
    (table.path / "header.json").write_text(json.dumps({**header, "length": 49}))
    with pytest.raises(StoreError, match=r"the table header's length should be the store's length=50, but got length=49"):
        ScoreTable(table.path)
    (table.path / "header.json").write_text(json.dumps({**header, "fingerprint": "0" * 16}))
    with pytest.raises(StoreError, match="the table folder name should match its header"):
        ScoreStore(table.path.parent).table(sharpness)
    del header["calibration"]
    (table.path / "header.json").write_text(json.dumps(header))
    with pytest.raises(StoreError, match="header with keys"):
        ScoreTable(table.path)


def test_truncated_scores_file(table: ScoreTable) -> None:
    path = table.path / "scores.npy"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(StoreError, match="scores.npy should be a readable .npy array, but got a corrupt file"):
        ScoreTable(table.path)


_WRITER = """
import sys, torch
from qualoader.data import ScoreStore
from qualoader.datasets import load_fashion_mnist
from qualoader.metrics import create_metric
images = load_fashion_mnist("test")[0][:40]
metric = create_metric("entropy", bins=int(sys.argv[2]))
table = ScoreStore(sys.argv[1], 40).table(metric, create=True)
table.write(torch.arange(40), metric(images))
"""

_READER = """
import sys
from qualoader.data import ScoreStore
from qualoader.metrics import create_metric
try:
    table = ScoreStore(sys.argv[1], 40).table(create_metric("entropy", bins=int(sys.argv[2])))
except LookupError as error:
    print("LOOKUP", error)
else:
    print(" ".join(repr(float(v)) for v in table.scores()))
"""


def _run(code: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.slow
def test_scores_survive_process_restart(tmp_path: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    root = str(tmp_path / "s")
    _run(_WRITER, root, "256")
    expected = create_metric("entropy", bins=256)(fashion_mnist_test[0][:40]).double()
    read_back = torch.tensor([float(v) for v in _run(_READER, root, "256").split()], dtype=torch.float64)
    assert torch.equal(read_back, expected)
    other = _run(_READER, root, "64")
    assert other.startswith("LOOKUP") and "config {'bins': 256}" in other and "config {'bins': 64}" in other


def test_deleted_store_json_is_never_readopted(tmp_path: Path, sharpness: QualityMetric) -> None:
    store = ScoreStore(tmp_path / "s", 10)
    store.table(sharpness, create=True).write([0], [0.5])
    (tmp_path / "s" / "store.json").unlink()
    with pytest.raises(StoreError, match=r"root should be an empty folder or a score store, but got .* holding \['sharpness-"):
        ScoreStore(tmp_path / "s", 10)
    with pytest.raises(StoreError, match="the store header should exist"):
        ScoreTable(tmp_path / "s" / f"sharpness-{sharpness.fingerprint()}")


def test_table_of_another_store_is_refused(tmp_path: Path, sharpness: QualityMetric) -> None:
    ScoreStore(tmp_path / "a", 10).table(sharpness, create=True)
    ScoreStore(tmp_path / "b", 10)
    name = f"sharpness-{sharpness.fingerprint()}"
    shutil.copytree(tmp_path / "a" / name, tmp_path / "b" / name)
    with pytest.raises(StoreError, match=r"the table header's store_uid should be the store's uid="):
        ScoreStore(tmp_path / "b").table(sharpness)
    with pytest.raises(StoreError, match="store_uid"):
        ScoreStore(tmp_path / "b").tables()


def test_store_header_checked(tmp_path: Path) -> None:
    ScoreStore(tmp_path / "s", 10)
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    (tmp_path / "s" / "store.json").write_text(json.dumps({**meta, "version": 1}))
    with pytest.raises(StoreError, match="the store header should be a qualoader.score_store version 2 header"):
        ScoreStore(tmp_path / "s")


def test_identity_recorded_matched_and_rescored(tmp_path: Path, image_folder: Path, sharpness: QualityMetric) -> None:
    identity = identify_dataset(ImageFolder(str(image_folder)))
    store = ScoreStore(tmp_path / "s", identity=identity)
    assert store.length == 12 and store.identity == identity and store.keys() == identity.keys
    table = store.table(sharpness, create=True)
    table.write(range(12), np.arange(12, dtype=np.float64))
    assert ScoreStore(tmp_path / "s", identity=identity).rescored.tolist() == []
    for k in (2, 7):  # rewrite two files in place (new mtime)
        path = image_folder / identity.keys[k]
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    changed = identify_dataset(ImageFolder(str(image_folder)))
    reopened = ScoreStore(tmp_path / "s", identity=changed)
    assert reopened.rescored.tolist() == [2, 7]
    assert table.missing().tolist() == [2, 7] and table.scores()[3] == 3.0  # exactly those were dropped
    assert reopened.identity == changed and len(list((tmp_path / "s").glob("samples-*.json"))) == 1
    (image_folder / "b" / "new.png").write_bytes((image_folder / identity.keys[0]).read_bytes())
    grown = identify_dataset(ImageFolder(str(image_folder)))
    with pytest.raises(StoreError, match="length should be the store's dataset length 12, but got length=13"):
        ScoreStore(tmp_path / "s", identity=grown)
    with pytest.raises(StoreError, match="the dataset should have the store's 12 samples, but got 13"):
        reopened.match_dataset(grown)
    (image_folder / identity.keys[0]).unlink()
    renamed = identify_dataset(ImageFolder(str(image_folder)))
    with pytest.raises(StoreError, match=r"1 file\(s\) added, e.g. 'b/new.png', 1 file\(s\) removed"):
        ScoreStore(tmp_path / "s", identity=renamed)
    assert table.missing().tolist() == [2, 7]  # a refused dataset changes nothing


def test_other_in_memory_dataset_refused(tmp_path: Path, fmnist_small: TensorDataset) -> None:
    ScoreStore(tmp_path / "s", identity=identify_dataset(fmnist_small))
    other = TensorDataset(fmnist_small.tensors[0].flip(0), fmnist_small.tensors[1])
    with pytest.raises(StoreError, match=r"the dataset should be the store's \(a sampled content hash of 96 samples"):
        ScoreStore(tmp_path / "s", identity=identify_dataset(other))
    with pytest.raises(StoreError, match="identified by id, the store by content"):
        ScoreStore(tmp_path / "s", identity=identify_dataset(fmnist_small, dataset_id="v1"))


def test_store_without_identity_adopts_the_first_dataset(tmp_path: Path, fmnist_small: TensorDataset) -> None:
    store = ScoreStore(tmp_path / "s", 96)
    assert store.identity is None and store.keys() is None
    identity = identify_dataset(fmnist_small, dataset_id="fm", keys=[f"k{i}" for i in range(96)])
    assert store.match_dataset(identity).size == 0
    assert ScoreStore(tmp_path / "s").keys()[:2] == ("k0", "k1")
    with pytest.raises(StoreError):
        store.match_dataset(identify_dataset(fmnist_small, dataset_id="other"))


def test_keys_are_recorded_and_checked(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    keys = [f"img-{i:03d}" for i in range(96)]
    store = ScoreStore(tmp_path / "s", identity=identify_dataset(fmnist_small, keys=keys))
    precompute(fmnist_small, sharpness, store, progress=False)  # precompute's own identity has no keys: same data, accepted
    assert store.keys() == tuple(keys) and store.table(sharpness).complete
    with pytest.raises(StoreError, match=r"keys should be the store's recorded sample keys, but got keys\[3\]='other'"):
        store.match_dataset(identify_dataset(fmnist_small, keys=[*keys[:3], "other", *keys[4:]]))
    plain = ScoreStore(tmp_path / "t", identity=identify_dataset(fmnist_small))
    assert plain.keys() is None
    plain.match_dataset(identify_dataset(fmnist_small, keys=keys))  # keys given later are recorded
    assert ScoreStore(tmp_path / "t").keys() == tuple(keys)


def test_corrupt_manifest(tmp_path: Path, image_folder: Path) -> None:
    ScoreStore(tmp_path / "s", identity=identify_dataset(ImageFolder(str(image_folder))))
    (manifest,) = (tmp_path / "s").glob("samples-*.json")
    payload = json.loads(manifest.read_text())
    payload["keys"][0] = "a/other.png"
    manifest.write_text(json.dumps(payload))
    with pytest.raises(StoreError, match="the sample manifest .* should match store.json"):
        _ = ScoreStore(tmp_path / "s").identity  # reading it checks the manifest


def test_skip_and_invalidate(table: ScoreTable) -> None:
    table.write([0, 1, 2], [0.5, 0.25, 0.75])
    table.skip([3, 4], ["dataset[3] (file 'x.png') is truncated", "dataset[4] is unreadable"])
    assert table.num_scored == 3 and table.num_skipped == 2
    assert table.skipped() == {3: "dataset[3] (file 'x.png') is truncated", 4: "dataset[4] is unreadable"}
    assert 3 not in table.missing() and np.isnan(table.scores()[3]) and table.get(3) is None
    assert table.read([2, 3])[1].tolist() == [True, False]
    table.invalidate([1, 4])
    assert table.missing().tolist()[:2] == [1, 4] and table.skipped() == {3: "dataset[3] (file 'x.png') is truncated"}
    table.write(range(50), np.ones(50))
    assert table.complete and table.skipped() == {}
    with pytest.raises(ValueError, match="reasons should have one message per index"):
        table.skip([1], [])


def test_tables_are_preallocated_not_sparse(table: ScoreTable) -> None:
    """Real writes, not a truncate: a full disk fails at creation, not as a SIGBUS later."""
    for name in ("scores.npy", "scored.npy"):
        status = (table.path / name).stat()
        assert status.st_blocks * 512 >= status.st_size


def test_lock_is_reentrant(tmp_path: Path, sharpness: QualityMetric) -> None:
    store = ScoreStore(tmp_path / "s", 10)
    with store_lock(store.root), store_lock(store.root):
        store.table(sharpness, create=True).write([1], [2.0])  # takes the lock again inside
    assert store.table(sharpness).get(1) == 2.0 and (tmp_path / "s" / ".lock").exists()


def test_store_label_identifies_in_memory_data_on_every_path(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    """precompute without dataset_id and QualityLoader with the store's label agree on one identity."""
    from torch.utils.data import DataLoader

    from qualoader.data import QualityDataset, QualityLoader

    store = ScoreStore(tmp_path / "s", 96, dataset_id="fm-96")
    precompute(fmnist_small, sharpness, store, progress=False)
    assert store.identity == identify_dataset(fmnist_small, dataset_id="fm-96")
    loader = QualityLoader(DataLoader(QualityDataset(fmnist_small), batch_size=48), sharpness, store=store, dataset_id="fm-96")
    assert len(list(loader)) == 2 and loader.scored_batches == 0  # everything read from the store
    with pytest.raises(StoreError, match="the dataset should be the store's"):
        QualityLoader(DataLoader(QualityDataset(fmnist_small), batch_size=48), sharpness, store=store, dataset_id="fm-v2")
