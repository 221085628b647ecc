"""Plots of the training benchmark: validation accuracy against steps per arm, and paired TEST differences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: the benchmark runs on machines without a display
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_all"]

_TESTS = (("clean", "clean TEST"), ("train-families", "TEST, training families"), ("held-out", "TEST, held-out families"))


def plot_curves(path: Path, results: dict[str, Any]) -> None:
    """Mean validation accuracy against optimiser steps, one panel per architecture, with 95% t-interval bands over seeds."""
    archs = list(results["archs"])
    figure, axes = plt.subplots(1, len(archs), figsize=(6.5 * len(archs), 5.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for axis, arch in zip(axes[0], archs):
        entry = results["archs"][arch]
        for index, (arm, figures) in enumerate(entry["arms"].items()):
            curve = figures["curve"]
            steps = curve["step"]
            mean = [100 * v for v in curve["mean"]]
            half = [100 * v for v in curve["half_width"]]
            style = {"color": "black", "linewidth": 2.0} if arm == "random" else {"color": cmap(index % 10), "linewidth": 1.2}
            axis.plot(steps, mean, label=f"{arm} ({figures['setting']})" if arm != "random" else "random (baseline)", **style)
            band = ([m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)])
            axis.fill_between(steps, *band, alpha=0.12, color=style["color"])
        axis.axhline(100 * entry["random_final_val"], color="black", linestyle=":", linewidth=0.8)
        # Limits from the means (the first checkpoint excepted): with few seeds a band can span tens of points.
        means = [100 * v for figures in entry["arms"].values() for v in (figures["curve"]["mean"][1:] or figures["curve"]["mean"])]
        axis.set_ylim(max(min(means) - 1.0, 0), min(max(means) + 1.0, 100))
        for budget, step in results["budgets"].items():
            axis.axvline(step, color="grey", linestyle="--", linewidth=0.5)
            axis.text(step, axis.get_ylim()[0], f" {budget} ep", fontsize=7, color="grey", va="bottom")
        axis.set_title(f"{arch}: validation accuracy (mean of {len(entry['seeds'])} seeds, 95% CI)")
        axis.set_xlabel("optimiser steps (batch 128)")
        axis.set_ylabel("validation accuracy (%)")
        axis.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=7, loc="lower center", ncol=3)
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_differences(path: Path, results: dict[str, Any]) -> None:
    """Paired difference to the random arm (points) per arm and TEST set at the longest budget, with 95% t-intervals."""
    archs = list(results["archs"])
    budget = results["longest_budget"]
    figure, axes = plt.subplots(1, len(archs), figsize=(6.5 * len(archs), 4.2), squeeze=False)
    for axis, arch in zip(axes[0], archs):
        arms = [arm for arm in results["archs"][arch]["arms"] if arm != "random"]
        for offset, (test, label) in zip((-0.25, 0.0, 0.25), _TESTS):
            xs, ys, errors = [], [], [[], []]
            for position, arm in enumerate(arms):
                diff = results["archs"][arch]["arms"][arm]["cells"][budget][test]["diff"]
                estimate = 100 * diff["estimate"]
                low = 100 * diff["low"] if diff["low"] is not None else estimate
                high = 100 * diff["high"] if diff["high"] is not None else estimate
                xs.append(position + offset)
                ys.append(estimate)
                errors[0].append(estimate - low)
                errors[1].append(high - estimate)
            axis.errorbar(xs, ys, yerr=errors, fmt="o", capsize=3, markersize=4, label=label)
        axis.axhline(0, color="black", linewidth=0.8)
        axis.axhline(2, color="grey", linestyle=":", linewidth=0.8)
        axis.set_xticks(range(len(arms)))
        axis.set_xticklabels(arms, rotation=30, ha="right", fontsize=8)
        axis.set_ylabel("accuracy minus random arm (points)")
        axis.set_title(f"{arch}: paired difference at {budget} epochs' steps (95% CI)")
        axis.grid(alpha=0.3, axis="y")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_all(folder: Path, results: dict[str, Any]) -> None:
    """Write ``curves.png`` and ``differences.png`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    plot_curves(folder / "curves.png", results)
    plot_differences(folder / "differences.png", results)
