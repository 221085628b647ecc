"""The shared sampler machinery: score input, replicas, sharding and state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qualoader.data import ScoreStore
from qualoader.metrics import create_metric
from qualoader.samplers import QualityStratifiedSampler, QualityWeightedSampler
from qualoader.samplers._base import as_scores, resolve_replicas, shard


@pytest.mark.parametrize("kind", ["numpy", "tensor", "list", "int-numpy"])
def test_as_scores_accepts_arrays_tensors_and_sequences(kind):
    values = [0.5, 0.25, 1.0, 0.0]
    given = {
        "numpy": np.array(values, dtype=np.float32),
        "tensor": torch.tensor(values),
        "list": values,
        "int-numpy": np.array([1, 0, 2, 0]),
    }[kind]
    result = as_scores(given)
    assert result.dtype == torch.float64 and result.shape == (4,)
    torch.testing.assert_close(result, torch.as_tensor(np.asarray(given), dtype=torch.float64))


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (
            [0.1, float("nan"), 0.3],
            ValueError,
            "scores should be finite, but got scores with 1 NaN/Inf values \\(first at index 1\\)",
        ),
        ([], ValueError, "scores should be a non-empty 1-D array"),
        (np.zeros((2, 3)), ValueError, "scores.shape=\\(2, 3\\)"),
        ("0.1 0.2", TypeError, "scores should be a 1-D array"),
        (np.array(["a", "b"]), TypeError, "scores should hold real numbers"),
        (np.array([True, False]), TypeError, "scores should hold real numbers"),
    ],
)
def test_as_scores_rejects_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        as_scores(bad)


def test_samplers_read_a_complete_score_table_and_its_orientation(tmp_path):
    metric = create_metric("bn-shift")  # lower is better
    table = ScoreStore(tmp_path, length=6).table(metric, create=True)
    table.write([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(
        ValueError,
        match="scores should be a complete ScoreTable, but got scores with 3 of 6 samples unscored",
    ):
        QualityWeightedSampler(table)
    table.write([3, 4, 5], [0.4, 0.5, 0.6])
    sampler = QualityWeightedSampler(table, temperature=0.5)
    assert sampler.higher_is_better is False
    torch.testing.assert_close(
        sampler.scores,
        torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=torch.float64),
    )
    assert bool((sampler.weights.diff() < 0).all()), "favouring easy samples, lower bn-shift weighs more"
    assert QualityWeightedSampler(table, higher_is_better=False).higher_is_better is False, "agreeing with the table is fine"
    with pytest.raises(
        ValueError, match="higher_is_better should match the direction its ScoreTable carries \\(False\\), but got higher_is_better=True"
    ):
        QualityWeightedSampler(table, higher_is_better=True)


def test_resolve_replicas_defaults_and_errors():
    assert resolve_replicas(None, None) == (1, 0)
    assert resolve_replicas(4, 3) == (4, 3)
    with pytest.raises(
        ValueError,
        match="rank should be in \\[0, 3\\] for num_replicas=4, but got rank=4",
    ):
        resolve_replicas(4, 4)
    with pytest.raises(
        ValueError,
        match="num_replicas should be a positive int, but got num_replicas=0",
    ):
        resolve_replicas(0, 0)
    with pytest.raises(TypeError, match="rank should be an int"):
        resolve_replicas(2, 1.0)  # type: ignore[arg-type]


def test_shard_pads_by_wrapping_and_trims_with_drop_last():
    draw = torch.arange(10, 20)
    assert [shard(draw, 4, r, False).tolist() for r in range(4)] == [
        [10, 14, 18],
        [11, 15, 19],
        [12, 16, 10],
        [13, 17, 11],
    ]
    assert [shard(draw, 4, r, True).tolist() for r in range(4)] == [
        [10, 14],
        [11, 15],
        [12, 16],
        [13, 17],
    ]
    # Fewer draws than replicas: wrap around more than once, as DistributedSampler does.
    assert [shard(torch.tensor([7, 8]), 5, r, False).tolist() for r in range(5)] == [
        [7],
        [8],
        [7],
        [8],
        [7],
    ]
    batches = torch.arange(6).view(3, 2)
    assert shard(batches, 2, 1, False).tolist() == [[2, 3], [0, 1]]


def test_load_state_dict_rejects_foreign_or_corrupt_state(scores):
    sampler = QualityStratifiedSampler(scores, 4, seed=3)
    with pytest.raises(
        ValueError,
        match="state should come from a sampler with seed=3, but got state\\['seed'\\]=4",
    ):
        sampler.load_state_dict({"epoch": 0, "position": 0, "seed": 4})
    with pytest.raises(
        ValueError,
        match="state should have keys \\['epoch', 'position', 'seed'\\], but got keys \\['epoch'\\]",
    ):
        sampler.load_state_dict({"epoch": 0})
    with pytest.raises(
        ValueError,
        match="state\\['position'\\] should be at most the epoch length 1000, but got state\\['position'\\]=1001",
    ):
        sampler.load_state_dict({"epoch": 0, "position": 1001, "seed": 3})
    with pytest.raises(ValueError, match="epoch should be a non-negative int, but got epoch=-1"):
        sampler.set_epoch(-1)


def test_seed_must_be_an_int(scores):
    with pytest.raises(TypeError, match="seed should be an int, but got seed of type float"):
        QualityStratifiedSampler(scores, 4, seed=1.5)  # type: ignore[arg-type]
