"""Safe loading of pyiqa weight files: :func:`verify_checkpoint` and :func:`weights_only_loads`."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from qualoader.metrics._pyiqa_weights import UnsafeCheckpointError, verify_checkpoint, weights_only_loads


class _Payload:
    """Unpickling this creates ``marker``: the shape of a planted checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('executed')",))


@pytest.mark.parametrize(
    "payload",
    [{"weight": torch.arange(6.0).view(2, 3)}, (torch.zeros(3), torch.ones(2, 3)), {"nested": [1, 2.5, "text", None]}],
    ids=["state-dict", "tuple", "plain-values"],
)
def test_tensors_and_plain_values_pass(payload, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(payload, path)
    verify_checkpoint(path)
    verify_checkpoint(str(path))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickled_code_is_refused_without_running(protocol, tmp_path, recwarn):
    marker = tmp_path / "marker"
    zipped, bare = tmp_path / "zipped.pth", tmp_path / "bare.pkl"
    torch.save({"w": _Payload(marker)}, zipped, pickle_protocol=protocol)
    bare.write_bytes(pickle.dumps({"w": _Payload(marker)}, protocol=protocol))
    for path in (zipped, bare):
        with pytest.raises(UnsafeCheckpointError, match="weights_only=True") as error:
            verify_checkpoint(path)
        assert str(path) in str(error.value) and "Unsupported" in str(error.value)
    assert not marker.exists()
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)], "torch's protocol warning is not repeated to the user"


def test_corrupt_file_is_refused_with_its_reason(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"weight": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UnsafeCheckpointError, match=r"RuntimeError: PytorchStreamReader failed"):
        verify_checkpoint(path)


@pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:FutureWarning", "ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_archive_passes_and_non_pickle_formats_are_skipped(tmp_path, recwarn):
    scripted = tmp_path / "RN50.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), scripted)
    recwarn.clear()
    verify_checkpoint(scripted)  # CLIP ships TorchScript archives, which torch.load refuses with weights_only=True
    assert not recwarn.list, "verifying needs no deprecated TorchScript loader"
    arrays = tmp_path / "stats.npz"
    np.savez(arrays, mu=np.zeros(3))
    verify_checkpoint(arrays)


def test_weights_only_loads_forces_safe_loading_and_restores(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "weights.pth"
    torch.save({"w": _Payload(marker)}, path)
    original = torch.load
    with weights_only_loads():
        assert torch.load is not original
        with pytest.raises(UnsafeCheckpointError, match=str(path)):
            torch.load(path, weights_only=False)  # what pyiqa writes
        with open(path, "rb") as handle, pytest.raises(UnsafeCheckpointError, match="weights.pth"):
            torch.load(handle, map_location="cpu", weights_only=False)  # a file object is named too
        safe = tmp_path / "safe.pth"
        torch.save({"weight": torch.ones(2)}, safe)
        torch.testing.assert_close(torch.load(safe, weights_only=False)["weight"], torch.ones(2))
    assert torch.load is original
    assert not marker.exists()


def test_weights_only_loads_restores_after_an_error():
    original = torch.load
    with pytest.raises(KeyError), weights_only_loads():
        raise KeyError("boom")
    assert torch.load is original


def test_overlapping_blocks_keep_the_guard_until_the_last_closes(tmp_path):
    """Two builds in two threads may close in any order: the guard stays until both are done."""
    original = torch.load
    first, second = weights_only_loads(), weights_only_loads()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first build finishes while the second still loads
    path = tmp_path / "weights.pth"
    torch.save({"w": _Payload(tmp_path / "marker")}, path)
    with pytest.raises(UnsafeCheckpointError):
        torch.load(path, weights_only=False)
    second.__exit__(None, None, None)
    assert torch.load is original
    assert not (tmp_path / "marker").exists()
