"""reweight: each sample emitted a random number of times whose mean is its weight."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
import webdataset as wds
from tag_streams import _keys, _Samples, _stream

from qualoader.policies import OnlineDifficulty
from qualoader.samplers import QualityWeightedSampler
from qualoader.webdataset import Reweight, SkipAndCount, StreamLosses, reweight


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


@pytest.mark.parametrize(("favour", "higher_is_better"), [("easy", True), ("hard", True), ("easy", False)])
def test_temperature_weights_match_the_weighted_sampler(favour: str, higher_is_better: bool) -> None:
    """Per score decile, the stream's copies match the sampler's expected draws per epoch of N."""
    values = np.random.default_rng(4).random(20_000)
    stage = reweight("m", field="quality", temperature=1.0, favour=favour, higher_is_better=higher_is_better, max_repeats=64, seed=0)
    out = np.array([s["__quality__"]["m"] for s in stage(_stream(values))])
    sampler = QualityWeightedSampler(torch.from_numpy(values), temperature=1.0, favour=favour, higher_is_better=higher_is_better)
    expected = sampler.weights.numpy() * len(values)
    deciles = np.quantile(values, np.linspace(0, 1, 11)[1:-1])
    got = np.bincount(np.searchsorted(deciles, out), minlength=10)
    want = np.bincount(np.searchsorted(deciles, values), weights=expected, minlength=10)
    np.testing.assert_allclose(got / want, 1.0, atol=0.12)
    assert abs(len(out) / len(values) - 1.0) < 0.03  # weights average 1


def test_temperature_weights_of_a_difficulty_favour_low_difficulty() -> None:
    difficulty = np.random.default_rng(5).random(5000)
    stage = reweight("m", temperature=0.5, seed=0)  # field="difficulty": lower is easier, no direction needed
    kept = np.array([s["__difficulty__"]["m"] for s in stage(_stream(np.zeros(5000), difficulty=difficulty))])
    assert np.mean(kept < 0.5) > 0.8


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"field": "quality"},
            TypeError,
            "higher_is_better should be given \\(True or False\\) when field='quality' is a raw metric score",
        ),
        ({"higher_is_better": True}, ValueError, "higher_is_better should match the direction a difficulty carries \\(False\\)"),
        ({"temperature": 0}, ValueError, "temperature should be > 0 for a stream"),
        ({"temperature": -1.0}, ValueError, "temperature should be a finite float >= 0"),
        ({"exponent": 2.0}, ValueError, "exponent should be left at 1.0 with temperature weights"),
        ({"favour": "medium"}, ValueError, "favour should be one of \\{'easy', 'hard'\\}"),
        ({"warmup": 10, "sketch_size": 5}, ValueError, "warmup should be <= sketch_size"),
    ],
)
def test_temperature_weights_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        reweight("m", **{"temperature": 0.5, **kwargs})
    with pytest.raises(TypeError, match="weight should be a metric name with temperature=0.5"):
        reweight(_nan_weight, temperature=0.5)


def test_rank_weights_blend_observed_losses_through_stream_losses() -> None:
    n = 2000
    difficulty = np.random.default_rng(6).random(n)
    samples = _stream(np.zeros(n), difficulty=difficulty)
    losses = StreamLosses(1 << 16, policy=OnlineDifficulty(prior_strength=0.1))  # one observation weighs 10/11

    def copies(stage: Reweight) -> Counter:
        return Counter(s["__key__"] for s in stage(samples))

    plain = copies(reweight("m", temperature=0.5, favour="hard", seed=3))
    assert copies(reweight("m", temperature=0.5, favour="hard", seed=3, online=losses)) == plain, "no observations: no change"
    easiest = [f"{i:06d}" for i in np.argsort(difficulty)[: n // 10]]
    losses.update([f"{i:06d}" for i in range(n)], [9.0 if f"{i:06d}" in set(easiest) else float(difficulty[i]) for i in range(n)])
    after = copies(reweight("m", temperature=0.5, favour="hard", seed=3, online=losses))
    before_easy, after_easy = sum(plain[k] for k in easiest), sum(after[k] for k in easiest)
    # Hard by loss now: among the hardest fifth, ~2-3.6 copies each at T = 0.5, instead of ~0.1 each.
    assert before_easy < 0.2 * len(easiest) and after_easy > 1.5 * len(easiest)
    assert abs(sum(after.values()) - sum(plain.values())) < 0.1 * n, "the stream's mean rate stays about 1"
    with pytest.raises(ValueError, match="online should be None without temperature"):
        reweight("m", online=losses)
    with pytest.raises(TypeError, match="online should be a StreamLosses or None"):
        reweight("m", temperature=1.0, online=OnlineDifficulty())
