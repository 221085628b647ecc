"""Train a ``task-guided`` head (and its difficulty calibration) on a corruption sweep.

Run ``python -m qualoader._train_task_guided`` to regenerate the shipped default
(``qualoader/assets/task_guided_default.pt`` + ``.json`` recipe) from the Fashion-MNIST TRAIN split
and the embedded default reference network, with a fixed seed (a few minutes on one CPU core).
``qualoader calibrate --metric task-guided`` calls :func:`train_task_guided` for other references.

The target of the head is the reference network's sensitivity to the corruption, from two signals:
its correctness on the corrupted image (``1 - error``) and the cosine similarity between its
embedding of the corrupted image and of the clean one (``reference.embed`` when it exists, its
logits otherwise), clipped to [0, 1]. ``target="blend"`` (default) averages the two; it ranks
errors as well as correctness alone and keeps the smooth severity response of the similarity.
The calibration maps the head's score to the reference network's error on the same sweep.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qualoader._validation import (
    check_choice,
    check_positive_int,
)
from qualoader.calibration import (
    DifficultyCalibration,
    calibration_report,
    default_calibration_path,
    iterate_sweep,
)
from qualoader.metrics.aligned.task_guided import (
    FEATURE_NAMES,
    TaskGuidedHead,
    default_task_guided_path,
    save_task_guided_head,
    task_guided_features,
)

__all__ = ["TARGETS", "FeatureSweep", "TrainedHead", "evaluate_head", "feature_sweep", "head_target", "main", "save_trained", "train_task_guided"]


class FeatureSweep(NamedTuple):
    """Per corrupted image: head features :math:`(N, F)`, target similarity, reference error, condition."""

    features: Tensor
    similarity: Tensor
    errors: Tensor
    corruption: Tensor
    severity: Tensor
    names: tuple[str, ...]


class TrainedHead(NamedTuple):
    """Result of :func:`train_task_guided`: the head, its calibration and the JSON recipe."""

    head: TaskGuidedHead
    calibration: DifficultyCalibration
    recipe: dict[str, Any]


def _embedding(reference: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """``(embedding (B, D), logits (B, K))`` of the reference network."""
    embed = getattr(reference, "embed", None)
    logits = reference(images)
    return (embed(images) if callable(embed) else logits).flatten(1).float(), logits


@torch.no_grad()
def feature_sweep(
    reference: nn.Module,
    images: Tensor,
    labels: Tensor,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
    generator: torch.Generator | None = None,
    batch_size: int = 500,
) -> FeatureSweep:
    """Corrupt ``images`` and record head features, reference similarity to clean, and reference error.

    Args:
        reference: reference network, ``reference(images) -> logits (B, K)`` (optionally ``embed``).
        images: clean images :math:`(N, C, H, W)`, uint8 or float in [0, 1].
        labels: class indices :math:`(N,)`.
        corruptions: corruption names (default: all of :func:`qualoader.corruptions.list_corruptions`).
        severities: severities in 0..5; 0 (clean) is included once.
        generator: seeds the random corruptions.
        batch_size: images per forward pass.

    Returns:
        A :class:`FeatureSweep` with :math:`N \\times` (number of conditions) rows.
    """
    rows: dict[str, list[Tensor]] = {key: [] for key in ("features", "similarity", "errors", "corruption", "severity")}
    names, batches = iterate_sweep(images, labels, reference, corruptions, severities, generator, batch_size)
    last_clean = clean_embedding = None
    for clean, batch, label, index, level in batches:
        if clean is not last_clean:  # a new batch of clean images
            last_clean, (clean_embedding, _) = clean, _embedding(reference, clean)
        embedding, logits = _embedding(reference, batch)
        rows["features"].append(task_guided_features(batch))
        rows["similarity"].append(F.cosine_similarity(embedding, clean_embedding, dim=1).clamp(0.0, 1.0))
        rows["errors"].append((logits.argmax(dim=1) != label).float())
        rows["corruption"].append(torch.full_like(label, index))
        rows["severity"].append(torch.full_like(label, level))
    merged = {key: torch.cat(value) for key, value in rows.items()}
    return FeatureSweep(merged["features"], merged["similarity"], merged["errors"], merged["corruption"], merged["severity"], names)


TARGETS = frozenset({"blend", "correctness", "similarity"})


def head_target(sweep: FeatureSweep, target: str = "blend") -> Tensor:
    """Training target :math:`(N,)` in [0, 1]: ``"correctness"``, ``"similarity"`` or their mean ``"blend"``."""
    check_choice(target, "target", TARGETS)
    correct = 1.0 - sweep.errors
    if target == "correctness":
        return correct
    if target == "similarity":
        return sweep.similarity
    return 0.5 * (correct + sweep.similarity)


def _fit_head(
    sweep: FeatureSweep, target: str, hidden: tuple[int, ...], steps: int, batch_size: int, lr: float, generator: torch.Generator
) -> tuple[TaskGuidedHead, float]:
    features, target = sweep.features.cpu(), head_target(sweep, target).cpu()
    std = features.std(dim=0)
    head = TaskGuidedHead(hidden, features.mean(dim=0), torch.where(std > 1e-6, std, torch.ones_like(std)))
    with torch.no_grad():  # seeded initialisation, independent of the global RNG
        for parameter in head.mlp.parameters():
            bound = 1.0 / (parameter.shape[-1] ** 0.5) if parameter.ndim > 1 else 0.05
            parameter.copy_(torch.empty_like(parameter).uniform_(-bound, bound, generator=generator))
    optimizer = torch.optim.Adam(head.mlp.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    head.train()
    for _ in range(steps):
        index = torch.randint(features.shape[0], (min(batch_size, features.shape[0]),), generator=generator)
        loss = F.binary_cross_entropy_with_logits(head.logits(features[index]), target[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    head.eval()
    with torch.no_grad():
        final = float(F.binary_cross_entropy_with_logits(head.logits(features), target))
    return head, final


def _spearman(a: Tensor, b: Tensor) -> float:
    ranks = [x.argsort().argsort().double() for x in (a, b)]
    return float(torch.corrcoef(torch.stack(ranks))[0, 1])


def evaluate_head(head: TaskGuidedHead, calibration: DifficultyCalibration, sweep: FeatureSweep) -> dict[str, float]:
    """Spearman correlation of the score with the target similarity, and the prior's fit (:func:`calibration_report`)."""
    with torch.no_grad():
        scores = head(sweep.features.to(head.feature_mean.device))
    return {"spearman_similarity": _spearman(scores.cpu(), sweep.similarity.cpu()), **calibration_report(calibration(scores), sweep.errors.to(scores.device))}


def train_task_guided(
    reference: nn.Module,
    images: Tensor,
    labels: Tensor,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
    seed: int = 0,
    target: str = "blend",
    hidden: tuple[int, ...] = (64, 64),
    steps: int = 3000,
    batch_size: int = 4096,
    lr: float = 3e-3,
) -> TrainedHead:
    """Train a task-guided head and its difficulty calibration against ``reference``.

    Args:
        reference: reference network (``reference(images) -> logits``; ``embed`` used when present).
        images: clean training images :math:`(N, C, H, W)`, uint8 or float in [0, 1].
        labels: class indices :math:`(N,)`.
        corruptions: corruption names (default: all registered).
        severities: severities of the sweep, 0 = clean.
        seed: seeds the corruptions, initialisation and mini-batches.
        target: what the head predicts (see :func:`head_target`).
        hidden: hidden widths of the MLP.
        steps: optimiser steps (Adam, cosine schedule).
        batch_size: rows per step.
        lr: peak learning rate.

    Returns:
        :class:`TrainedHead` ``(head, calibration, recipe)``; the recipe records every setting and the
        in-sample fit.
    """
    check_positive_int(steps, "steps")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(seed, "seed", allow_zero=True)
    check_choice(target, "target", TARGETS)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    sweep = feature_sweep(reference, images, labels, corruptions, severities, generator)
    head, loss = _fit_head(sweep, target, hidden, steps, batch_size, lr, generator)
    with torch.no_grad():
        scores = head(sweep.features.cpu())
    calibration = DifficultyCalibration.fit(
        scores, sweep.errors, True, "isotonic", {"metric": "task-guided", "reference": str(getattr(reference, "weights_hash", type(reference).__name__))}
    )
    fit = evaluate_head(head, calibration, sweep)
    calibration.info["fit"] = {key: fit[key] for key in ("auroc", "brier", "brier_base", "error_rate")}
    recipe = {
        "metric": "task-guided",
        "target": target,
        "target_definition": {
            "correctness": "1 - error of the reference network on the corrupted image",
            "similarity": "cosine similarity of reference embeddings, corrupted vs clean, clipped to [0, 1]",
            "blend": "0.5 * (correctness + similarity)",
        }[target],
        "reference": calibration.info["reference"],
        "feature_names": list(FEATURE_NAMES),
        "corruptions": list(sweep.names),
        "severities": sorted(set(severities)),
        "n_images": int(images.shape[0]),
        "n_rows": int(sweep.features.shape[0]),
        "seed": seed,
        "hidden": list(hidden),
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "final_bce": loss,
        "train_fit": fit,
        "train_seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
    }
    return TrainedHead(head, calibration, recipe)


def save_trained(trained: TrainedHead, path: str | Path) -> tuple[Path, Path]:
    """Write the head checkpoint (with its calibration) to ``path`` and the recipe to ``path`` with ``.json``."""
    path = Path(path)
    save_task_guided_head(trained.head, path, trained.calibration.state_dict())
    recipe_path = path.with_suffix(".json")
    recipe_path.write_text(json.dumps(trained.recipe, indent=1) + "\n")
    return path, recipe_path


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the shipped default head from the Fashion-MNIST TRAIN split."""
    from qualoader.datasets import load_fashion_mnist
    from qualoader.reference import default_reference

    parser = argparse.ArgumentParser(prog="python -m qualoader._train_task_guided", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_task_guided_path(), help="checkpoint path (.pt; the recipe goes to .json)")
    parser.add_argument("--max-images", type=int, default=1500, help="training images drawn from the TRAIN split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--calibration-out", type=Path, default=None, help="also write the calibration JSON here (default: the shipped calibration_task-guided.json when --out is the default)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    images, labels = load_fashion_mnist("train")
    chosen = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(args.seed))[: args.max_images]
    trained = train_task_guided(default_reference(), images[chosen], labels[chosen], seed=args.seed, steps=args.steps)
    trained.recipe["split"] = "train"
    trained.recipe["subset"] = f"torch.randperm(60000, generator=manual_seed({args.seed}))[:{args.max_images}]"
    paths = save_trained(trained, args.out)
    calibration_out = args.calibration_out
    if calibration_out is None and args.out == default_task_guided_path():
        calibration_out = default_calibration_path("task-guided")
    if calibration_out is not None:
        trained.calibration.save(calibration_out)
    print(json.dumps({"checkpoint": str(paths[0]), "recipe": str(paths[1]), "train_fit": trained.recipe["train_fit"]}, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
