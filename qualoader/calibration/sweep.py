"""Corruption sweeps: score corrupted copies of images and record whether a reference network still gets them right."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from qualoader._validation import check_choice, check_images, check_positive_int, check_type
from qualoader.metrics.base import QualityMetric

__all__ = ["Sweep", "corruption_sweep", "iterate_sweep", "reference_errors", "sweep_batch_count"]


class Sweep(NamedTuple):
    """Scores and reference-network errors of a corruption sweep, all shape :math:`(N,)`.

    ``corruption`` indexes ``names`` (-1 for the clean images, which appear once); ``severity``
    is 0 for clean images.
    """

    scores: Tensor
    errors: Tensor
    corruption: Tensor
    severity: Tensor
    names: tuple[str, ...]


@torch.no_grad()
def reference_errors(reference: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """``1 - correct`` of ``reference`` on images :math:`(B, C, H, W)` with labels :math:`(B,)`, float32 :math:`(B,)`."""
    logits = reference(images)
    # float32 0/1, the target a calibration fit and a Brier score average directly.
    return (logits.argmax(dim=1) != labels).to(torch.float32)


def iterate_sweep(
    images: Tensor,
    labels: Tensor,
    reference: nn.Module,
    corruptions: Sequence[str] | None,
    severities: Sequence[int],
    generator: torch.Generator | None,
    batch_size: int,
    progress: bool = False,
    conditions_per_batch: int | None = None,
) -> tuple[tuple[str, ...], Iterator[tuple[Tensor, Tensor, Tensor, int, int]]]:
    """Validate a corruption sweep and return ``(names, batches)``.

    ``batches`` yields ``(clean, corrupted, labels, corruption_index, severity)`` per batch of
    ``batch_size`` images and condition (index ``-1`` and severity 0 for the clean images), with
    ``reference`` in eval mode while it runs (its mode is restored afterwards). Arguments as in
    :func:`corruption_sweep`. Validation happens here, eagerly, so a bad argument fails before
    the first (slow) batch. ``progress`` shows a tqdm bar over the batches (on stderr).

    ``conditions_per_batch`` (``None``: every condition for every batch) samples the sweep: each
    batch gets the clean images (when 0 is a severity) and that many corrupted conditions, taken in
    turn from a seeded permutation of all of them, so the conditions are covered evenly across
    batches at a fraction of the cost (see :func:`sweep_batch_count`).
    """
    from qualoader.corruptions import CORRUPTION_ALIASES, list_corruptions, resolve_corruption

    images = check_images(images)
    check_type(labels, "labels", Tensor, "a torch.Tensor of class indices (N,)")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels should have shape ({images.shape[0]},), but got labels.shape={tuple(labels.shape)}")
    check_type(reference, "reference", nn.Module, "an nn.Module returning logits (N, K)")
    check_positive_int(batch_size, "batch_size")
    names = tuple(list_corruptions() if corruptions is None else corruptions)
    if not names:
        raise ValueError("corruptions should name at least one corruption, but got corruptions=()")
    for name in names:
        check_choice(name, "corruptions[i]", {*list_corruptions(), *CORRUPTION_ALIASES})
    # ImageNet-C names (jpeg_compression) accepted as everywhere else, then deduplicated like the
    # severities: "jpeg" and "jpeg_compression" are one condition, not two of double weight.
    names = tuple(dict.fromkeys(resolve_corruption(name) for name in names))
    # Deduplicated: a repeated severity would score the same condition twice and double its weight in the fit.
    levels = sorted(set(severities))
    if any(isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 5 for level in levels):
        raise ValueError(f"severities should be ints in 0..5, but got severities={tuple(severities)!r}")
    # Clean images once, not once per corruption: severity 0 of every corruption is the same clean
    # batch, and repeating it would give clean images len(names) times their weight in the fit.
    conditions = ([(-1, 0)] if 0 in levels else []) + [(k, s) for k in range(len(names)) for s in levels if s > 0]
    schedule = _schedule(conditions, conditions_per_batch, generator)
    # Labels follow the images, where the logits will be, so argmax != label needs no transfer per batch.
    batches = _sweep_batches(images, labels.to(images.device), reference, names, schedule, generator, batch_size)
    if progress:
        from tqdm.auto import tqdm

        total = sweep_batch_count(images.shape[0], batch_size, len(conditions), conditions_per_batch, 0 in levels)
        batches = iter(tqdm(batches, total=total, unit="batch", desc=f"sweep {len(names)} corruptions x {len(levels)} severities"))
    return names, batches


def sweep_batch_count(n_images: int, batch_size: int, n_conditions: int, conditions_per_batch: int | None, clean: bool) -> int:
    """Number of batches :func:`iterate_sweep` yields (``n_conditions`` counts the clean condition when ``clean``)."""
    # -(-a // b) is ceil(a / b) in integers: the last, partial batch counts too.
    batches = -(-n_images // batch_size)
    if conditions_per_batch is None:
        return batches * n_conditions
    return batches * (int(clean) + min(conditions_per_batch, n_conditions - int(clean)))


def _schedule(
    conditions: list[tuple[int, int]], conditions_per_batch: int | None, generator: torch.Generator | None
) -> Callable[[int], list[tuple[int, int]]]:
    """``batch number -> its conditions``: all of them, or the clean one plus the next ``conditions_per_batch`` of a seeded order."""
    if conditions_per_batch is None:
        return lambda _batch: conditions
    check_positive_int(conditions_per_batch, "conditions_per_batch")
    clean = [condition for condition in conditions if condition[0] < 0]
    corrupted = [condition for condition in conditions if condition[0] >= 0]
    if not corrupted or conditions_per_batch >= len(corrupted):
        return lambda _batch: conditions
    # The order is drawn once from the sweep's generator (seeded: the same seed samples the same sweep); without one, seed 0.
    order_seed = int(torch.randint(2**31 - 1, (1,), generator=generator)) if generator is not None else 0
    order = torch.randperm(len(corrupted), generator=torch.Generator().manual_seed(order_seed)).tolist()
    k = conditions_per_batch
    return lambda batch: clean + [corrupted[order[(batch * k + t) % len(order)]] for t in range(k)]


def _sweep_batches(
    images: Tensor,
    labels: Tensor,
    reference: nn.Module,
    names: tuple[str, ...],
    schedule: Callable[[int], list[tuple[int, int]]],
    generator: torch.Generator | None,
    batch_size: int,
) -> Iterator[tuple[Tensor, Tensor, Tensor, int, int]]:
    from qualoader.corruptions import corrupt

    was_training = reference.training
    # Eval mode: in train mode BatchNorm would use each batch's statistics and dropout would flip
    # predictions, so errors would depend on the batch. The finally restores it even when the consumer
    # stops early (closing a generator runs its finally).
    reference.eval()
    try:
        for number, start in enumerate(range(0, images.shape[0], batch_size)):
            clean, label = images[start : start + batch_size], labels[start : start + batch_size]
            # conditions are the inner loop so every condition of a batch shares its clean images (and their features)
            for index, level in schedule(number):
                # The generator is consumed batch by batch, condition by condition: a seed reproduces a sweep
                # only with the same images, conditions and batch_size.
                batch = clean if index < 0 else corrupt(clean, names[index], level, generator=generator)
                yield clean, batch, label, index, level
    finally:
        reference.train(was_training)


@torch.no_grad()
def corruption_sweep(
    metric: QualityMetric,
    images: Tensor,
    labels: Tensor,
    reference: nn.Module,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    progress: bool = False,
) -> Sweep:
    """Score corrupted copies of ``images`` and record whether ``reference`` still classifies them.

    Args:
        metric: a :class:`~qualoader.metrics.QualityMetric`; full-reference metrics get the clean
            images as their ``reference``.
        images: clean images :math:`(N, C, H, W)`, uint8 or float in [0, 1].
        labels: class indices :math:`(N,)` for ``reference``.
        reference: the reference network: ``reference(images) -> logits (N, K)``.
        corruptions: names from :func:`qualoader.corruptions.list_corruptions` or their ImageNet-C aliases (default: all).
        severities: severities in 0..5; 0 means the clean images (included once).
        generator: seeds the random corruptions.
        batch_size: images per forward pass.
        progress: show a progress bar over the batches.

    Returns:
        A :class:`Sweep` whose ``errors`` are ``1 - correct`` of ``reference`` per image.

    Raises:
        TypeError: ``metric`` is not a ``QualityMetric`` or ``reference`` not an ``nn.Module``.
    """
    check_type(metric, "metric", QualityMetric, "a QualityMetric (see qualoader.metrics.create_metric)")
    parts: dict[str, list[Tensor]] = {"scores": [], "errors": [], "corruption": [], "severity": []}
    names, batches = iterate_sweep(images, labels, reference, corruptions, severities, generator, batch_size, progress)
    for clean, batch, label, index, level in batches:
        scores = metric(batch, clean) if metric.requires_reference else metric(batch)
        parts["scores"].append(scores.float())
        parts["errors"].append(reference_errors(reference, batch, label))
        parts["corruption"].append(torch.full_like(label, index))
        parts["severity"].append(torch.full_like(label, level))
    merged = {key: torch.cat(value) for key, value in parts.items()}
    return Sweep(merged["scores"], merged["errors"], merged["corruption"], merged["severity"], names)
