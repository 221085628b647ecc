"""Alignment benchmark: does image quality predict the accuracy of DNNs the metric never saw?

Real Fashion-MNIST test images are corrupted by every corruption of :mod:`qualoader.corruptions` at
every severity (plus the clean images). Three task classifiers of different architectures (an MLP,
a small CNN with BatchNorm, a wider CNN without BatchNorm; :mod:`alignment_models`), trained here on
the clean TRAIN split with fixed seeds and distinct from the reference network of the aligned
metrics, classify every image. Every metric scores every image: conventional IQA (our PSNR / SSIM /
MS-SSIM, pyiqa's weight-free metrics), our classical no-reference measures, and every aligned metric.
Scores are oriented so that higher = better quality (``higher_is_better``) before any statistic.

Statistics (:mod:`qualoader.stats`):
  * per condition (corruption x severity, plus clean): mean quality vs each task model's accuracy ->
    Spearman, Pearson, Kendall tau-b, each with a percentile-bootstrap 95% CI (resampling conditions);
  * per image: AUROC of the score for predicting whether a task model is correct, pooled over all
    conditions (with a bootstrap CI over images) and within each condition (averaged);
  * all of the above for every corruption family (noise / blur / digital / weather), where each
    family's analysis also contains the clean condition (the severity-0 end of each corruption).

pyiqa's metrics (and any metric that rejects 28x28 input) are given images bilinearly upsampled to
``--iqa-size`` pixels (default 64), the same for image and reference; metrics that still fail are
skipped with the reason recorded. Nothing stops on one failing metric.

Usage::

    python -m benchmarks.alignment --quick            # < 5 min, writes benchmarks/results/alignment
    python -m benchmarks.alignment --out DIR          # full mode, < 30 min on 2 CPU cores

(from the repository root). The default corruptions are the 17 of ImageNet-C; ``--with-extra`` adds
the ``extra`` family (degradations outside ImageNet-C). Leave-one-family-out figures of the aligned
no-reference scores come from ``python -m benchmarks.generalisation`` (``GENERALISATION_RESULTS.md``).

Outputs in ``--out``: ``results.json`` (every figure), ``results.md`` (tables), ``scores.npz``
(per-image oriented scores and correctness) and PNG plots; trained task models are cached in
``--out/models`` so re-runs skip training.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.alignment_models import TASK_MODELS, load_or_train, predict_correct
from qualoader.stats import (
    auroc,
    bootstrap_auroc,
    bootstrap_ci,
    bootstrap_ci_difference,
    kendall_tau_b,
    pearson,
    spearman,
)

ALIGNED_NAMES = frozenset({"bn-shift", "feature-distance", "task-guided", "zeroshot"})
PYIQA_WEIGHT_FREE = ("fsim", "vif", "gmsd", "nlpd", "piqe", "entropy")
CONVENTIONAL_FR = ("psnr", "ssim", "ms-ssim")
STATISTICS: dict[str, Callable[[Any, Any], np.ndarray]] = {"spearman": spearman, "pearson": pearson, "kendall": kendall_tau_b}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "alignment"
INSTALL_HINT = (
    "The alignment benchmark needs the real Fashion-MNIST files. Install them with\n"
    "    sudo apt-get install dataset-fashion-mnist\n"
    "(Debian/Ubuntu; puts them in /usr/share/datasets/fashion-mnist) or set QUALOADER_FASHION_MNIST\n"
    "to a folder holding t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], train-*[.gz]."
)


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


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _load_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from qualoader.datasets import load_fashion_mnist

    try:
        train_images, train_labels = load_fashion_mnist("train")
        test_images, test_labels = load_fashion_mnist("test")
    except FileNotFoundError as error:
        raise SystemExit(f"{INSTALL_HINT}\n({error})") from error
    return train_images, train_labels, test_images, test_labels


def _load_corruptions() -> tuple[Callable[..., Tensor], list[str], dict[str, str]]:
    try:
        from qualoader.corruptions import CORRUPTION_FAMILIES, corrupt, list_corruptions
    except ImportError as error:
        raise SystemExit(f"the benchmark needs qualoader.corruptions (corrupt, list_corruptions, CORRUPTION_FAMILIES): {error}") from error
    return corrupt, list(list_corruptions()), dict(CORRUPTION_FAMILIES)


def _candidate_names(only: Sequence[str] | None) -> list[tuple[str, str, str]]:
    """(create name, kind, group) of every metric to try, from the registry (aligned ones last)."""
    from qualoader.metrics import list_metrics, metric_info

    try:  # make sure the aligned metrics are registered even if the package does not import them yet
        import qualoader.metrics.aligned  # noqa: F401
    except ImportError as error:
        _log(f"qualoader.metrics.aligned not importable: {error}")
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


def _build(
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
        tick = time.perf_counter()
        entry.score(probe, probe_reference, batch_size=probe.shape[0])
        entry.seconds = (time.perf_counter() - tick) / probe.shape[0]  # probe cost per image, replaced below
        return entry, ""
    return None, "skipped: fails on the benchmark images (" + "; ".join(reasons) + ")"


def _orient(entry: MetricEntry) -> np.ndarray:
    """Per-image scores with higher = better; +/-inf clipped to the finite range, NaN to the median."""
    raw = torch.cat(entry.scores).double().numpy()
    values = raw if entry.higher_is_better else -raw
    finite = np.isfinite(values)
    entry.nonfinite = int((~finite).sum())
    if entry.nonfinite:
        low, high = values[finite].min(), values[finite].max()
        values = np.where(np.isposinf(values), high, np.where(np.isneginf(values), low, values))
        values = np.where(np.isnan(values), np.median(values[finite]), values)
    return values


def _ci_dict(interval: Any) -> dict[str, float | None]:
    def clean(value: float) -> float | None:
        return None if not math.isfinite(value) else round(float(value), 4)

    return {"estimate": clean(interval.estimate), "low": clean(interval.low), "high": clean(interval.high)}


def _conditions(corruptions: Sequence[str], severities: Sequence[int]) -> list[tuple[str, int]]:
    return [("clean", 0)] + [(name, severity) for name in corruptions for severity in severities]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark and write the outputs; returns the results dictionary."""
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    corrupt, all_corruptions, families = _load_corruptions()
    train_images, train_labels, test_images, test_labels = _load_data()
    corruptions = args.corruptions or [name for name in all_corruptions if args.with_extra or families.get(name) != "extra"]
    unknown = sorted(set(corruptions) - set(all_corruptions))
    if unknown:
        raise SystemExit(f"--corruptions should name corruptions of the suite {all_corruptions}, but got unknown {unknown}")
    conditions = _conditions(corruptions, args.severities)
    family_of = ["clean"] + [families.get(name, "other") for name, _ in conditions[1:]]

    subset = torch.randperm(test_images.shape[0], generator=torch.Generator().manual_seed(args.seed))[: args.images]
    clean, labels = test_images[subset].float().div_(255.0), test_labels[subset]
    train_subset = torch.randperm(train_images.shape[0], generator=torch.Generator().manual_seed(args.seed + 1))[: args.train_images]

    models, recipes = {}, {}
    for index, name in enumerate(args.models):
        model, recipe = load_or_train(
            name, train_images[train_subset], train_labels[train_subset], epochs=args.epochs, seed=args.seed + 100 * index,
            cache_dir=out / "models", log=_log,
        )
        models[name], recipes[name] = model, recipe
    reference_info = _reference_info()

    probe_index = torch.arange(min(64, clean.shape[0]))
    probe_reference = clean[probe_index]
    probe = corrupt(probe_reference, corruptions[0], max(args.severities), generator=torch.Generator().manual_seed(0)).clamp(0.0, 1.0)
    entries: list[MetricEntry] = []
    skipped: dict[str, str] = {}
    for name, kind, group in _candidate_names(args.metrics):
        entry, reason = _build(name, kind, group, probe, probe_reference, args.iqa_size, args.large_size)
        if entry is None:
            skipped[name] = reason
            _log(f"metric {name}: {reason}")
            continue
        # Expensive metrics score only the first `limit` images of every condition (a seeded random subset).
        affordable = int(args.metric_seconds / max(entry.seconds * len(conditions), 1e-9))
        entry.limit = max(min(clean.shape[0], affordable), min(args.min_images, clean.shape[0]))
        entry.seconds = 0.0
        entries.append(entry)
        _log(
            f"metric {name}: ok ({entry.group}, input {entry.size or 28}px x{entry.channels}, "
            f"higher_is_better={entry.higher_is_better}, {entry.limit} images per condition)"
        )

    correct: dict[str, list[Tensor]] = {name: [] for name in models}
    condition_of: list[Tensor] = []
    for index, (name, severity) in enumerate(conditions):
        if name == "clean":
            images = clean
        else:
            generator = torch.Generator().manual_seed(args.seed * 100_003 + index)
            images = corrupt(clean, name, severity, generator=generator).float().clamp(0.0, 1.0)
        condition_of.append(torch.full((images.shape[0],), index))
        for model_name, model in models.items():
            correct[model_name].append(predict_correct(model, images, labels))
        for entry in list(entries):
            tick = time.perf_counter()
            try:
                entry.scores.append(entry.score(images[: entry.limit], clean[: entry.limit], args.batch_size))
            except Exception as error:  # noqa: BLE001 - one metric must not stop the run
                skipped[entry.name] = f"skipped: failed on {name} severity {severity} ({type(error).__name__}: {str(error)[:200]})"
                entries.remove(entry)
                _log(f"metric {entry.name}: {skipped[entry.name]}")
                continue
            entry.seconds += time.perf_counter() - tick
            entry.scored += entry.limit
        accuracy = ", ".join(f"{m}={float(correct[m][-1].float().mean()):.3f}" for m in models)
        _log(f"condition {index + 1}/{len(conditions)} {name} s{severity}: {accuracy}")

    condition_index = torch.cat(condition_of).numpy()
    position = np.tile(np.arange(clean.shape[0]), len(conditions))
    outcome = {name: torch.cat(parts).numpy() for name, parts in correct.items()}
    oriented = {entry.name: _orient(entry) for entry in entries}
    limits = {entry.name: entry.limit for entry in entries}
    results = _analyse(args, conditions, family_of, condition_index, position, outcome, oriented, limits, entries)
    results.update(
        {
            "config": {
                key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
            },
            "environment": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
            "task_models": recipes,
            "reference_network": reference_info,
            "metrics": {
                entry.name: {
                    "kind": entry.kind,
                    "group": entry.group,
                    "higher_is_better": entry.higher_is_better,
                    "requires_reference": entry.requires_reference,
                    "input": f"{entry.size or 28}px x{entry.channels}ch",
                    "images_per_condition": entry.limit,
                    "ms_per_image": round(1000 * entry.seconds / max(entry.scored, 1), 4),
                    "nonfinite_scores": entry.nonfinite,
                }
                for entry in entries
            },
            "skipped": skipped,
        }
    )
    np.savez_compressed(
        out / "scores.npz", condition=condition_index, labels=labels.numpy(),
        **{f"correct/{name}": value for name, value in outcome.items()},
        **{f"score/{name}": value.astype(np.float32) for name, value in oriented.items()},
    )
    _plots(out, results, family_of, {name: condition_index[position < limits[name]] for name in oriented}, oriented)
    results["seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(render_markdown(results))
    _log(f"wrote {out / 'results.json'} and {out / 'results.md'} in {results['seconds']} s")
    return results


def _reference_info() -> dict[str, Any]:
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


def _analyse(
    args: argparse.Namespace,
    conditions: list[tuple[str, int]],
    family_of: list[str],
    condition_index: np.ndarray,
    position: np.ndarray,
    outcome: dict[str, np.ndarray],
    oriented: dict[str, np.ndarray],
    limits: dict[str, int],
    entries: list[MetricEntry],
) -> dict[str, Any]:
    n_conditions = len(conditions)

    def per_condition(values: np.ndarray, index: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=values, minlength=n_conditions) / np.bincount(index, minlength=n_conditions)

    accuracy = {name: per_condition(value, condition_index) for name, value in outcome.items()}
    mean_quality = {name: per_condition(value, condition_index[position < limits[name]]) for name, value in oriented.items()}
    groups = {"all": np.arange(n_conditions)}
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
                seed = _stable_seed(args.seed, metric_name, model_name, group_name)
                x, y = mean_quality[metric_name][members], accuracy[model_name][members]
                correlations[metric_name][model_name][group_name] = {
                    stat_name: _ci_dict(bootstrap_ci(stat, x, y, n_boot=args.n_boot, generator=torch.Generator().manual_seed(seed)))
                    for stat_name, stat in STATISTICS.items()
                } | {"n_conditions": int(members.size)}
                correct = outcome[model_name][scored]
                mask = np.isin(metric_condition, members)
                pooled = bootstrap_auroc(
                    scores[mask], correct[mask], n_boot=args.n_boot_auroc, generator=torch.Generator().manual_seed(seed)
                )
                within = [auroc(scores[metric_condition == c], correct[metric_condition == c]) for c in members]
                within = [value for value in within if math.isfinite(value)]
                image_auroc[metric_name][model_name][group_name] = {
                    "pooled": _ci_dict(pooled),
                    "within_condition_mean": round(float(np.mean(within)), 4) if within else None,
                    "n_images": int(mask.sum()),
                }
    summary = _summarise(correlations, image_auroc, entries, list(outcome), list(groups))
    comparison = _compare(args, summary, mean_quality, accuracy)
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


def _stable_seed(seed: int, *parts: str) -> int:
    value = seed
    for part in parts:
        for char in part:
            value = (value * 131 + ord(char)) % 2_147_483_647
    return value


def _summarise(
    correlations: dict, image_auroc: dict, entries: list[MetricEntry], models: list[str], groups: list[str]
) -> list[dict[str, Any]]:
    """One row per metric: mean over task models of each figure, sorted by mean |Spearman| (all conditions)."""
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
            row[f"mean_{stat}"] = _mean(values)
        row["mean_abs_spearman"] = _mean(
            [abs(v) if v is not None else None for v in (per_model[m]["all"]["spearman"]["estimate"] for m in models)]
        )
        row["mean_auroc"] = _mean([image_auroc[metric_name][m]["all"]["pooled"]["estimate"] for m in models])
        row["mean_auroc_within"] = _mean([image_auroc[metric_name][m]["all"]["within_condition_mean"] for m in models])
        row["family_mean_spearman"] = {g: _mean([per_model[m][g]["spearman"]["estimate"] for m in models]) for g in groups}
        rows.append(row)
    rows.sort(key=lambda r: -(r["mean_abs_spearman"] if r["mean_abs_spearman"] is not None else -1.0))
    return rows


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return round(float(np.mean(finite)), 4) if finite else None


def _compare(args: argparse.Namespace, summary: list[dict], mean_quality: dict, accuracy: dict) -> list[dict[str, Any]]:
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
                generator=torch.Generator().manual_seed(_stable_seed(args.seed, "difference", label, model_name)),
            )
            differences[model_name] = _ci_dict(interval)
        comparisons.append({"aligned": aligned, "rival": rival, "scope": label, "spearman_difference": differences})
    return comparisons


def _fmt(ci: dict[str, float | None]) -> str:
    if ci["estimate"] is None:
        return "n/a"
    if ci["low"] is None:
        return f"{ci['estimate']:+.3f}"
    return f"{ci['estimate']:+.3f} [{ci['low']:+.2f}, {ci['high']:+.2f}]"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def render_markdown(results: dict[str, Any]) -> str:
    """The markdown tables of a results dictionary (as written to ``results.md``)."""
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
        cells = [_fmt(per_model[m]["all"]["spearman"]) for m in models]
        lines.append(
            f"| {rank} | `{row['metric']}` | {kind} | "
            + " | ".join(cells)
            + f" | {_num(row['mean_pearson'])} | {_num(row['mean_kendall'])} | {_num(row['mean_auroc'])} | "
            f"{_num(row['mean_auroc_within'])} |"
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
        lines.append(f"| `{row['metric']}` | {row['kind']} | {_num(fam['all'])} | " + " | ".join(_num(fam[f]) for f in families) + " |")
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
        lines += [f"| {m} | {_fmt(ci)} |" for m, ci in comparison["spearman_difference"].items()]
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


def _plots(
    out: Path, results: dict[str, Any], family_of: list[str], condition_index: dict[str, np.ndarray], oriented: dict[str, np.ndarray]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
            axis.set_title(f"{model_name}: Spearman {_fmt(rho)}", fontsize=8)
            axis.set_xlabel(f"mean {_oriented_label(name, results)}", fontsize=8)
            axis.set_ylabel("accuracy", fontsize=8)
        axes[0][0].legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(plot_dir / f"scatter_{_slug(name)}.png", dpi=90)
        plt.close(figure)

        figure, axis = plt.subplots(figsize=(5, 3.4))
        bins = np.histogram_bin_edges(scores, bins=40)
        for family in families:
            axis.hist(scores[image_family == family], bins=bins, density=True, histtype="step", color=colours[family], label=family)
        axis.set_xlabel(_oriented_label(name, results), fontsize=8)
        axis.set_ylabel("density", fontsize=8)
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(plot_dir / f"hist_{_slug(name)}.png", dpi=90)
        plt.close(figure)

    rows = results["summary"]
    if rows:
        figure, axis = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.2))
        values = [r["mean_spearman"] if r["mean_spearman"] is not None else 0.0 for r in rows][::-1]
        labels = [r["metric"] for r in rows][::-1]
        axis.barh(labels, values, color=["tab:red" if r["kind"] == "aligned" else "tab:gray" for r in rows][::-1])
        axis.set_xlabel("mean Spearman (quality vs accuracy, over task models); red = aligned", fontsize=8)
        axis.tick_params(labelsize=7)
        figure.tight_layout()
        figure.savefig(plot_dir / "summary_spearman.png", dpi=90)
        plt.close(figure)


def _oriented_label(name: str, results: dict[str, Any]) -> str:
    sign = "" if results["metrics"][name]["higher_is_better"] else "-"
    return f"{sign}{name} (oriented: higher = better)"


def _slug(name: str) -> str:
    return "".join(char if char.isalnum() or char in "-_" else "_" for char in name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run (< 5 min): fewer images, severities 1 3 5, 1 epoch")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--images", type=int, default=None, help="test images per condition (default: 2000, quick: 1000)")
    parser.add_argument("--train-images", type=int, default=None, help="TRAIN images for the task models (default: 60000, quick: 20000)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the task models (default: 2, quick: 1)")
    parser.add_argument("--severities", type=int, nargs="+", default=None, help="severities (default: 1 2 3 4 5, quick: 1 3 5)")
    parser.add_argument("--corruptions", nargs="+", default=None, help="corruption names (default: the whole suite)")
    parser.add_argument("--with-extra", action="store_true", help="also the 'extra' family (degradations outside ImageNet-C)")
    parser.add_argument("--metrics", nargs="+", default=None, help="only these metrics (default: every candidate)")
    parser.add_argument("--models", nargs="+", default=list(TASK_MODELS), choices=list(TASK_MODELS), help="task models (default: all)")
    parser.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples for the correlations (default: 1000, quick: 300)")
    parser.add_argument(
        "--n-boot-auroc", type=int, default=None, help="bootstrap resamples for the pooled AUROC (default: 200, quick: 100)"
    )
    parser.add_argument("--iqa-size", type=int, default=64, help="side to which images are upsampled for pyiqa metrics (default: 64)")
    parser.add_argument(
        "--large-size", type=int, default=176, help="upsampled side for metrics that reject --iqa-size, e.g. MS-SSIM (default: 176)"
    )
    parser.add_argument(
        "--metric-seconds",
        type=float,
        default=None,
        help="scoring budget per metric; slower metrics score fewer images (default: 80, quick: 8)",
    )
    parser.add_argument("--min-images", type=int, default=100, help="images per condition of a metric over budget (default: 100)")
    parser.add_argument("--batch-size", type=int, default=500, help="scoring batch size (default: 500)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="seeds image subset, corruptions, training and bootstrap (default: 0)")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill the mode-dependent defaults."""
    args = build_parser().parse_args(argv)
    defaults = {
        "images": (1000, 2000), "train_images": (20000, 60000), "epochs": (1, 2), "severities": ([1, 3, 5], [1, 2, 3, 4, 5]),
        "n_boot": (300, 1000), "n_boot_auroc": (100, 200), "metric_seconds": (8.0, 80.0),
    }
    for key, (quick, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    for key in (
        "images",
        "train_images",
        "epochs",
        "n_boot",
        "n_boot_auroc",
        "iqa_size",
        "large_size",
        "metric_seconds",
        "min_images",
        "batch_size",
        "threads",
    ):
        if getattr(args, key) <= 0:
            raise SystemExit(f"--{key.replace('_', '-')} should be a positive int, but got {getattr(args, key)}")
    if any(not 1 <= s <= 5 for s in args.severities):
        raise SystemExit(f"--severities should be ints in 1..5, but got {args.severities}")
    args.images = min(args.images, 10_000)
    args.train_images = min(args.train_images, 60_000)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
