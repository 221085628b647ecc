"""Train a ``task-guided`` head (and its difficulty calibration) on a corruption sweep.

``qualoader calibrate --metric task-guided`` calls :func:`train_task_guided`; the shipped default
head is rebuilt by ``python tools/train_task_guided.py`` (outside the package).

The target of the head is the reference network's sensitivity to the corruption, from two signals:
its correctness on the corrupted image (``1 - error``) and the cosine similarity between its
embedding of the corrupted image and of the clean one (``reference.embed`` when it exists, its
logits otherwise), clipped to [0, 1]. ``target="blend"`` (default) averages the two; it ranks
errors as well as correctness alone and keeps the smooth severity response of the similarity.
The calibration maps the head's score to the reference network's error on the same sweep.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qualoader._atomic import write_json_atomic
from qualoader._threads import torch_threads
from qualoader._validation import check_choice, check_positive_int
from qualoader.calibration import DifficultyCalibration, calibration_report, iterate_sweep
from qualoader.metrics.aligned.task_guided import (
    INPUTS,
    TaskGuidedHead,
    head_feature_names,
    head_features_with_response,
    save_task_guided_head,
)
from qualoader.reference import ReferenceNetwork
from qualoader.stats import spearman

__all__ = [
    "TARGETS",
    "FeatureSweep",
    "TrainedHead",
    "evaluate_head",
    "feature_sweep",
    "fit_head",
    "head_target",
    "save_head_checkpoint",
    "save_trained",
    "train_task_guided",
]


class FeatureSweep(NamedTuple):
    """Per corrupted image: head features :math:`(N, F)` (columns ``feature_names``), target similarity, reference error, condition."""

    features: Tensor
    similarity: Tensor
    errors: Tensor
    corruption: Tensor
    severity: Tensor
    names: tuple[str, ...]
    feature_names: tuple[str, ...] = ()
    inputs: str = "image"


class TrainedHead(NamedTuple):
    """Result of :func:`train_task_guided`: the head, its calibration and the JSON recipe."""

    head: TaskGuidedHead
    calibration: DifficultyCalibration
    recipe: dict[str, Any]


def _embedding(reference: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """``(embedding (B, D), logits (B, K))`` of the reference network, from one forward pass when it can."""
    if isinstance(reference, ReferenceNetwork):
        embedding, logits = reference.embed_with_logits(images)
        return embedding.flatten(1).float(), logits
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
    inputs: str = "image",
    progress: bool = False,
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
        inputs: the features to record (:data:`~qualoader.metrics.aligned.task_guided.INPUTS`);
            ``"network"`` and ``"both"`` need a :class:`~qualoader.reference.ReferenceNetwork`.
        progress: show a progress bar over the sweep's batches.

    Returns:
        A :class:`FeatureSweep` with :math:`N \\times` (number of conditions) rows.
    """
    check_choice(inputs, "inputs", INPUTS)
    network = reference if isinstance(reference, ReferenceNetwork) else None
    if inputs != "image" and network is None:
        raise TypeError(
            f"reference should be a ReferenceNetwork (qualoader.reference.load_reference) when inputs={inputs!r}, "
            f"but got reference of type {type(reference).__name__}; use inputs='image' for a plain module"
        )
    feature_names = head_feature_names(inputs, network)
    rows: dict[str, list[Tensor]] = {key: [] for key in ("features", "similarity", "errors", "corruption", "severity")}
    names, batches = iterate_sweep(images, labels, reference, corruptions, severities, generator, batch_size, progress)
    last_clean = clean_embedding = None
    for clean, batch, label, index, level in batches:
        if clean is not last_clean:  # a new batch of clean images
            last_clean, (clean_embedding, _) = clean, _embedding(reference, clean)
        features, response = head_features_with_response(batch, inputs, network)
        if response is not None and network is not None and network.feature_layer is None:
            embedding, logits = response.penultimate, response.logits  # the same pass's embedding (input of the last linear layer)
        else:
            embedding, logits = _embedding(reference, batch)
        rows["features"].append(features)
        rows["similarity"].append(F.cosine_similarity(embedding, clean_embedding, dim=1).clamp(0.0, 1.0))
        rows["errors"].append((logits.argmax(dim=1) != label).float())
        rows["corruption"].append(torch.full_like(label, index))
        rows["severity"].append(torch.full_like(label, level))
    merged = {key: torch.cat(value) for key, value in rows.items()}
    return FeatureSweep(
        merged["features"], merged["similarity"], merged["errors"], merged["corruption"], merged["severity"], names, feature_names, inputs
    )


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


def fit_head(
    features: Tensor,
    target: Tensor,
    feature_names: Sequence[str],
    hidden: tuple[int, ...] = (64, 64),
    steps: int = 3000,
    batch_size: int = 4096,
    lr: float = 3e-3,
    generator: torch.Generator | None = None,
) -> tuple[TaskGuidedHead, float]:
    """Fit a :class:`TaskGuidedHead` to ``target`` by binary cross-entropy (Adam, cosine schedule).

    Args:
        features: :math:`(N, F)` head inputs.
        target: :math:`(N,)` in [0, 1].
        feature_names: the ``F`` column names, stored with the head.
        hidden: hidden widths of the MLP.
        steps: optimiser steps over random mini-batches of ``batch_size`` rows.
        batch_size: rows per step.
        lr: peak learning rate.
        generator: seeds the initialisation and the mini-batches (``None``: seed 0).

    Returns:
        ``(head, final BCE on all rows)``, the head in eval mode.
    """
    check_positive_int(steps, "steps")
    check_positive_int(batch_size, "batch_size")
    if len(feature_names) != features.shape[1]:
        raise ValueError(f"feature_names should name the {features.shape[1]} feature columns, but got {len(feature_names)} names")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    features, target = features.float().cpu(), target.float().cpu()
    std = features.std(dim=0)
    head = TaskGuidedHead(hidden, features.mean(dim=0), torch.where(std > 1e-6, std, torch.ones_like(std)), tuple(feature_names))
    with torch.no_grad():  # seeded initialisation, independent of the global RNG
        for parameter in head.mlp.parameters():
            bound = 1.0 / (parameter.shape[-1] ** 0.5) if parameter.ndim > 1 else 0.05
            parameter.copy_(torch.empty_like(parameter).uniform_(-bound, bound, generator=generator))
    optimizer = torch.optim.Adam(head.mlp.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    head.train()
    # One thread: the head's matrices are tiny, so the pool's hand-offs cost more than they share (6x slower with 2 threads
    # on a busy 2-core machine, measured: 10 ms against 1.5 ms per step).
    with torch_threads(1):
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


def evaluate_head(head: TaskGuidedHead, calibration: DifficultyCalibration, sweep: FeatureSweep) -> dict[str, float]:
    """Spearman correlation of the score with the target similarity, and the prior's fit (:func:`calibration_report`)."""
    with torch.no_grad():
        scores = head(sweep.features.to(head.feature_mean.device))
    return {
        "spearman_similarity": float(spearman(scores.cpu().numpy(), sweep.similarity.cpu().numpy())),
        **calibration_report(calibration(scores), sweep.errors.to(scores.device)),
    }


def train_task_guided(
    reference: nn.Module,
    images: Tensor,
    labels: Tensor,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
    seed: int = 0,
    target: str = "blend",
    hidden: tuple[int, ...] = (),
    steps: int = 1000,
    batch_size: int = 4096,
    lr: float = 3e-3,
    inputs: str = "both",
    progress: bool = False,
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
        hidden: hidden widths of the MLP; ``()`` (default), a logistic regression, generalises best
            to degradation types outside the sweep (``benchmarks/generalisation.py``).
        steps: optimiser steps (Adam, cosine schedule).
        batch_size: rows per step.
        lr: peak learning rate.
        inputs: what the head reads (:data:`~qualoader.metrics.aligned.task_guided.INPUTS`);
            ``"network"`` and ``"both"`` (default) need ``reference`` to be a
            :class:`~qualoader.reference.ReferenceNetwork`.
        progress: show a progress bar over the corruption sweep (the head's training is not counted).

    Returns:
        :class:`TrainedHead` ``(head, calibration, recipe)``; the recipe records every setting and the
        in-sample fit.
    """
    check_positive_int(steps, "steps")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(seed, "seed", allow_zero=True)
    check_choice(target, "target", TARGETS)
    check_choice(inputs, "inputs", INPUTS)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    sweep = feature_sweep(reference, images, labels, corruptions, severities, generator, inputs=inputs, progress=progress)
    head, loss = fit_head(sweep.features, head_target(sweep, target), sweep.feature_names, hidden, steps, batch_size, lr, generator)
    with torch.no_grad():
        scores = head(sweep.features.cpu())
    calibration = DifficultyCalibration.fit(
        scores,
        sweep.errors,
        True,
        "isotonic",
        {"metric": "task-guided", "reference": str(getattr(reference, "weights_hash", type(reference).__name__))},
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
        "inputs": inputs,
        "feature_names": list(sweep.feature_names),
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


def save_head_checkpoint(trained: TrainedHead, path: str | Path, calibration: DifficultyCalibration | None = None) -> Path:
    """Write the head checkpoint to ``path`` (atomically), bound to the reference network it was fitted to.

    Args:
        trained: the result of :func:`train_task_guided`.
        path: the checkpoint file (``.pt``), loadable with ``create_metric("task-guided", checkpoint=path)``.
        calibration: the calibration to store with the head (default: ``trained.calibration``, the
            in-sample one; a quality profile stores the one it measured on held-out images).
    """
    path = Path(path)
    inputs = trained.recipe.get("inputs", "image")
    reference = trained.recipe.get("reference") if inputs != "image" else None
    state = (trained.calibration if calibration is None else calibration).state_dict()
    save_task_guided_head(trained.head, path, state, inputs=inputs, reference=reference)
    return path


def save_trained(trained: TrainedHead, path: str | Path) -> tuple[Path, Path]:
    """Write the head checkpoint (with its calibration) to ``path`` and the recipe to ``path`` with ``.json``."""
    path = save_head_checkpoint(trained, path)
    recipe_path = path.with_suffix(".json")
    write_json_atomic(recipe_path, trained.recipe)
    return path, recipe_path


