"""Stream position: report mid-epoch, restore, and get exactly the remaining samples."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from qualoader.webdataset import (
    StreamPosition,
    annotate_quality,
    filter_quality,
    resumable_pipeline,
    track_position,
)


def _ids(samples: object) -> list[str]:
    return [f"{Path(s['__url__']).name}/{s['__key__']}" for s in samples]  # type: ignore[union-attr]


def check_restore_reproduces_rest(build: Callable[[dict | None], object], stop: int) -> None:
    """Shared helper: consume ``stop`` items, save, rebuild from the state, compare the rest."""
    full = list(build(None))  # type: ignore[call-overload]
    position = StreamPosition()
    for sample in islice(iter(build(None)), stop):  # type: ignore[call-overload]
        position.update(sample)
    state = json.loads(json.dumps(position.state_dict()))  # survives a JSON checkpoint
    assert _ids(build(state)) == _ids(full[stop:])  # type: ignore[arg-type]


@pytest.mark.parametrize("stop", [0, 1, 79, 80, 170, 239, 240])
def test_restore_mid_epoch(fm_shards: list[str], stop: int) -> None:
    check_restore_reproduces_rest(lambda state: resumable_pipeline(fm_shards, position=state), stop)


def test_restore_with_scoring_and_filter(fm_shards: list[str]) -> None:
    def build(state: dict | None) -> object:
        return resumable_pipeline(
            fm_shards, annotate_quality("sharpness", batch_size=32), filter_quality("sharpness", low=0.1), position=state
        )

    kept = len(list(build(None)))
    assert 0 < kept < 240
    check_restore_reproduces_rest(build, kept // 2)


def test_restore_with_seeded_shard_shuffle(fm_shards: list[str]) -> None:
    first = _ids(resumable_pipeline(fm_shards, shardshuffle=10, seed=3))
    assert sorted(first) == sorted(_ids(resumable_pipeline(fm_shards))) and first == _ids(
        resumable_pipeline(fm_shards, shardshuffle=10, seed=3)
    )
    check_restore_reproduces_rest(lambda state: resumable_pipeline(fm_shards, shardshuffle=10, seed=3, position=state), 100)


def test_complete_shards_are_not_reopened(fm_shards: list[str], tmp_path: Path) -> None:
    shards = [str(shutil.copy(s, tmp_path)) for s in fm_shards]
    position = StreamPosition()
    for sample in islice(iter(resumable_pipeline(shards)), 81):
        position.update(sample)
    assert position.complete == {shards[0]} and position.consumed(shards[1]) == 1
    Path(shards[0]).unlink()  # a complete shard is skipped by url, never opened
    rest = list(resumable_pipeline(shards, position=position))
    assert len(rest) == 159 and rest[0]["__key__"] == "00000081"


def test_restore_only_applies_to_first_pass(fm_shards: list[str]) -> None:
    position = StreamPosition()
    for sample in islice(iter(resumable_pipeline(fm_shards)), 200):
        position.update(sample)
    samples = list(resumable_pipeline(fm_shards, position=position).with_epoch(100))
    keys = [s["__key__"] for s in samples]
    assert keys[:40] == [f"{i:08d}" for i in range(200, 240)] and keys[40:] == [f"{i:08d}" for i in range(60)]


def test_position_from_dataloader_batches_with_workers(fm_shards: list[str]) -> None:
    loader = DataLoader(resumable_pipeline(fm_shards), batch_size=16, num_workers=2)
    position = StreamPosition()
    consumed: list[str] = []
    for batch in islice(iter(loader), 6):
        position.update(batch)
        consumed += [f"{Path(u).name}/{k}" for u, k in zip(batch["__url__"], batch["__key__"], strict=True)]
    assert isinstance(batch["__index__"], torch.Tensor)
    rest = list(DataLoader(resumable_pipeline(fm_shards, position=position.state_dict()), batch_size=None, num_workers=2))
    everything = _ids(resumable_pipeline(fm_shards))
    assert len(consumed) == 96 and sorted(consumed + _ids(rest)) == sorted(everything)


def test_track_position_in_plain_webdataset(fm_shards: list[str]) -> None:
    import webdataset as wds

    def build(state: dict | None) -> object:
        return wds.WebDataset(fm_shards, shardshuffle=False).compose(track_position(state))

    samples = list(build(None))
    assert [s["__index__"] for s in samples] == list(range(80)) * 3
    assert [s["__last__"] for s in samples].count(True) == 3 and samples[79]["__last__"]
    check_restore_reproduces_rest(build, 123)


def test_bad_inputs(fm_shards: list[str]) -> None:
    position = StreamPosition()
    with pytest.raises(KeyError, match="should carry '__url__' and '__index__'"):
        position.update({"__key__": "x"})
    with pytest.raises(ValueError, match="should be a StreamPosition state"):
        position.load_state_dict({"version": 9, "offsets": {}})
    with pytest.raises(TypeError, match="state should be"):
        position.load_state_dict([1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative"):
        position.load_state_dict({"version": 1, "offsets": {"a": -1}})
    with pytest.raises(TypeError, match="position should be"):
        resumable_pipeline(fm_shards, position=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shardshuffle should be"):
        resumable_pipeline(fm_shards, shardshuffle=True)
    with pytest.raises(ValueError, match="seed"):
        resumable_pipeline(fm_shards, seed=-1)
    with pytest.raises(TypeError, match="position should be"):
        track_position("state")  # type: ignore[arg-type]
