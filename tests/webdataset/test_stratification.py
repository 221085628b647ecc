"""stratify: online stratified re-emission with bounded buffers, in the samplers' vocabulary."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from tag_streams import _keys, _stream

from qualoader.policies import OnlineDifficulty
from qualoader.samplers import QualityStratifiedSampler
from qualoader.webdataset import Stratify, StreamLosses, stratify


def test_stratify_reaches_targets_with_bounded_buffers() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(0.0, 1.0, 20_000)
    target = [0.4, 0.3, 0.2, 0.1]
    stage = stratify("m", proportions=target, buffer_size=64, seed=0)
    seen_max = 0
    out = []
    for sample in stage(_stream(values)):
        out.append(sample)
        seen_max = max(seen_max, stage.max_buffered)
    assert seen_max <= 64 and stage.max_buffered <= 64
    keys = _keys(out)
    assert len(set(keys)) == len(keys) and len(out) > 0.55 * 20_000  # limit: 0.25 / 0.4 = 62.5 %
    edges = np.quantile(values, [0.25, 0.5, 0.75])  # true equal-frequency strata of the stream
    strata = np.searchsorted(edges, np.array([s["__quality__"]["m"] for s in out]), side="right")
    shares = np.bincount(strata, minlength=4) / len(out)
    np.testing.assert_allclose(shares, target, atol=0.02)
    emitted = np.array(stage.emitted) / sum(stage.emitted)
    np.testing.assert_allclose(emitted, target, atol=0.002)
    assert sum(stage.emitted) + stage.dropped == 20_000


def test_stratify_fixed_boundaries_and_drain() -> None:
    values = np.tile(np.array([0.1, 0.6]), 500)  # two strata, equal input frequency
    strict = stratify("m", edges=[0.5], proportions=[0.75, 0.25], buffer_size=8, seed=0)
    out = list(strict(_stream(values)))
    low = sum(s["__quality__"]["m"] < 0.5 for s in out)
    assert low == 500 and abs(len(out) - 500 / 0.75) <= 2  # the rare stratum limits the output
    drained = list(stratify("m", edges=[0.5], proportions=[0.75, 0.25], buffer_size=8, drain=True, seed=0)(_stream(values)))
    assert len(drained) == len(out) + 8  # what the bounded buffer still held comes out at the end


def test_stratify_deterministic() -> None:
    values = np.random.default_rng(1).random(3000)
    a = _keys(stratify("m", 2, buffer_size=16, seed=5)(_stream(values)))
    b = _keys(pickle.loads(pickle.dumps(stratify("m", 2, buffer_size=16, seed=5)))(_stream(values)))
    c = _keys(stratify("m", 2, buffer_size=16, seed=6)(_stream(values)))
    assert a == b and a != c


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"proportions": [0.5]}, ValueError),
        ({"proportions": [1.0, 1.0]}, ValueError),
        ({"proportions": [0.5, -0.5, 1.0]}, ValueError),
        ({"proportions": "ab"}, ValueError),
        ({"proportions": 0.5}, TypeError),
        ({"proportions": [0.5, 0.5], "edges": [0.2, 0.3]}, ValueError),
        ({"edges": [0.5, 0.2]}, ValueError),
        ({"num_strata": 2, "edges": [0.5]}, ValueError),
        ({"num_strata": "2"}, TypeError),
        ({"field": "score"}, ValueError),
        ({"buffer_size": 0}, ValueError),
        ({"warmup": 10, "sketch_size": 5}, ValueError),
        ({"drain": 1}, TypeError),
    ],
)
def test_stratify_bad_arguments(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error, match="should"):
        stratify("m", **kwargs)


def test_the_number_of_strata_follows_the_samplers_rules() -> None:
    assert stratify("m").num_strata == 4 and stratify("m").shares == (0.25,) * 4
    assert stratify("m", edges=np.array([0.2, 0.4])).num_strata == 3
    assert stratify("m", proportions=[0.2, 0.8]).num_strata == 2


def test_natural_proportions_pass_the_stream_through() -> None:
    values = np.random.default_rng(2).random(2000)
    stage = stratify("m", edges=[0.1, 0.5], proportions="natural", buffer_size=4, seed=0)
    assert _keys(stage(_stream(values))) == _keys(_stream(values))
    assert stage.dropped == 0


def test_stage_and_sampler_agree_on_strata_and_shares() -> None:
    """Same edges and proportions: the stream's output mix is the sampler's epoch mix."""
    scores = np.random.default_rng(3).random(8000)
    edges, proportions = [0.3, 0.6], [0.2, 0.3, 0.5]
    sampler = QualityStratifiedSampler(torch.from_numpy(scores), edges=edges, proportions=proportions, seed=0)
    sampler_shares = np.bincount(sampler.strata[list(sampler)].numpy(), minlength=3) / len(sampler)
    out = list(stratify("m", edges=edges, proportions=proportions, buffer_size=64, seed=0)(_stream(scores)))
    stream_shares = np.bincount(np.searchsorted(edges, [s["__quality__"]["m"] for s in out], side="right"), minlength=3) / len(out)
    np.testing.assert_allclose(sampler_shares, proportions, atol=1e-3)
    np.testing.assert_allclose(stream_shares, proportions, atol=5e-3)


@pytest.mark.parametrize("edges", [None, [0.25, 0.5, 0.75]])
def test_strata_follow_observed_losses_through_stream_losses(edges) -> None:
    n = 4000
    quality = np.random.default_rng(7).random(n)  # higher is better: low quality is hard
    samples = _stream(quality)
    losses = StreamLosses(1 << 16, policy=OnlineDifficulty(prior_strength=0.1))

    def stage() -> Stratify:
        strata = {"edges": edges} if edges else {"num_strata": 4}
        return stratify("m", **strata, proportions=[0.7, 0.1, 0.1, 0.1], higher_is_better=True, online=losses, seed=1)

    def keys() -> list[str]:
        return [s["__key__"] for s in stage()(samples)]

    plain = stratify("m", **({"edges": edges} if edges else {"num_strata": 4}), proportions=[0.7, 0.1, 0.1, 0.1], seed=1)
    before = keys()
    assert before == [s["__key__"] for s in plain(samples)], "no observations: no change"
    best = {f"{i:06d}" for i in np.argsort(quality)[-n // 10 :]}  # the best quality tenth: easy by the tag
    losses.update([f"{i:06d}" for i in range(n)], [9.0 if f"{i:06d}" in best else 1.0 - float(quality[i]) for i in range(n)])
    after = keys()
    share_before = sum(key in best for key in before) / len(before)
    share_after = sum(key in best for key in after) / len(after)
    # Hard by loss: they move into the lowest stratum, which gets 70% of the output.
    assert share_before < 0.05 and share_after > 0.15


def test_online_stratify_needs_a_direction_for_quality_tags() -> None:
    with pytest.raises(TypeError, match="higher_is_better should be given"):
        stratify("m", 4, online=StreamLosses(64))
    assert stratify("m", 4, field="difficulty", online=StreamLosses(64)).higher_is_better is False
    with pytest.raises(TypeError, match="online should be a StreamLosses or None"):
        stratify("m", 4, higher_is_better=True, online=OnlineDifficulty())
