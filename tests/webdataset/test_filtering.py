"""filter_quality: a range filter on a tag, read from entries or quality.json members."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from tag_streams import _keys, _stream

from qualoader.webdataset import MissingTagError, SkipAndCount, filter_quality


@pytest.mark.parametrize("tagged", [False, True])
def test_filter_range(tagged: bool) -> None:
    values = np.linspace(0.0, 1.0, 101)
    out = list(filter_quality("m", low=0.25, high=0.5)(_stream(values, tagged=tagged)))
    assert _keys(out) == [f"{i:06d}" for i in range(25, 51)]
    assert len(list(filter_quality("m", low=0.9)(_stream(values)))) == 11
    assert len(list(filter_quality("m", high=0.0)(_stream(values)))) == 1


def test_filter_untagged_and_nan() -> None:
    samples = [{"__key__": "a", "png": b""}, *_stream(np.array([0.5, float("nan")]))]
    with pytest.raises(MissingTagError, match="should carry a quality.json member"):
        list(filter_quality("m")(samples))
    handler = SkipAndCount(warn=False)
    assert _keys(filter_quality("m", handler=handler)(samples)) == ["000000"]  # NaN never passes
    assert handler.counts == {"MissingTagError": 1}
    with pytest.raises(MissingTagError, match="for metric 'other'"):
        list(filter_quality("other")(_stream(np.array([0.5]))))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"metric": ""}, TypeError),
        ({"metric": "m", "low": 1.0, "high": 0.0}, ValueError),
        ({"metric": "m", "low": "0"}, TypeError),
        ({"metric": "m", "field": "score"}, ValueError),
        ({"metric": "m", "high": float("nan")}, ValueError),
    ],
)
def test_filter_bad_arguments(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error, match="should"):
        filter_quality(**kwargs)


def test_filter_is_a_picklable_pipelinefilter() -> None:
    stage = pickle.loads(pickle.dumps(filter_quality("m", low=0.5)))
    assert _keys(stage(_stream(np.array([0.2, 0.7])))) == ["000001"]
