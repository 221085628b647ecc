"""Statistics of the alignment benchmark: correlations per condition, per-image AUROC, bootstrap CIs, comparisons.

Every statistic comes from :mod:`qualoader.stats` (rank correlations, AUROC, percentile bootstrap);
this module only decides what is correlated with what and how the seeds are derived.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from benchmarks.alignment.candidates import MetricEntry
from qualoader.stats import auroc, bootstrap_auroc, bootstrap_ci, bootstrap_ci_difference, kendall_tau_b, pearson, spearman

__all__ = ["STATISTICS", "analyse", "ci_dict", "compare", "fmt_ci", "fmt_number", "mean", "stable_seed", "summarise"]

STATISTICS: dict[str, Callable[[Any, Any], np.ndarray]] = {"spearman": spearman, "pearson": pearson, "kendall": kendall_tau_b}


def ci_dict(interval: Any) -> dict[str, float | None]:
    """A :class:`qualoader.stats.ConfidenceInterval` as JSON: rounded to 4 digits, undefined values as ``None`` (never NaN)."""

    def clean(value: float) -> float | None:
        return None if not math.isfinite(value) else round(float(value), 4)

    return {"estimate": clean(interval.estimate), "low": clean(interval.low), "high": clean(interval.high)}


def stable_seed(seed: int, *parts: str) -> int:
    """A bootstrap seed derived from ``seed`` and names (metric, model, family).

    Not ``hash()``: Python salts string hashes per process, and each figure's resamples must not
    depend on which other metrics ran before it.
    """
    value = seed
    for part in parts:
        for char in part:
            value = (value * 131 + ord(char)) % 2_147_483_647
    return value


def mean(values: Sequence[float | None]) -> float | None:
    """Mean of the defined values, rounded to 4 digits; ``None`` when none is defined."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return round(float(np.mean(finite)), 4) if finite else None


def analyse(
    args: Any,
    conditions: list[tuple[str, int]],
    family_of: list[str],
    condition_index: np.ndarray,
    position: np.ndarray,
    outcome: dict[str, np.ndarray],
    oriented: dict[str, np.ndarray],
    limits: dict[str, int],
    entries: list[MetricEntry],
) -> dict[str, Any]:
    """Every figure of a run.

    Args:
        args: the parsed command line (``seed``, ``n_boot``, ``n_boot_auroc`` are read).
        conditions: ``(corruption, severity)`` per condition, clean first.
        family_of: family of each condition (``"clean"`` for the first).
        condition_index: condition of each image row, :math:`(M,)` with ``M = N * len(conditions)``.
        position: index of each row's image inside its condition, :math:`(M,)`.
        outcome: per task model, correctness per row :math:`(M,)`.
        oriented: per metric, oriented scores of the rows it scored (the first ``limits[name]`` of each condition).
        limits: per metric, images scored per condition.
        entries: the metrics (kind, group, reference use).
    """
    n_conditions = len(conditions)

    def per_condition(values: np.ndarray, index: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=values, minlength=n_conditions) / np.bincount(index, minlength=n_conditions)

    accuracy = {name: per_condition(value, condition_index) for name, value in outcome.items()}
    mean_quality = {name: per_condition(value, condition_index[position < limits[name]]) for name, value in oriented.items()}
    groups = {"all": np.arange(n_conditions)}
    # Each family keeps the clean condition: it is the severity-0 end of every corruption, and without
    # it a family's correlation would rest on its few corrupted conditions only.
    for family in sorted(set(family_of) - {"clean"}):
        groups[family] = np.array([i for i, f in enumerate(family_of) if f in (family, "clean")])
    correlations: dict[str, Any] = {}
    image_auroc: dict[str, Any] = {}
    for metric_name, scores in oriented.items():
        scored = position < limits[metric_name]
        metric_condition = condition_index[scored]
        correlations[metric_name], image_auroc[metric_name] = {}, {}
        for model_name in outcome:
            correlations[metric_name][model_name], image_auroc[metric_name][model_name] = {}, {}
            for group_name, members in groups.items():
                seed = stable_seed(args.seed, metric_name, model_name, group_name)
                x, y = mean_quality[metric_name][members], accuracy[model_name][members]
                # One generator per statistic, all from the same seed: Spearman, Pearson and Kendall see the same resamples.
                correlations[metric_name][model_name][group_name] = {
                    stat_name: ci_dict(bootstrap_ci(stat, x, y, n_boot=args.n_boot, generator=torch.Generator().manual_seed(seed)))
                    for stat_name, stat in STATISTICS.items()
                } | {"n_conditions": int(members.size)}
                correct = outcome[model_name][scored]
                mask = np.isin(metric_condition, members)
                pooled = bootstrap_auroc(
                    scores[mask], correct[mask], n_boot=args.n_boot_auroc, generator=torch.Generator().manual_seed(seed)
                )
                # AUROC is undefined in a condition where a model is always (or never) right: those are left out.
                within = [auroc(scores[metric_condition == c], correct[metric_condition == c]) for c in members]
                within = [value for value in within if math.isfinite(value)]
                image_auroc[metric_name][model_name][group_name] = {
                    "pooled": ci_dict(pooled),
                    "within_condition_mean": round(float(np.mean(within)), 4) if within else None,
                    "n_images": int(mask.sum()),
                }
    summary = summarise(correlations, image_auroc, entries, list(outcome), list(groups))
    comparison = compare(args, summary, mean_quality, accuracy)
    return {
        "conditions": [
            {
                "corruption": name,
                "severity": severity,
                "family": family_of[i],
                "accuracy": {m: round(float(accuracy[m][i]), 4) for m in outcome},
                "mean_quality": {m: float(mean_quality[m][i]) for m in oriented},
            }
            for i, (name, severity) in enumerate(conditions)
        ],
        "families": list(groups),
        "correlations": correlations,
        "auroc": image_auroc,
        "summary": summary,
        "comparison": comparison,
    }


def summarise(
    correlations: dict, image_auroc: dict, entries: list[MetricEntry], models: list[str], groups: list[str]
) -> list[dict[str, Any]]:
    """One row per metric: mean over task models of each figure, sorted by mean |Spearman| (all conditions).

    Sorted by the absolute value so that a metric oriented the wrong way (a strong negative
    correlation) still shows how much it knows.
    """
    rows = []
    kinds = {entry.name: entry for entry in entries}
    for metric_name, per_model in correlations.items():
        entry = kinds[metric_name]
        row: dict[str, Any] = {
            "metric": metric_name,
            "kind": entry.kind,
            "group": entry.group,
            "requires_reference": entry.requires_reference,
        }
        for stat in STATISTICS:
            values = [per_model[m]["all"][stat]["estimate"] for m in models]
            row[f"mean_{stat}"] = mean(values)
        row["mean_abs_spearman"] = mean(
            [abs(v) if v is not None else None for v in (per_model[m]["all"]["spearman"]["estimate"] for m in models)]
        )
        row["mean_auroc"] = mean([image_auroc[metric_name][m]["all"]["pooled"]["estimate"] for m in models])
        row["mean_auroc_within"] = mean([image_auroc[metric_name][m]["all"]["within_condition_mean"] for m in models])
        row["family_mean_spearman"] = {g: mean([per_model[m][g]["spearman"]["estimate"] for m in models]) for g in groups}
        rows.append(row)
    rows.sort(key=lambda r: -(r["mean_abs_spearman"] if r["mean_abs_spearman"] is not None else -1.0))
    return rows


def compare(args: Any, summary: list[dict], mean_quality: dict, accuracy: dict) -> list[dict[str, Any]]:
    """Best aligned metric vs best conventional one, by mean Spearman: overall, and within
    full-reference and no-reference metrics (the fair pairings: same information at hand).

    For each task model, a paired bootstrap over conditions gives the CI of the Spearman difference.
    """

    def best(rows: list[dict]) -> str | None:
        rows = [r for r in rows if r["mean_spearman"] is not None]
        return max(rows, key=lambda r: r["mean_spearman"])["metric"] if rows else None

    scopes = {
        "(any)": lambda r: True,
        "full-reference": lambda r: r["requires_reference"],
        "no-reference": lambda r: not r["requires_reference"],
    }
    pairs = {
        scope: (
            best([r for r in summary if r["kind"] == "aligned" and keep(r)]),
            best([r for r in summary if r["kind"] == "conventional" and keep(r)]),
        )
        for scope, keep in scopes.items()
    }
    comparisons = []
    for label, (aligned, rival) in pairs.items():
        if aligned is None or rival is None:
            continue
        differences = {}
        for model_name, acc in accuracy.items():
            interval = bootstrap_ci_difference(
                spearman, mean_quality[aligned], mean_quality[rival], acc, n_boot=args.n_boot,
                generator=torch.Generator().manual_seed(stable_seed(args.seed, "difference", label, model_name)),
            )
            differences[model_name] = ci_dict(interval)
        comparisons.append({"aligned": aligned, "rival": rival, "scope": label, "spearman_difference": differences})
    return comparisons


def fmt_number(value: float | None, digits: int = 3) -> str:
    """``+0.897`` (signed, ``digits`` decimals), or ``n/a`` for a figure that is undefined."""
    return "n/a" if value is None else f"{value:+.{digits}f}"


def fmt_ci(ci: dict[str, float | None], digits: int = 3) -> str:
    """``+0.897 [+0.84, +0.93]`` (``digits`` for the estimate); the estimate alone without an interval; ``n/a`` without either."""
    if ci["estimate"] is None:
        return "n/a"
    if ci["low"] is None:
        return f"{ci['estimate']:+.{digits}f}"
    return f"{ci['estimate']:+.{digits}f} [{ci['low']:+.2f}, {ci['high']:+.2f}]"
