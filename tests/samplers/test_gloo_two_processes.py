"""Two real processes in a gloo group: samplers infer their rank and split each epoch between them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from qualoader.samplers import (
    CurriculumSampler,
    OnlineDifficulty,
    QualitySampler,
    QualityStratifiedSampler,
    QualityWeightedSampler,
)

WORLD_SIZE = 2


def _samplers(scores: torch.Tensor) -> dict[str, torch.utils.data.Sampler]:
    """Samplers built without num_replicas/rank: they must read them from torch.distributed."""
    return {
        "stratified": QualityStratifiedSampler(scores, 4, proportions="natural", seed=1),
        "weighted": QualityWeightedSampler(scores, higher_is_better=True, replacement=False, seed=1),
        "curriculum": CurriculumSampler(scores, higher_is_better=True, start_fraction=0.5, full_at=2, seed=1),
    }


def _plain_draws(rank: int, folder: str) -> None:
    scores = torch.rand(301, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    drawn: dict[str, list[int]] = {}
    for name, sampler in _samplers(scores).items():
        sampler.set_epoch(1)
        drawn[name] = list(sampler)
    # Exchange through the process group itself, as training code would.
    gathered: list[dict[str, list[int]] | None] = [None] * WORLD_SIZE
    dist.all_gather_object(gathered, drawn)
    if rank == 0:
        Path(folder, "drawn.json").write_text(json.dumps(gathered))


def _worker(rank: int, folder: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/rendezvous",
        world_size=WORLD_SIZE,
        rank=rank,
    )
    try:
        _plain_draws(rank, folder)
        _online_draws(rank, folder)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def gloo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder where one spawn of two gloo ranks left its results (one spawn: each costs seconds of imports)."""
    folder = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(str(folder),), nprocs=WORLD_SIZE, join=True)
    return folder


def test_two_gloo_ranks_split_every_epoch(gloo_run):
    per_rank = json.loads((gloo_run / "drawn.json").read_text())
    scores = torch.rand(301, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name, single in _samplers(scores).items():
        single.set_epoch(1)
        draw = list(single)
        first, second = per_rank[0][name], per_rank[1][name]
        assert len(first) == len(second) == (len(draw) + 1) // 2, name
        assert first == draw[0::2] and second == (draw + draw[:1])[1::2], name
        assert set(first) | set(second) == set(draw), name


def _loss(index: int) -> float:
    return float(index % 7) + index / 1000


def _online_samplers(scores: torch.Tensor, **replicas: int) -> dict[str, QualitySampler]:
    online = OnlineDifficulty(momentum=0.5)
    return {
        "stratified": QualityStratifiedSampler(
            scores, 4, proportions=[0.4, 0.3, 0.2, 0.1], higher_is_better=True, online=online, seed=2, **replicas
        ),
        "weighted": QualityWeightedSampler(scores, higher_is_better=True, favour="hard", online=online, seed=2, **replicas),
        "curriculum": CurriculumSampler(scores, higher_is_better=True, start_fraction=0.5, full_at=3, online=online, seed=2, **replicas),
    }


def _online_draws(rank: int, folder: str) -> None:
    scores = torch.rand(301, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result: dict[str, dict[str, object]] = {}
    for name, sampler in _online_samplers(scores).items():
        drawn = list(sampler)
        for begin in range(0, len(drawn), 8):  # one update per step of 8, this rank's own indices only
            batch = drawn[begin : begin + 8]
            sampler.update(batch, [_loss(i) for i in batch])
        counts_before = sampler.feedback.counts.clone()
        # A bad loss on rank 1 only: both ranks must raise (no rank left waiting) and record nothing.
        errors = []
        try:
            sampler.update(drawn[:2], [1.0, float("nan") if rank == 1 else 1.0])
        except ValueError as exn:
            errors.append(str(exn))
        sampler.set_epoch(1)
        result[name] = {
            "counts": sampler.feedback.counts.tolist(),
            "losses": sampler.feedback.losses.tolist(),
            "unchanged_by_error": torch.equal(counts_before, sampler.feedback.counts),
            "errors": errors,
            "epoch1": list(sampler),
        }
    gathered: list[object] = [None] * WORLD_SIZE
    dist.all_gather_object(gathered, result)
    if rank == 0:
        Path(folder, "online.json").write_text(json.dumps(gathered))


def test_two_gloo_ranks_share_one_loss_record_and_keep_splitting_the_epochs(gloo_run):
    per_rank = json.loads((gloo_run / "online.json").read_text())
    scores = torch.rand(301, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name, single in _online_samplers(scores, num_replicas=1, rank=0).items():
        draw = list(single)
        padded = draw + draw[: len(draw) % WORLD_SIZE]  # DistributedSampler's padding: every rank fed its share back
        single.update(padded, [_loss(i) for i in padded])
        single.set_epoch(1)
        expected = list(single)
        first, second = per_rank[0][name], per_rank[1][name]
        for rank_result in (first, second):
            assert rank_result["counts"] == single.feedback.counts.tolist(), name
            torch.testing.assert_close(torch.tensor(rank_result["losses"], dtype=torch.float64), single.feedback.losses, rtol=0, atol=1e-12)
            assert rank_result["unchanged_by_error"], name
            assert len(rank_result["errors"]) == 1 and "losses should be finite" in rank_result["errors"][0], name
            assert "(on rank 1)" in rank_result["errors"][0], name
        assert first["epoch1"] == expected[0::2] and second["epoch1"] == (expected + expected[:1])[1::2], name
