"""One training run of the benchmark: an arm at one setting, one architecture, one seed.

The learning rate is constant (Adam, 1e-3), so nothing in the run depends on the budget and one
run serves every budget: validation accuracy is measured along the way (every ``eval_every``
epochs' worth of steps and at each budget) and the weights are saved at each budget, to be
evaluated on the TEST sets only if the arm's setting is chosen on validation. Each run writes its
own JSON when it ends, so a killed benchmark resumes from the runs it finished.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.training.arms import build_feeder, setting_label
from benchmarks.training.models import accuracy, build_model
from qualoader._atomic import write_json_atomic

__all__ = ["Job", "RunConfig", "checkpoint_steps", "run_id", "train_run"]


@dataclass(frozen=True)
class Job:
    """One run: ``arm`` at ``setting`` with architecture ``arch`` and training seed ``seed``."""

    arm: str
    setting: tuple[tuple[str, Any], ...]
    arch: str
    seed: int

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.setting)


@dataclass(frozen=True)
class RunConfig:
    """What every run shares: the budgets (in epochs' worth of steps), batch size, learning rate, evaluation cadence."""

    budgets: tuple[float, ...]
    batch_size: int = 128
    lr: float = 1e-3
    eval_every: float = 0.5

    def steps_per_epoch(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.batch_size)


def run_id(job: Job) -> str:
    """File-name stem of a run, e.g. ``weighted-hard__score=task-guided,temperature=1.0__mlp__s3``."""
    return f"{job.arm}__{setting_label(job.settings)}__{job.arch}__s{job.seed}"


def checkpoint_steps(config: RunConfig, num_samples: int) -> tuple[list[int], dict[float, int]]:
    """Steps at which validation accuracy is measured (sorted) and the step of each budget."""
    per_epoch = config.steps_per_epoch(num_samples)
    budgets = {budget: max(1, round(budget * per_epoch)) for budget in config.budgets}
    last = max(budgets.values())
    every = max(1, round(config.eval_every * per_epoch))
    return sorted(set(range(every, last + 1, every)) | set(budgets.values())), budgets


def train_run(
    job: Job, *, train_images: Tensor, train_labels: Tensor, val_images: Tensor, val_labels: Tensor, scores: dict[str, Tensor],
    higher_is_better: dict[str, bool], config: RunConfig, out: Path,
) -> dict[str, Any]:
    """Train one run, save its weights at every budget under ``out/states`` and its record as ``out/runs/<id>.json``.

    Returns the record: the validation curve (step, training seconds, accuracy), the step and
    weights file of every budget, and the steps the arm used (InfoBatch may stop early).
    """
    num_samples = train_images.shape[0]
    steps, budgets = checkpoint_steps(config, num_samples)
    total = steps[-1]
    epochs = math.ceil(max(config.budgets))
    feeder = build_feeder(
        job.arm, job.settings, scores=scores, higher_is_better=higher_is_better, num_samples=num_samples,
        batch_size=config.batch_size, epochs=epochs, seed=job.seed,
    )
    model = build_model(job.arch, job.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    stem = run_id(job)
    (out / "states").mkdir(parents=True, exist_ok=True)
    curve: list[dict[str, float]] = []
    saved: dict[str, dict[str, Any]] = {}
    checkpoints = set(steps)
    seconds, step = 0.0, 0

    def evaluate() -> None:
        curve.append({"step": step, "seconds": round(seconds, 3), "val_acc": accuracy(model, val_images, val_labels)})

    def save(budget: float) -> None:
        path = out / "states" / f"{stem}__e{budget:g}.pt"
        torch.save(model.state_dict(), path)
        saved[f"{budget:g}"] = {"step": step, "state": path.name}

    tick = time.perf_counter()
    for indices, weights in feeder.batches():
        per_sample = F.cross_entropy(model(train_images[indices]), train_labels[indices], reduction="none")
        loss = (per_sample * weights).mean() if weights is not None else per_sample.mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        feeder.feedback(indices, per_sample.detach())
        step += 1
        if step in checkpoints:
            seconds += time.perf_counter() - tick  # training time only: evaluation is not part of an arm's cost
            evaluate()
            for budget, at in budgets.items():
                if at == step:
                    save(budget)
            tick = time.perf_counter()
        if step >= total:
            break
    if step < total:
        # The feeder ran out before the longest budget (InfoBatch's pruned epochs): its last state serves every later budget.
        seconds += time.perf_counter() - tick
        if not curve or curve[-1]["step"] != step:
            evaluate()
        for budget, at in budgets.items():
            if at > step:
                save(budget)
    record = {
        "id": stem, "arm": job.arm, "setting": job.settings, "arch": job.arch, "seed": job.seed, "steps_used": step,
        "train_seconds": round(seconds, 2), "curve": curve, "budgets": saved,
    }
    (out / "runs").mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "runs" / f"{stem}.json", record)
    return record
