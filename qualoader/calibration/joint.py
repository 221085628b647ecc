"""Calibrate several aligned metrics of one reference network from one corruption sweep.

Every batch of the sweep goes through the network once (:func:`qualoader._shared_pass.run_shared_pass`,
the runner the scoring engine uses): each metric reads its share of that pass, and so do the
network's errors (the calibration target) and, for ``task-guided``, the features its head is trained
on. Then the head is trained on the fit part's rows, and every metric's difficulty is fitted on the
fit part and measured on the held-out part (AUROC with its bootstrap 95% CI, Brier, error rates).

Phases are reported through a ``report(phase, message)`` callback: ``"sweep"`` (with an estimate of
the time left after the first batches), ``"head training"`` and ``"calibration fit"``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader._engine_batches import resize_batch
from qualoader._shared_pass import run_shared_pass
from qualoader._validation import check_choice, check_images, check_type
from qualoader.calibration.fit import calibration_report
from qualoader.calibration.heldout import check_error_rate
from qualoader.calibration.mapping import CALIBRATION_METHODS, DifficultyCalibration
from qualoader.calibration.sweep import iterate_sweep, reference_errors, sweep_batch_count
from qualoader.metrics.base import QualityMetric
from qualoader.reference import ForwardTap, ReferenceNetwork
from qualoader.stats import bootstrap_auroc

__all__ = ["HeadSettings", "JointFit", "JointSweep", "Reporter", "fit_joint", "joint_sweep"]

#: ``report(phase, message)``: one line of progress (phase is "sweep", "head training" or "calibration fit").
Reporter = Callable[[str, str], None]
#: Batches timed before the sweep's estimate is printed: the first batch pays one-off costs (allocations, kernels).
_ESTIMATE_AFTER = 3


class HeadSettings(NamedTuple):
    """How the ``task-guided`` head is trained in a joint calibration (see ``train_task_guided``)."""

    inputs: str = "both"
    target: str = "blend"
    hidden: tuple[int, ...] = ()
    steps: int = 1000
    batch_size: int = 4096
    lr: float = 3e-3


class JointSweep(NamedTuple):
    """One sweep: per row, every metric's score, the network's error and (with a head) the head's features and target similarity."""

    scores: dict[str, Tensor]
    errors: Tensor
    severity: Tensor
    names: tuple[str, ...]
    features: Tensor | None
    similarity: Tensor | None
    feature_names: tuple[str, ...]


class JointFit(NamedTuple):
    """One metric's result: its calibration (fitted on the fit part), the figures, and for ``task-guided`` its trained head."""

    calibration: DifficultyCalibration
    figures: dict[str, Any]
    trained: Any = None


class _Progress:
    """Counts sweep batches across the fit and held-out sweeps and reports an estimate after the first ones."""

    def __init__(self, total: int, report: Reporter | None) -> None:
        self.total, self.report, self.done = total, report, 0
        self.started = time.perf_counter()
        # an estimate after the first batches, then at each quarter of a long sweep
        self.notes = {_ESTIMATE_AFTER} | ({total * quarter // 4 for quarter in (1, 2, 3)} if total >= 4 * _ESTIMATE_AFTER else set())

    def step(self) -> None:
        self.done += 1
        if self.report is not None and self.done < self.total and self.done in self.notes:
            elapsed = time.perf_counter() - self.started
            left = elapsed / self.done * (self.total - self.done)
            self.report("sweep", f"{self.done}/{self.total} batches in {elapsed:.0f} s, about {left:.0f} s left")


def _errors_tap(label: Tensor) -> ForwardTap:
    """The network's error ``argmax != label`` as float32 0/1 :math:`(B,)`, read from the shared pass's logits."""
    return ForwardTap((), lambda logits: (logits.argmax(dim=1) != label.to(logits.device)).to(torch.float32))


@torch.no_grad()
def joint_sweep(
    network: ReferenceNetwork,
    metrics: Mapping[str, QualityMetric],
    images: Tensor,
    labels: Tensor,
    corruptions: Sequence[str] | None,
    severities: Sequence[int],
    generator: torch.Generator,
    *,
    batch_size: int = 128,
    conditions_per_batch: int | None = None,
    head_inputs: str | None = None,
    progress: _Progress | None = None,
) -> JointSweep:
    """Run one corruption sweep of ``images`` through ``network``, one forward pass per batch for everything it measures.

    Args:
        network: the reference network every metric was built on.
        metrics: name -> aligned metric of ``network`` (their ``tap`` reads the shared pass).
        images: clean images :math:`(N, C, H, W)` float in [0, 1] (or uint8).
        labels: class indices :math:`(N,)`.
        corruptions, severities, generator, batch_size, conditions_per_batch: the sweep, see
            :func:`~qualoader.calibration.iterate_sweep`.
        head_inputs: also record the ``task-guided`` head's features for these inputs (``None``: no head).
        progress: counts batches (internal).

    Returns:
        A :class:`JointSweep`.
    """
    from qualoader.metrics.aligned.task_guided import head_feature_names, head_features_tap

    rows: dict[str, list[Tensor]] = {"errors": [], "severity": [], "features": [], "similarity": []}
    scores: dict[str, list[Tensor]] = {name: [] for name in metrics}
    names, batches = iterate_sweep(
        images, labels, network, corruptions, severities, generator, batch_size, conditions_per_batch=conditions_per_batch
    )
    shared = [metric for metric in metrics.values() if not metric.requires_reference]
    full_reference = [metric for metric in metrics.values() if metric.requires_reference]
    size = tuple(network.input_size)
    last_clean: Tensor | None = None
    clean_embedding: Tensor | None = None
    for clean, batch, label, index, level in batches:
        small = resize_batch(batch, size)  # a no-op for images loaded at the network's size
        extra = [_errors_tap(label)]
        if head_inputs is not None:
            extra.append(head_features_tap(small, head_inputs, network))
        metric_scores, outputs = run_shared_pass(network, shared, small, extra)
        for metric, values in zip(shared, metric_scores, strict=True):
            scores[metric.name].append(values.float())
        for metric in full_reference:  # compares with the clean image: its own passes, as when it scores a dataset
            scores[metric.name].append(metric.score(small, resize_batch(clean, size)).float())
        rows["errors"].append(outputs[0])
        rows["severity"].append(torch.full_like(label, level))
        if head_inputs is not None:
            features, response = outputs[1]
            embedding = response.penultimate if network.feature_layer is None else network.embed(small)
            if clean is not last_clean:
                last_clean = clean
                # the clean condition comes first (iterate_sweep's order), so its pass is the clean embedding; else one more pass
                clean_embedding = embedding if index < 0 else network.embed(resize_batch(clean, size))
            rows["features"].append(features)
            rows["similarity"].append(F.cosine_similarity(embedding.flatten(1), clean_embedding.flatten(1), dim=1).clamp(0.0, 1.0))
        if progress is not None:
            progress.step()
    merged = {key: torch.cat(value) if value else None for key, value in rows.items()}
    feature_names = head_feature_names(head_inputs, network) if head_inputs is not None else ()
    return JointSweep(
        {name: torch.cat(values) for name, values in scores.items()},
        merged["errors"],  # type: ignore[arg-type]
        merged["severity"],  # type: ignore[arg-type]
        names,
        merged["features"],
        merged["similarity"],
        feature_names,
    )


def _figures(calibration: DifficultyCalibration, scores: Tensor, errors: Tensor, part: str) -> dict[str, Any]:
    report = calibration_report(calibration(scores), errors)
    undefined = sorted(key for key, value in report.items() if not math.isfinite(value))
    if undefined:
        raise ValueError(
            f"the {part} fit statistics should all be defined, but got {undefined} undefined (NaN) for {errors.numel()} rows"
        )
    return {**{key: round(value, 6) for key, value in report.items()}, "rows": int(errors.numel())}


def _train_head(settings: HeadSettings, fit: JointSweep, network: ReferenceNetwork, seed: int, n_images: int) -> Any:
    """The head trained on the fit sweep's rows, as ``train_task_guided`` would train it (its recipe included)."""
    from qualoader.metrics.aligned.task_guided_training import FeatureSweep, TrainedHead, fit_head, head_target

    if fit.features is None or fit.similarity is None:
        raise RuntimeError("the sweep should have recorded the head's features (joint_sweep with head_inputs), but got none")
    generator = torch.Generator().manual_seed(seed)
    empty = torch.zeros(0)
    rows = FeatureSweep(fit.features, fit.similarity, fit.errors, empty, fit.severity, fit.names, fit.feature_names, settings.inputs)
    head, loss = fit_head(rows.features, head_target(rows, settings.target), rows.feature_names, settings.hidden, settings.steps,
                          settings.batch_size, settings.lr, generator)
    with torch.no_grad():
        scores = head(fit.features.cpu())
    calibration = DifficultyCalibration.fit(scores, fit.errors, True, "isotonic", {"metric": "task-guided"})
    recipe = {
        "metric": "task-guided",
        "target": settings.target,
        "reference": network.weights_hash,
        "inputs": settings.inputs,
        "feature_names": list(fit.feature_names),
        "corruptions": list(fit.names),
        "n_images": n_images,
        "n_rows": int(fit.features.shape[0]),
        "seed": seed,
        "hidden": list(settings.hidden),
        "steps": settings.steps,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "final_bce": loss,
        "train_fit": calibration_report(calibration(scores), fit.errors),
    }
    return TrainedHead(head, calibration, recipe)


def fit_joint(
    network: ReferenceNetwork,
    metrics: Mapping[str, QualityMetric],
    fit_data: tuple[Tensor, Tensor],
    held_data: tuple[Tensor, Tensor],
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
    *,
    head: HeadSettings | None = None,
    seed: int = 0,
    method: str = "isotonic",
    batch_size: int = 128,
    conditions_per_batch: int | None = None,
    report: Reporter | None = None,
) -> dict[str, JointFit]:
    """Fit every metric's difficulty (and the ``task-guided`` head) from one sweep, measured on held-out images.

    Args:
        network: the reference network whose errors are the target.
        metrics: name -> aligned metric built on ``network`` (``task-guided`` is left out: pass ``head``).
        fit_data: ``(images (N, C, H, W), labels (N,))`` the head and calibrations are fitted on.
        held_data: ``(images, labels)`` they are measured on, never seen by the fits.
        corruptions, severities: the sweep (see :func:`~qualoader.calibration.iterate_sweep`).
        head: train a ``task-guided`` head (its result is keyed ``"task-guided"``); ``None``: no head.
        seed: seeds the corruptions (the held-out sweep uses ``seed + 1``), the head and the AUROC bootstrap.
        method: ``"isotonic"`` or ``"logistic"``.
        batch_size: images per forward pass.
        conditions_per_batch: sample the sweep (``None``: every condition for every batch).
        report: ``report(phase, message)`` progress lines.

    Returns:
        name -> :class:`JointFit`; ``figures`` holds ``fit`` and ``held_out`` (AUROC, ``auroc_ci``
        [low, high] on the held-out part, Brier, Brier of the base rate, error rate, rows),
        ``clean_error_rate`` (the network's error on the clean held-out images), ``n_fit`` and ``n_held_out``.

    Raises:
        ValueError: labels outside the network's outputs, an error rate of 0 or 1 on either part,
            non-finite scores or undefined figures; the message says which.
    """
    check_type(network, "network", ReferenceNetwork, "a ReferenceNetwork (see qualoader.reference.load_reference)")
    check_choice(method, "method", CALIBRATION_METHODS)
    if not metrics and head is None:
        raise ValueError("metrics should name at least one metric (or head a task-guided head), but got none")
    parts = {"fit": fit_data, "held-out": held_data}
    for part, (images, labels) in parts.items():
        images = check_images(images, f"{part} images")
        with torch.no_grad():  # one image: a label the network cannot predict would count as an error every time
            outputs = network(images[:1]).shape[-1]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= outputs):
            raise ValueError(
                f"labels should be class indices in [0, {outputs}) for a network with {outputs} outputs, but got {part} labels in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
    levels = sorted(set(severities))
    n_conditions = (1 if 0 in levels else 0) + len(corruptions or _all_corruptions()) * len([s for s in levels if s > 0])
    total = sum(sweep_batch_count(int(images.shape[0]), batch_size, n_conditions, conditions_per_batch, 0 in levels)
                for images, _ in parts.values())
    if report is not None:
        images_text = " + ".join(f"{int(images.shape[0])} {part}" for part, (images, _) in parts.items())
        report("sweep", f"{images_text} images, {n_conditions} conditions, {total} batches of up to {batch_size} (one pass each)")
    progress = _Progress(total, report)
    inputs = head.inputs if head is not None else None
    sweeps = {
        part: joint_sweep(network, metrics, images, labels, corruptions, severities, torch.Generator().manual_seed(seed + offset),
                          batch_size=batch_size, conditions_per_batch=conditions_per_batch, head_inputs=inputs, progress=progress)
        for offset, (part, (images, labels)) in enumerate(parts.items())
    }
    fit, held = sweeps["fit"], sweeps["held-out"]
    if report is not None:
        report("sweep", f"done in {time.perf_counter() - progress.started:.0f} s ({fit.errors.numel() + held.errors.numel()} rows)")
    for part, sweep in sweeps.items():  # checked before any fit, so a failure names the part and the cause
        check_error_rate(sweep.errors, part)
    scores = {name: (fit.scores[name], held.scores[name]) for name in metrics}
    trained = None
    if head is not None:
        if report is not None:
            report("head training", f"task-guided head on {fit.errors.numel()} rows, {head.steps} steps")
        started = time.perf_counter()
        trained = _train_head(head, fit, network, seed, int(fit_data[0].shape[0]))
        trained.recipe["train_seconds"] = round(time.perf_counter() - started, 1)
        with torch.no_grad():
            scores["task-guided"] = (trained.head(fit.features.cpu()), trained.head(held.features.cpu()))  # type: ignore[union-attr]
    if report is not None:
        report("calibration fit", f"{', '.join(scores)} ({method}), held-out AUROC with a bootstrap 95% CI")
    clean = held.severity == 0
    # the sweep's clean rows when it has them; else one pass over the clean held-out images
    clean_errors = held.errors[clean] if bool(clean.any()) else reference_errors(network, check_images(held_data[0]), held_data[1])
    clean_error = round(float(clean_errors.mean()), 6)
    results: dict[str, JointFit] = {}
    for name, (fit_scores, held_scores) in scores.items():
        metric = metrics.get(name)
        higher_is_better = metric.higher_is_better if metric is not None else True
        for part, values in (("fit", fit_scores), ("held-out", held_scores)):
            bad = int((~torch.isfinite(values)).sum())
            if bad:
                raise ValueError(
                    f"scores of {name!r} on the {part} sweep should be finite, but got {bad} NaN/Inf scores of {values.numel()}"
                )
        info = {"metric": name, "corruptions": list(fit.names), "severities": levels, "n_images": int(fit_data[0].shape[0])}
        calibration = DifficultyCalibration.fit(fit_scores, fit.errors, higher_is_better, method, info)
        figures: dict[str, Any] = {"fit": _figures(calibration, fit_scores, fit.errors, "fit")}
        held_figures = _figures(calibration, held_scores, held.errors, "held-out")
        interval = bootstrap_auroc(calibration(held_scores).double().numpy(), held.errors.numpy() > 0.5,
                                   generator=torch.Generator().manual_seed(seed))
        held_figures["auroc_ci"] = [round(float(interval.low), 6), round(float(interval.high), 6)]
        figures["held_out"] = held_figures
        figures["clean_error_rate"] = clean_error
        figures["n_fit"], figures["n_held_out"] = int(fit_data[0].shape[0]), int(held_data[0].shape[0])
        calibration.info["fit"] = figures["fit"]
        results[name] = JointFit(calibration, figures, trained if name == "task-guided" else None)
    return results


def _all_corruptions() -> list[str]:
    from qualoader.corruptions import list_corruptions

    return list(list_corruptions())
