"""filter_quality / reweight / stratify / curriculum on tagged samples."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

from qualoader.webdataset import (
    MissingTagError,
    QuantileSketch,
    SkipAndCount,
    TrainingProgress,
    curriculum,
    filter_quality,
    reweight,
    stratify,
)


def _stream(values: np.ndarray, *, tagged: bool = False, difficulty: np.ndarray | None = None) -> list[dict]:
    """Synthetic samples carrying scores, either as dict entries or as a quality.json member."""
    samples = []
    for i, value in enumerate(values.tolist()):
        quality = {"m": value}
        diff = {} if difficulty is None else {"m": float(difficulty[i])}
        if tagged:
            samples.append({"__key__": f"{i:06d}", "quality.json": json.dumps({"quality": quality, "difficulty": diff}).encode()})
        else:
            samples.append({"__key__": f"{i:06d}", "quality": quality, "difficulty": diff})
    return samples


class _Samples(IterableDataset):
    """A pipeline source yielding fresh shallow copies of fixed samples (picklable)."""

    def __init__(self, samples: list[dict]) -> None:
        self.samples = samples

    def __iter__(self):
        return (dict(sample) for sample in self.samples)


def _keys(samples: object) -> list[str]:
    return [s["__key__"] for s in samples]  # type: ignore[union-attr]


# -- filter -----------------------------------------------------------------------------------------
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
    [({"metric": ""}, TypeError), ({"metric": "m", "low": 1.0, "high": 0.0}, ValueError), ({"metric": "m", "low": "0"}, TypeError), ({"metric": "m", "field": "score"}, ValueError), ({"metric": "m", "high": float("nan")}, ValueError)],
)
def test_filter_bad_arguments(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error, match="should"):
        filter_quality(**kwargs)


# -- reweight ---------------------------------------------------------------------------------------
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


# -- stratify ---------------------------------------------------------------------------------------
def test_stratify_reaches_targets_with_bounded_buffers() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(0.0, 1.0, 20_000)
    target = [0.4, 0.3, 0.2, 0.1]
    stage = stratify("m", target, buffer_size=64, seed=0)
    seen_max = 0
    out = []
    for sample in stage(_stream(values)):
        out.append(sample)
        seen_max = max(seen_max, stage.max_buffered)
    assert seen_max <= 64 and stage.max_buffered <= 64
    keys = _keys(out)
    assert len(set(keys)) == len(keys) and len(out) > 0.55 * 20_000  # limit: 0.25 / 0.4 = 62.5 %
    edges = np.quantile(values, [0.25, 0.5, 0.75])  # true equal-frequency strata of the stream
    strata = np.searchsorted(edges, np.array([s["quality"]["m"] for s in out]), side="right")
    shares = np.bincount(strata, minlength=4) / len(out)
    np.testing.assert_allclose(shares, target, atol=0.02)
    emitted = np.array(stage.emitted) / sum(stage.emitted)
    np.testing.assert_allclose(emitted, target, atol=0.002)
    assert sum(stage.emitted) + stage.dropped == 20_000


def test_stratify_fixed_boundaries_and_drain() -> None:
    values = np.tile(np.array([0.1, 0.6]), 500)  # two strata, equal input frequency
    strict = stratify("m", [0.75, 0.25], boundaries=[0.5], buffer_size=8, seed=0)
    out = list(strict(_stream(values)))
    low = sum(s["quality"]["m"] < 0.5 for s in out)
    assert low == 500 and abs(len(out) - 500 / 0.75) <= 2  # the rare stratum limits the output
    drained = list(stratify("m", [0.75, 0.25], boundaries=[0.5], buffer_size=8, drain=True, seed=0)(_stream(values)))
    assert len(drained) == len(out) + 8  # what the bounded buffer still held comes out at the end


def test_stratify_deterministic() -> None:
    values = np.random.default_rng(1).random(3000)
    a = _keys(stratify("m", [0.5, 0.5], buffer_size=16, seed=5)(_stream(values)))
    b = _keys(stratify("m", [0.5, 0.5], buffer_size=16, seed=5)(_stream(values)))
    c = _keys(stratify("m", [0.5, 0.5], buffer_size=16, seed=6)(_stream(values)))
    assert a == b and a != c


def test_quantile_sketch_is_bounded_and_accurate() -> None:
    rng = np.random.default_rng(0)
    sketch = QuantileSketch(512, np.random.default_rng(1))
    values = rng.normal(size=50_000)
    for value in values.tolist():
        sketch.update(value)
    assert len(sketch) == 512 and sketch.count == 50_000
    for q in (0.1, 0.5, 0.9):
        assert abs(sketch.cdf(float(np.quantile(values, q))) - q) < 0.06
    with pytest.raises(ValueError, match="finite"):
        sketch.update(float("inf"))
    with pytest.raises(ValueError, match="empty sketch"):
        QuantileSketch(4, rng).quantile(0.5)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"proportions": [1.0]}, ValueError),
        ({"proportions": [0.5, -0.5, 1.0]}, ValueError),
        ({"proportions": "ab"}, TypeError),
        ({"proportions": [0.5, 0.5], "boundaries": [0.2, 0.3]}, ValueError),
        ({"proportions": [0.3, 0.3, 0.4], "boundaries": [0.5, 0.2]}, ValueError),
        ({"proportions": [0.5, 0.5], "buffer_size": 0}, ValueError),
        ({"proportions": [0.5, 0.5], "warmup": 10, "sketch_size": 5}, ValueError),
        ({"proportions": [0.5, 0.5], "drain": 1}, TypeError),
    ],
)
def test_stratify_bad_arguments(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error, match="should"):
        stratify("m", **kwargs)


# -- curriculum -------------------------------------------------------------------------------------
def test_curriculum_follows_progress() -> None:
    rng = np.random.default_rng(0)
    difficulty = rng.random(5000)
    samples = _stream(np.zeros(5000), difficulty=difficulty)
    stage = curriculum("m", start=0.2, pacing="linear", temperature=0.0)
    early = list(stage(samples))
    assert max(s["difficulty"]["m"] for s in early) <= 0.2 and abs(len(early) / 5000 - 0.2) < 0.03
    stage.set_progress(0.5)
    middle = list(stage(samples))
    assert abs(len(middle) / 5000 - 0.6) < 0.03
    stage.set_progress(1.0)
    assert len(list(stage(samples))) == 5000
    soft = curriculum("m", start=0.2, pacing="root", temperature=0.1)
    assert soft.acceptance(0.2, 0.0) == 1.0 and soft.acceptance(0.3, 0.0) == pytest.approx(np.exp(-1.0))
    assert soft.competence(1.0) == 1.0 and soft.competence(0.5) > curriculum("m", start=0.2, pacing="linear").competence(0.5)


def test_curriculum_progress_reaches_persistent_worker() -> None:
    difficulty = np.linspace(0.0, 1.0, 200)
    progress = TrainingProgress(0.0)
    dataset = wds.DataPipeline(_Samples(_stream(np.zeros(200), difficulty=difficulty)), curriculum("m", progress=progress, start=0.5, temperature=0.0))
    loader = DataLoader(dataset, batch_size=None, num_workers=1, persistent_workers=True)
    first = len(list(loader))
    progress.set(1.0)  # after the worker started: only shared memory can carry it
    second = len(list(loader))
    assert first == 100 and second == 200


def test_curriculum_needs_difficulty() -> None:
    with pytest.raises(MissingTagError, match="difficulty for metric 'm'"):
        list(curriculum("m")(_stream(np.zeros(3))))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"start": 1.5}, ValueError), ({"pacing": "cosine"}, ValueError), ({"temperature": -1.0}, ValueError), ({"progress": 2.0}, ValueError), ({"progress": "0"}, TypeError)],
)
def test_curriculum_bad_arguments(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error, match="should"):
        curriculum("m", **kwargs)
