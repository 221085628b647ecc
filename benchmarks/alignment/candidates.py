"""The metrics the alignment benchmark compares: which ones, how each is built, fed and oriented."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ALIGNED_NAMES",
    "CONVENTIONAL_FR",
    "PYIQA_WEIGHT_FREE",
    "MetricEntry",
    "build",
    "candidate_names",
    "orient",
    "reference_info",
]

ALIGNED_NAMES = frozenset({"bn-shift", "feature-distance", "task-guided", "zeroshot"})
# pyiqa metrics that need no downloaded weights: the benchmark must run offline.
PYIQA_WEIGHT_FREE = ("fsim", "vif", "gmsd", "nlpd", "piqe", "entropy")
CONVENTIONAL_FR = ("psnr", "ssim", "ms-ssim")


@dataclass
class MetricEntry:
    """A metric under test: how it was built, how its input is prepared, and its per-image scores."""

    name: str
    kind: str  # "aligned" or "conventional"
    group: str  # "aligned", "conventional FR", "conventional NR (pyiqa)", "classical NR"
    higher_is_better: bool
    requires_reference: bool
    metric: Any = None
    size: int | None = None  # None = native 28x28, else upsampled side
    channels: int = 1
    seconds: float = 0.0
    scored: int = 0
    limit: int = 0  # images scored per condition (the first ``limit`` of each condition)
    scores: list[Tensor] = field(default_factory=list)
    nonfinite: int = 0

    def prepare(self, images: Tensor) -> Tensor:
        """Images :math:`(B, 1, 28, 28)` in [0, 1] -> the metric's input (resized / 3-channel)."""
        if self.size is not None and self.size != images.shape[-1]:
            # bilinear overshoots slightly at edges; clamp so range-checking metrics accept the input
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
        return images.expand(-1, self.channels, -1, -1).contiguous() if self.channels != images.shape[1] else images

    @torch.no_grad()
    def score(self, images: Tensor, reference: Tensor, batch_size: int) -> Tensor:
        """Raw scores :math:`(N,)` of float images :math:`(N, 1, 28, 28)` (reference used for FR metrics)."""
        parts = []
        for start in range(0, images.shape[0], batch_size):
            batch = self.prepare(images[start : start + batch_size])
            if self.requires_reference:
                out = self.metric(batch, self.prepare(reference[start : start + batch_size]))
            else:
                out = self.metric(batch)
            parts.append(out.detach().float().reshape(-1).cpu())
        return torch.cat(parts)


def candidate_names(only: Sequence[str] | None, log: Any = print) -> list[tuple[str, str, str]]:
    """(create name, kind, group) of every metric to try, from the registry (aligned ones last).

    The list is read from the registry, so a metric registered later is benchmarked without an edit here.
    """
    from qualoader.metrics import list_metrics, metric_info

    try:  # make sure the aligned metrics are registered even if the package does not import them yet
        import qualoader.metrics.aligned  # noqa: F401
    except ImportError as error:
        log(f"qualoader.metrics.aligned not importable: {error}")
    aligned = sorted(ALIGNED_NAMES | {name for name in list_metrics() if _is_aligned_class(name)})
    names: list[tuple[str, str, str]] = [(name, "conventional", "conventional FR") for name in CONVENTIONAL_FR]
    names += [
        (name, "conventional", "conventional FR") for name in list_metrics("FR") if name not in CONVENTIONAL_FR and name not in aligned
    ]
    names += [(f"pyiqa:{name}", "conventional", "conventional (pyiqa)") for name in PYIQA_WEIGHT_FREE]
    names += [
        (name, "conventional", "classical NR")
        for name in list_metrics("NR")
        if name not in aligned and not metric_info(name).requires_weights
    ]
    names += [(name, "aligned", "aligned") for name in aligned]
    return [entry for entry in names if not only or entry[0] in only]


def _is_aligned_class(name: str) -> bool:
    from qualoader.metrics.registry import _lookup

    try:
        return _lookup(name).__module__.startswith("qualoader.metrics.aligned")
    except KeyError:
        return False


def build(
    name: str, kind: str, group: str, probe: Tensor, probe_reference: Tensor, iqa_size: int, large_size: int
) -> tuple[MetricEntry | None, str]:
    """Create and probe a metric; returns (entry, "") or (None, reason to skip).

    Input variants are tried in order: native 28 px (our metrics only), ``iqa_size`` grey, ``iqa_size``
    RGB (grey repeated), then ``large_size`` for metrics with a minimum size (e.g. 5-scale MS-SSIM).
    The seconds per image of the working variant are measured on the probe batch.
    """
    from qualoader.metrics import create_metric, list_metrics, metric_info

    registered = name in list_metrics()
    if not registered and not name.startswith("pyiqa:"):
        if name == "zeroshot":
            return None, "skipped: no local CLIP checkpoint (the 'zeroshot' metric is not registered in this installation)"
        return None, "skipped: not registered in this installation"
    if registered and metric_info(name).requires_weights and name == "zeroshot":
        try:
            metric = create_metric(name)
        except Exception as error:  # noqa: BLE001 - any failure means no usable local model
            return None, f"skipped: no local CLIP checkpoint ({type(error).__name__}: {error})"
    else:
        try:
            metric = create_metric(name)
        except Exception as error:  # noqa: BLE001 - record and go on
            return None, f"skipped: cannot create ({type(error).__name__}: {str(error)[:300]})"
    if name.startswith("pyiqa:"):
        group = f"conventional {'FR' if metric.requires_reference else 'NR'} (pyiqa)"
    entry = MetricEntry(
        name=name,
        kind=kind,
        group=group,
        higher_is_better=bool(metric.higher_is_better),
        requires_reference=bool(metric.requires_reference),
        metric=metric,
    )
    variants = [(iqa_size, 1), (iqa_size, 3), (large_size, 1), (large_size, 3)]
    if not name.startswith("pyiqa:"):
        variants.insert(0, (None, 1))
    reasons = []
    for size, channels in variants:
        entry.size, entry.channels = size, channels
        try:
            out = entry.score(probe, probe_reference, batch_size=probe.shape[0])
        except Exception as error:  # noqa: BLE001 - try the next input variant
            reasons.append(f"{size or 28}px x{channels}: {type(error).__name__}: {str(error)[:200]}")
            continue
        if out.shape != (probe.shape[0],):
            reasons.append(f"{size or 28}px x{channels}: output shape {tuple(out.shape)}")
            continue
        if not bool(torch.isfinite(out).any()):
            reasons.append(f"{size or 28}px x{channels}: no finite score")
            continue
        # timed on a second pass: the first one pays for lazy initialisation (kernels, weights, caches)
        tick = time.perf_counter()
        entry.score(probe, probe_reference, batch_size=probe.shape[0])
        entry.seconds = (time.perf_counter() - tick) / probe.shape[0]  # probe cost per image, replaced by the run's
        return entry, ""
    return None, "skipped: fails on the benchmark images (" + "; ".join(reasons) + ")"


def orient(entry: MetricEntry) -> np.ndarray:
    """Per-image scores :math:`(N,)` with higher = better; +/-inf clipped to the finite range, NaN to the median.

    Clipping instead of dropping keeps every image in its condition's mean and AUROC, so all metrics
    are compared on the same images (a full-reference score of an unchanged image can be infinite).
    """
    raw = torch.cat(entry.scores).double().numpy()
    values = raw if entry.higher_is_better else -raw
    finite = np.isfinite(values)
    entry.nonfinite = int((~finite).sum())
    if entry.nonfinite:
        low, high = values[finite].min(), values[finite].max()
        values = np.where(np.isposinf(values), high, np.where(np.isneginf(values), low, values))
        values = np.where(np.isnan(values), np.median(values[finite]), values)
    return values


def reference_info() -> dict[str, Any]:
    """Architecture and parameter count of the aligned metrics' reference network (for the report only)."""
    try:
        from qualoader.reference import default_reference

        reference = default_reference()
    except Exception as error:  # noqa: BLE001 - only informative
        return {"available": False, "reason": f"{type(error).__name__}: {str(error)[:200]}"}
    return {
        "available": True,
        "architecture": type(reference).__name__,
        "parameters": sum(p.numel() for p in reference.parameters()),
    }
