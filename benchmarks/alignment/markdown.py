"""Markdown tables of the alignment benchmark, with the leave-one-family-out figures beside the in-family ones."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.alignment import generalisation
from benchmarks.alignment.analysis import fmt_ci, fmt_number
from benchmarks.alignment.options import parse_args

__all__ = ["LOFO_CANDIDATES", "load_lofo", "render_lofo", "render_markdown", "reproduce_command"]

#: Which candidate of the leave-one-family-out run measures each aligned metric of this benchmark.
#: ``task-guided`` -> the shipped recipe (a linear head on image statistics plus the reference network's
#: response) refitted without the held-out family; the shipped head itself saw every family, so its family
#: figures would not be out-of-family. ``confidence`` (default measure: max probability) and
#: ``neg-bn-shift`` (bn-shift oriented higher = better, as here) are training-free, so every family is unseen.
LOFO_CANDIDATES: dict[str, str] = {"task-guided": "head:both:linear", "confidence": "confidence", "bn-shift": "neg-bn-shift"}


def reproduce_command(program: str, config: dict[str, Any], parse_args: Callable[[Sequence[str]], Any]) -> str:
    """The shortest ``python -m <program> ...`` that reproduces a run's ``config`` (options that differ from their defaults).

    ``out`` and the report options are left out: they move files, not figures. A list of lists
    (``--hidden`` of the generalisation run) is written as widths joined by ``x``, or ``linear``.
    """
    defaults = vars(parse_args(["--quick"] if config.get("quick") else []))
    words = ["python", "-m", program] + (["--quick"] if config.get("quick") else [])
    for key, value in config.items():
        if key in {"quick", "out", "lofo_results", "from_results"} or key not in defaults:
            continue
        if _plain(value) == _plain(defaults[key]):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            words += [flag] if value else []
        elif isinstance(value, list):
            words += [flag] + [("x".join(map(str, v)) or "linear") if isinstance(v, list) else str(v) for v in value]
        else:
            words += [flag, str(value)]
    return " ".join(words)


def _plain(value: Any) -> Any:
    # JSON turns tuples into lists: compare a stored config with fresh defaults in one form
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def load_lofo(path: Path) -> dict[str, Any] | None:
    """The leave-one-family-out results JSON at ``path`` (written by ``python -m benchmarks.generalisation``), or ``None`` if absent."""
    return json.loads(path.read_text()) if path.is_file() else None


def render_lofo(results: dict[str, Any], lofo: dict[str, Any] | None, lofo_path: str) -> list[str]:
    """Markdown lines: per aligned metric present in both runs, in-family Spearman (this run) beside LOFO Spearman.

    Args:
        results: this run's results dictionary.
        lofo: the generalisation run's results dictionary (``None``: the file was not found).
        lofo_path: where ``lofo`` was read, as shown in the report.
    """
    lines = ["", "## In-family vs leave-one-family-out (LOFO) Spearman", ""]
    if lofo is None:
        return lines + [f"No LOFO results at `{lofo_path}`; `python -m benchmarks.generalisation` writes them.", ""]
    present = [row["metric"] for row in results["summary"] if LOFO_CANDIDATES.get(row["metric"]) in lofo["candidates"]]
    families = list(generalisation.FAMILIES)
    in_family = generalisation.IN_FAMILY
    this_models, lofo_models = list(results["task_models"]), list(lofo["task_models"])
    lines += [
        (
            "In-family: Spearman over all conditions of this run, whose corruption families the `task-guided` head was "
            f"fitted on. LOFO (`{lofo_path}`): for each held-out family, the head is refitted without that family's TRAIN "
            "conditions and scored on that family's TEST conditions plus clean; training-free scores (`confidence`, "
            "`bn-shift`) fit nothing, so for them every family is unseen. The LOFO run has its own task models (same "
            "architectures, trained "
            f"{lofo['config']['epochs']} epoch(s) on {lofo['config']['task_train_images']} TRAIN images) and "
            f"{lofo['config']['test_images']} TEST images per condition, so its own in-family figure is shown too: "
            "the drop from it to the LOFO mean is the cost of an unseen family. Mean over the task models; "
            "LOFO mean = mean over the held-out families."
        ),
        "",
        "Reproduce:",
        "",
        "```bash",
        f"{reproduce_command('benchmarks.alignment', results['config'], parse_args)}  # in-family (this run)",
        f"{reproduce_command('benchmarks.generalisation', lofo['config'], generalisation.parse_args)}  # LOFO",
        "```",
        "",
    ]
    if not present:
        return lines + ["No aligned metric of this run is measured by the LOFO run (candidates: "
                        + ", ".join(f"`{name}`" for name in LOFO_CANDIDATES) + ").", ""]
    lines += [
        "| metric | LOFO candidate | in-family Spearman (this run) | in-family (LOFO run) | LOFO mean Spearman | "
        + " | ".join(f"held out: {f}" for f in families) + " |",
        "|---|---|---|---|---|" + "---|" * len(families),
    ]
    rows = {row["metric"]: row for row in results["summary"]}
    for name in present:
        summary = lofo["candidates"][LOFO_CANDIDATES[name]]["summary"]
        lines.append(
            f"| `{name}` | `{LOFO_CANDIDATES[name]}` | {fmt_number(rows[name]['mean_spearman'])} | {fmt_number(summary['in_family'])} | "
            f"**{fmt_number(summary['leave_one_family_out'])}** | " + " | ".join(fmt_number(summary[f]) for f in families) + " |"
        )
    lines += [
        "",
        ("Per task model, with 95% percentile-bootstrap CIs over conditions (a CI of the LOFO mean would need the "
         "per-condition scores of every family at once, which the LOFO results do not keep):"),
        "",
        "| metric | task model | in-family (this run) | in-family (LOFO run) | " + " | ".join(f"held out: {f}" for f in families) + " |",
        "|---|---|---|---|" + "---|" * len(families),
    ]
    for name in present:
        figures = lofo["candidates"][LOFO_CANDIDATES[name]]["figures"]
        for model in this_models:
            this = fmt_ci(results["correlations"][name][model]["all"]["spearman"])
            other = [fmt_ci(figures[g][model]) if model in lofo_models else "n/a" for g in (in_family, *families)]
            lines.append(f"| `{name}` | {model} | {this} | " + " | ".join(other) + " |")
    return lines + [""]


def render_markdown(results: dict[str, Any], lofo: dict[str, Any] | None = None, lofo_path: str | None = None) -> str:
    """The markdown tables of a results dictionary (as written to ``results.md``).

    With ``lofo_path``, a section puts the leave-one-family-out figures of ``lofo`` (the generalisation
    run's results, ``None`` if missing) beside this run's in-family ones.
    """
    models = list(results["task_models"])
    config = results["config"]
    n_conditions = len(results["conditions"])
    lines = [
        "# Alignment benchmark: quality vs task-model accuracy on corrupted Fashion-MNIST",
        "",
        (
            f"{config['images']} test images x {n_conditions} conditions (clean + {n_conditions - 1} corruption x severity), "
            f"severities {config['severities']}; task models {', '.join(models)} trained {config['epochs']} epoch(s) on "
            f"{config['train_images']} TRAIN images. Scores oriented so higher = better. 95% percentile-bootstrap CIs "
            f"({config['n_boot']} resamples of the conditions). Mode: {'quick' if config['quick'] else 'full'}."
        ),
        "",
        "## Per-condition correlation of mean quality with accuracy (sorted by mean |Spearman|)",
        "",
        "| # | metric | kind | "
        + " | ".join(f"Spearman {m}" for m in models)
        + " | mean Pearson | mean Kendall | AUROC pooled | AUROC within |",
        "|---|---|---|" + "---|" * len(models) + "---|---|---|---|",
    ]
    for rank, row in enumerate(results["summary"], 1):
        per_model = results["correlations"][row["metric"]]
        kind = "**aligned**" if row["kind"] == "aligned" else row["group"]
        cells = [fmt_ci(per_model[m]["all"]["spearman"]) for m in models]
        lines.append(
            f"| {rank} | `{row['metric']}` | {kind} | "
            + " | ".join(cells)
            + f" | {fmt_number(row['mean_pearson'])} | {fmt_number(row['mean_kendall'])} | {fmt_number(row['mean_auroc'])} | "
            f"{fmt_number(row['mean_auroc_within'])} |"
        )
    families = [f for f in results["families"] if f != "all"]
    lines += [
        "",
        ("AUROC pooled: per-image AUROC of the score for predicting that a task model is correct, over all images of all "
        "conditions (mean over task models); AUROC within: the same inside each condition, averaged over conditions."),
        "",
        "## Mean Spearman per corruption family (each family plus the clean condition; mean over task models)",
        "",
        "| metric | kind | all | " + " | ".join(families) + " |",
        "|---|---|---|" + "---|" * len(families),
    ]
    for row in results["summary"]:
        fam = row["family_mean_spearman"]
        cells = [fmt_number(fam[f]) for f in ("all", *families)]
        lines.append(f"| `{row['metric']}` | {row['kind']} | " + " | ".join(cells) + " |")
    if lofo_path is not None:
        lines += render_lofo(results, lofo, lofo_path)[:-1]  # the next section starts with its own blank line
    for comparison in results["comparison"]:
        lines += [
            "",
            f"## Best aligned {comparison['scope']} (`{comparison['aligned']}`) minus best conventional {comparison['scope']} "
            f"(`{comparison['rival']}`): Spearman",
            "",
            "Paired bootstrap over conditions; a CI above 0 means the aligned metric tracks accuracy better.",
            "",
            "| task model | difference [95% CI] |",
            "|---|---|",
        ]
        lines += [f"| {m} | {fmt_ci(ci)} |" for m, ci in comparison["spearman_difference"].items()]
    lines += [
        "",
        "## Task models",
        "",
        "| model | architecture | parameters | clean accuracy | mean accuracy (corrupted) |",
        "|---|---|---|---|---|",
    ]
    for m, recipe in results["task_models"].items():
        accuracies = [c["accuracy"][m] for c in results["conditions"]]
        lines.append(
            f"| {m} | {recipe['summary']} | {recipe['parameters']} | {accuracies[0]:.3f} | "
            f"{np.mean(accuracies[1:]) if len(accuracies) > 1 else float('nan'):.3f} |"
        )
    ref = results["reference_network"]
    described = (
        f"{ref['architecture']} ({ref['parameters']} parameters)" if ref.get("available") else f"unavailable ({ref.get('reason', '')})"
    )
    lines += ["", f"Reference network of the aligned metrics: {described}; the task models above are separate networks, trained here."]
    lines += [
        "",
        "## Metrics",
        "",
        "| metric | kind | input | images / condition | ms / image | non-finite scores |",
        "|---|---|---|---|---|---|",
    ]
    for name, info in results["metrics"].items():
        lines.append(
            f"| `{name}` | {info['group']} | {info['input']} | {info['images_per_condition']} | {info['ms_per_image']:.3f} | "
            f"{info['nonfinite_scores']} |"
        )
    lines += [
        "",
        ("Expensive metrics score the first N images of every condition (the images are a seeded random subset of the "
        "test set), so that each metric costs at most about `--metric-seconds`; their condition means and AUROCs use those "
        "images only. pyiqa metrics see images bilinearly upsampled to `--iqa-size` px (grey repeated to RGB where needed); "
        "metrics with a minimum size (5-scale MS-SSIM) see `--large-size` px."),
    ]
    if results["skipped"]:
        lines += ["", "Skipped metrics:", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in sorted(results["skipped"].items())]
    lines += ["", f"Total run time: {results.get('seconds', 'n/a')} s.", ""]
    return "\n".join(lines)
