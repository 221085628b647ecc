"""Build a dataset quality report: score a source, draw the figures, write ``index.html``."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qualoader._validation import check_positive_int, check_type
from qualoader.flags import parse_flag_specs
from qualoader.metrics.base import QualityMetric
from qualoader.report.flags import check_flag_request, flag_section
from qualoader.report.html import render_html
from qualoader.report.plots import (
    DIFFICULTY_EDGES,
    plot_difficulty,
    plot_distribution,
    plot_shards,
    save_thumbnail,
)
from qualoader.report.scoring import ScoreTable, score_source
from qualoader.report.sources import Source, load_source

__all__ = ["build_report", "summarise"]


def _slug(name: str) -> str:
    # Metric names become file names: "pyiqa:niqe" has a ':' that Windows refuses, and a '/' would open a sub-folder.
    return "".join(char if char.isalnum() or char in "-_" else "_" for char in name)


def _stat(values: np.ndarray, fn: Any) -> float | None:
    # None rather than NaN: json.dumps writes NaN as a bare token that JSON.parse rejects, and numpy's
    # min/max raise on an empty array (a metric whose every score is non-finite).
    finite = values[np.isfinite(values)]
    return float(fn(finite)) if finite.size else None


def _examples(table: ScoreTable, name: str, metric: QualityMetric, count: int, out: Path) -> dict[str, list[dict[str, Any]]]:
    scores = table.scores[name]
    # NaN would sort last and show up as a "highest" example; orienting by higher_is_better makes
    # "lowest" mean worst quality for every metric, and the stable sort keeps tied picks reproducible.
    finite = np.flatnonzero(np.isfinite(scores))
    oriented = scores[finite] if metric.higher_is_better else -scores[finite]
    order = finite[np.argsort(oriented, kind="stable")]
    chosen = {"lowest": order[:count].tolist(), "highest": order[::-1][:count].tolist()}
    result: dict[str, list[dict[str, Any]]] = {}
    for side, indices in chosen.items():
        result[side] = []
        for rank, index in enumerate(indices):
            sample = table.samples[index]
            relative = f"thumbs/{_slug(name)}_{side}_{rank:02d}.png"
            try:
                save_thumbnail(sample.decode(), out / relative)
            except (ValueError, OSError) as error:
                # One undecodable example should cost a thumbnail, not the whole report; the page lists it as a problem.
                table.problems.append(f"{sample.key}: thumbnail failed ({error})")
                continue
            result[side].append(
                {"file": relative, "key": sample.key, "score": float(scores[index]), "label": sample.label, "shard": sample.shard}
            )
    return result


def _weak_reason(metric: QualityMetric) -> str | None:
    """Why the quality profile behind ``metric`` is too weak to trust, or ``None`` (strong, or no profile)."""
    profile = getattr(metric, "profile", None)
    if profile is None:
        return None
    from qualoader.profiles import weak_reason  # imported here: the report of classical metrics needs no profile code

    return weak_reason(profile)


def _domain_figures(table: ScoreTable, metrics: dict[str, QualityMetric]) -> dict[str, dict[str, Any]]:
    """Per aligned metric (one with an ``input_domain``), how much of the reported images lies outside its reference's domain.

    Counted on the images themselves (tagged samples are decoded too), once per distinct domain:
    metrics on the same reference network share the pass.
    """
    from qualoader.profiles.domain import out_of_domain_fraction

    figures: dict[str, dict[str, Any]] = {}
    by_domain: dict[Any, dict[str, float]] = {}
    for name, metric in metrics.items():
        domain = getattr(metric, "input_domain", None)
        if domain is None:
            continue
        if domain not in by_domain:
            by_domain[domain] = out_of_domain_fraction((sample.decode() for sample in table.samples), domain)
        # with the user's own profile in use the note must not tell them to build one (the domain guard's rule)
        figures[name] = {**by_domain[domain], "reference_domain": domain.describe(), "own_profile": domain.profile is not None}
    return figures


def summarise(
    source: Source, table: ScoreTable, metrics: dict[str, QualityMetric], out: Path, examples: int, flags: Sequence[str] = ("all",)
) -> dict[str, Any]:
    """Draw every figure into ``out`` and return the report's summary dictionary (relative file names).

    ``flags``: the flags section's specifications, as :func:`build_report` takes them.

    Each aligned metric's entry has ``"domain"``: the fractions of
    :func:`~qualoader.profiles.out_of_domain_fraction` (``out_of_domain``, ``channels``, ``size``,
    ``intensity``), ``n_images`` and ``reference_domain`` (a one-line description); other
    metrics have ``"domain": None``. ``"weak"`` is why a metric's quality profile is too weak to
    trust (:func:`~qualoader.profiles.weak_reason`), else ``None``.
    """
    from qualoader import __version__

    (out / "plots").mkdir(parents=True, exist_ok=True)
    (out / "thumbs").mkdir(exist_ok=True)
    shards = [sample.shard or "" for sample in table.samples]
    is_sharded = source.kind == "shards"
    domains = _domain_figures(table, metrics)
    entries = []
    for name, metric in metrics.items():
        scores = table.scores[name]
        slug = _slug(name)
        entry: dict[str, Any] = {
            "name": name,
            "higher_is_better": bool(metric.higher_is_better),
            "fingerprint": metric.fingerprint(),
            "from_tags": table.from_tags[name],
            "mean": _stat(scores, np.mean),
            "std": _stat(scores, np.std),
            "min": _stat(scores, np.min),
            "median": _stat(scores, np.median),
            "max": _stat(scores, np.max),
            "nonfinite": int((~np.isfinite(scores)).sum()),
            "summary_line": (type(metric).__doc__ or "").strip().splitlines()[0] if type(metric).__doc__ else "",
            "distribution": f"plots/distribution_{slug}.png",
            "domain": domains.get(name),
            # a weak profile says so wherever its difficulty is shown (the rule of calibrate, profile show and loading)
            "weak": _weak_reason(metric),
        }
        plot_distribution(scores, name, metric.higher_is_better, out / entry["distribution"])
        if name in table.difficulty:
            entry["difficulty_plot"] = f"plots/difficulty_{slug}.png"
            counts = plot_difficulty(table.difficulty[name], name, out / entry["difficulty_plot"])
            labels = [f"{low:.2f}-{high:.2f}" for low, high in itertools.pairwise(DIFFICULTY_EDGES)]
            entry["difficulty_buckets"] = {"labels": labels, "counts": counts}
        if is_sharded:
            entry["shard_plot"] = f"plots/shards_{slug}.png"
            plot_shards(scores, shards, name, out / entry["shard_plot"])
        entry.update(_examples(table, name, metric, examples, out))
        entries.append(entry)
    shard_rows = []
    if is_sharded:
        shard_array = np.asarray(shards)
        # dict.fromkeys, not set: unique shards in first-seen (reading) order, so the table is stable between runs.
        for shard in dict.fromkeys(shards):
            members = shard_array == shard
            tagged = sum(1 for sample, member in zip(table.samples, members) if member and sample.tags)
            shard_rows.append(
                {
                    "shard": shard,
                    "samples": int(members.sum()),
                    "tagged": tagged,
                    "mean": {name: _stat(table.scores[name][members], np.mean) for name in metrics},
                    "median": {name: _stat(table.scores[name][members], np.median) for name in metrics},
                }
            )
    return {
        "version": __version__,
        "source": source.description,
        "kind": source.kind,
        "total": source.total,
        "scored": len(table.samples),
        "metrics": entries,
        "shards": shard_rows,
        "flags": flag_section(table, out, examples, *parse_flag_specs(flags)),
        "problems": source.problems + table.problems,
        # by origin, for the command's one-line count: reading the source (shards) and decoding images (thumbnails too)
        "problem_counts": {"source": len(source.problems), "images": len(table.problems)},
    }


def build_report(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    metrics: Sequence[str | QualityMetric],
    out: str | os.PathLike[str],
    *,
    max_images: int = 5000,
    examples: int = 8,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
    flags: Sequence[str] = ("all",),
) -> Path:
    """Write a static quality report of a dataset or of WebDataset shards.

    ``out`` receives ``index.html`` (relative links only), ``report.json`` (every figure),
    ``plots/*.png`` (quality distribution per metric, difficulty buckets for calibrated metrics,
    per-shard box plots for shards) and ``thumbs/*.png`` (lowest- and highest-quality examples).
    For an aligned metric the page also says how much of the data lies outside its reference
    network's input domain (where its scores and difficulties mean little).

    Args:
        source: see :func:`~qualoader.report.sources.load_source` (folder, ``"fashion-mnist:test"``, shards).
        metrics: no-reference metric names (built with ``create_metric``) or metric instances.
        out: output folder (created if needed).
        max_images: report on at most this many images.
        examples: lowest- and highest-quality thumbnails per metric.
        batch_size: images per metric call.
        device: where the metrics run.
        progress: show a progress bar while scoring.
        flags: which quality flags the Flags section shows, as specifications of ``export --flags``
            (:func:`qualoader.flags.parse_flag_spec`): ``"all"`` (default: every flag whose measure
            the report scores, thresholds fitted on its images), names ``"blurry,dark"``, or
            thresholds in the measure's units ``"dark=0.2"``.

    Returns:
        Path of ``index.html``.

    Example:
        >>> build_report("fashion-mnist:test", ["sharpness"], "report", max_images=200, progress=False)
        PosixPath('report/index.html')
    """
    from qualoader.metrics import create_metric

    check_type(metrics, "metrics", (list, tuple), "a list of metric names or QualityMetric instances")
    if not metrics:
        raise ValueError("metrics should name at least one metric, but got metrics=[]")
    check_positive_int(examples, "examples")
    check_type(out, "out", (str, os.PathLike), "a folder path")
    built: dict[str, QualityMetric] = {}
    for metric in metrics:
        if isinstance(metric, str):
            metric = create_metric(metric, device=device)
        check_type(metric, "metrics[i]", QualityMetric, "a metric name or QualityMetric")
        if metric.name in built:
            # Scores, plots and thumbnails are keyed by metric name; a duplicate would silently overwrite the first.
            raise ValueError(f"metrics should be distinct, but got {metric.name!r} twice")
        built[metric.name] = metric
    check_type(flags, "flags", (list, tuple), "a list of flag specifications")
    check_flag_request(parse_flag_specs(flags)[0], list(built))  # before the scoring, which can take minutes
    loaded = load_source(source, max_images=max_images)
    table = score_source(loaded, built, batch_size=batch_size, device=device, progress=progress)
    folder = Path(out)
    # What this call adds (the folder itself when new), so that a failure (a full disk, a read-only
    # folder, Ctrl-C) takes it away again instead of leaving a partial report that looks complete.
    top = folder
    while not top.parent.exists() and top.parent != top:  # the first folder mkdir(parents=True) will make
        top = top.parent
    parts = (top, folder / "plots", folder / "thumbs", folder / "report.json", folder / "index.html")
    created = [path for path in parts if not path.exists() and not path.is_symlink()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        summary = summarise(loaded, table, built, folder, examples, flags)
        (folder / "report.json").write_text(json.dumps(summary, indent=1))
        index = folder / "index.html"
        # "replace": a name that is not UTF-8 elsewhere in the page (a shard's, a problem's) cannot stop the write
        index.write_bytes(render_html(summary).encode("utf-8", "replace"))
    except BaseException:
        for path in created:  # new folders first: removing one removes everything this call wrote there
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise
    return index
