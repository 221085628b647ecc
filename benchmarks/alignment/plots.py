"""PNG figures of the alignment benchmark: per-condition scatter, per-family histograms, the Spearman summary.

:mod:`qualoader.report.plots` draws one metric's score distribution over a dataset; these figures
are different (one panel per task model, colours per corruption family), so they are drawn here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.alignment.analysis import fmt_ci

__all__ = ["oriented_label", "plot_all", "slug"]


def _pyplot() -> Any:
    # Agg before pyplot is imported: the benchmark runs headless (CI, ssh) and must never open a window.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(
    out: Path, results: dict[str, Any], family_of: list[str], condition_index: dict[str, np.ndarray], oriented: dict[str, np.ndarray]
) -> None:
    """Write ``out/plots/scatter_<metric>.png``, ``hist_<metric>.png`` and ``summary_spearman.png``.

    Args:
        out: the run's output folder.
        results: the results dictionary of the run.
        family_of: family of each condition.
        condition_index: per metric, the condition of each scored image :math:`(M,)`.
        oriented: per metric, oriented per-image scores :math:`(M,)`.
    """
    plt = _pyplot()
    plot_dir = out / "plots"
    plot_dir.mkdir(exist_ok=True)
    models = list(results["task_models"])
    families = sorted(set(family_of))
    colours = {family: plt.get_cmap("tab10")(i) for i, family in enumerate(families)}
    for name, scores in oriented.items():
        image_family = np.asarray(family_of)[condition_index[name]]
        quality = np.array([c["mean_quality"][name] for c in results["conditions"]])
        figure, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.6), squeeze=False)
        for axis, model_name in zip(axes[0], models):
            accuracy = np.array([c["accuracy"][model_name] for c in results["conditions"]])
            for family in families:
                chosen = np.array([f == family for f in family_of])
                axis.scatter(quality[chosen], accuracy[chosen], s=18, color=colours[family], label=family)
            rho = results["correlations"][name][model_name]["all"]["spearman"]
            axis.set_title(f"{model_name}: Spearman {fmt_ci(rho)}", fontsize=8)
            axis.set_xlabel(f"mean {oriented_label(name, results)}", fontsize=8)
            axis.set_ylabel("accuracy", fontsize=8)
        axes[0][0].legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(plot_dir / f"scatter_{slug(name)}.png", dpi=90)
        plt.close(figure)

        figure, axis = plt.subplots(figsize=(5, 3.4))
        # shared bin edges so the families' histograms are comparable
        bins = np.histogram_bin_edges(scores, bins=40)
        for family in families:
            axis.hist(scores[image_family == family], bins=bins, density=True, histtype="step", color=colours[family], label=family)
        axis.set_xlabel(oriented_label(name, results), fontsize=8)
        axis.set_ylabel("density", fontsize=8)
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(plot_dir / f"hist_{slug(name)}.png", dpi=90)
        plt.close(figure)

    rows = results["summary"]
    if rows:
        figure, axis = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.2))
        # reversed so the best metric (first row) is drawn at the top of the bar chart
        values = [r["mean_spearman"] if r["mean_spearman"] is not None else 0.0 for r in rows][::-1]
        labels = [r["metric"] for r in rows][::-1]
        axis.barh(labels, values, color=["tab:red" if r["kind"] == "aligned" else "tab:gray" for r in rows][::-1])
        axis.set_xlabel("mean Spearman (quality vs accuracy, over task models); red = aligned", fontsize=8)
        axis.tick_params(labelsize=7)
        figure.tight_layout()
        figure.savefig(plot_dir / "summary_spearman.png", dpi=90)
        plt.close(figure)


def oriented_label(name: str, results: dict[str, Any]) -> str:
    """Axis label of a metric's oriented score (a minus sign where the raw score was negated)."""
    sign = "" if results["metrics"][name]["higher_is_better"] else "-"
    return f"{sign}{name} (oriented: higher = better)"


def slug(name: str) -> str:
    """``name`` made safe for a file name (``pyiqa:gmsd`` -> ``pyiqa_gmsd``)."""
    return "".join(char if char.isalnum() or char in "-_" else "_" for char in name)
