"""reweight: each sample emitted a random number of times whose mean is its weight."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import webdataset as wds
from tag_streams import _keys, _Samples, _stream

from qualoader.webdataset import SkipAndCount, reweight


def test_reweight_integer_weights_are_exact() -> None:
    values = np.array([0.0, 1.0, 2.0, 3.0, 40.0])
    out = list(reweight("m", field="quality", max_repeats=5)(_stream(values)))
    assert _keys(out) == ["000001"] + ["000002"] * 2 + ["000003"] * 3 + ["000004"] * 5
    assert out[1] is not out[2] and out[1] == out[2]  # repeats are copies


def test_reweight_fractional_expectation() -> None:
    values = np.full(20_000, 0.3)
    out = list(reweight("m", field="quality", seed=1)(_stream(values)))
    assert abs(len(out) / 20_000 - 0.3) < 0.015


def test_reweight_seeding_epochs_and_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = _stream(np.full(400, 0.5))
    stage = reweight("m", field="quality", seed=3)
    first, second = _keys(stage(samples)), _keys(stage(samples))
    assert first != second  # each pass uses the next epoch
    stage.set_epoch(0)
    assert _keys(stage(samples)) == first
    assert _keys(reweight("m", field="quality", seed=3)(samples)) == first
    assert _keys(reweight("m", field="quality", seed=4)(samples)) != first
    clone = pickle.loads(pickle.dumps(reweight("m", field="quality", seed=3)))
    assert _keys(clone(samples)) == first
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _keys(reweight("m", field="quality", seed=3)(samples)) != first


def test_reweight_with_epoch_in_pipeline() -> None:
    samples = _stream(np.full(50, 0.5))
    pipeline = wds.DataPipeline(_Samples(samples), reweight("m", field="quality", seed=0)).with_epoch(60)
    assert len(list(pipeline)) == 60  # with_epoch repeats the (thinned) pass until 60 samples


def test_reweight_bad_weights() -> None:
    with pytest.raises(ValueError, match="should be >= 0"):
        list(reweight("m", field="quality")(_stream(np.array([-1.0]))))
    assert _keys(reweight(_nan_weight, handler=SkipAndCount(warn=False))(_stream(np.array([1.0])))) == []
    with pytest.raises(TypeError, match="weight should be"):
        reweight(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_repeats"):
        reweight("m", max_repeats=0)
    with pytest.raises(ValueError, match="seed"):
        reweight("m", seed=-1)


def _nan_weight(sample: dict) -> float:
    return float("nan")
