"""Two real processes in a gloo group: samplers infer their rank and split each epoch between them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from qualoader.samplers import (
    CurriculumSampler,
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


def _worker(rank: int, folder: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/rendezvous",
        world_size=WORLD_SIZE,
        rank=rank,
    )
    try:
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
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_split_every_epoch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD_SIZE, join=True)
    per_rank = json.loads((tmp_path / "drawn.json").read_text())
    scores = torch.rand(301, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name, single in _samplers(scores).items():
        single.set_epoch(1)
        draw = list(single)
        first, second = per_rank[0][name], per_rank[1][name]
        assert len(first) == len(second) == (len(draw) + 1) // 2, name
        assert first == draw[0::2] and second == (draw + draw[:1])[1::2], name
        assert set(first) | set(second) == set(draw), name
