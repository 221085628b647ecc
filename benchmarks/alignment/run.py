"""One run of the alignment benchmark: train the task models, sweep the conditions, score, analyse, write."""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmarks.alignment.analysis import analyse
from benchmarks.alignment.candidates import MetricEntry, build, candidate_names, orient, reference_info
from benchmarks.alignment.data import conditions, corrupted_conditions, load_corruptions, load_data, sample_indices
from benchmarks.alignment.markdown import load_lofo, render_markdown
from benchmarks.alignment.models import load_or_train, predict_correct
from benchmarks.alignment.options import parse_args
from benchmarks.alignment.plots import plot_all
from qualoader.corruptions import corrupt

__all__ = ["main", "render_from_results", "run"]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _display(path: Path) -> str:
    """``path`` relative to the repository root when inside it, so committed reports carry no machine's folders."""
    root = Path(__file__).resolve().parents[2]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def _markdown(results: dict[str, Any], lofo_path: Path) -> str:
    return render_markdown(results, load_lofo(lofo_path), _display(lofo_path))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark and write the outputs; returns the results dictionary."""
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    all_corruptions, families = load_corruptions()
    train_images, train_labels, test_images, test_labels = load_data()
    corruptions = args.corruptions or [name for name in all_corruptions if args.with_extra or families.get(name) != "extra"]
    unknown = sorted(set(corruptions) - set(all_corruptions))
    if unknown:
        raise SystemExit(f"--corruptions should name corruptions of the suite {all_corruptions}, but got unknown {unknown}")
    run_conditions = conditions(corruptions, args.severities)
    family_of = ["clean"] + [families.get(name, "other") for name, _ in run_conditions[1:]]

    # Distinct seeds for the TEST subset and the TRAIN subset: the two draws must not be the same permutation.
    subset = sample_indices(test_images.shape[0], args.images, args.seed)
    clean, labels = test_images[subset].float().div_(255.0), test_labels[subset]
    train_subset = sample_indices(train_images.shape[0], args.train_images, args.seed + 1)

    models, recipes = {}, {}
    for index, name in enumerate(args.models):
        model, recipe = load_or_train(
            name, train_images[train_subset], train_labels[train_subset], epochs=args.epochs, seed=args.seed + 100 * index,
            cache_dir=out / "models", log=_log,
        )
        models[name], recipes[name] = model, recipe
    reference = reference_info()

    # Metrics are probed on the harshest condition of the first corruption: an input variant that
    # works there works on milder ones, and a slow metric shows its cost.
    probe_reference = clean[torch.arange(min(64, clean.shape[0]))]
    probe = corrupt(probe_reference, corruptions[0], max(args.severities), generator=torch.Generator().manual_seed(0)).clamp(0.0, 1.0)
    entries: list[MetricEntry] = []
    skipped: dict[str, str] = {}
    for name, kind, group in candidate_names(args.metrics, log=_log):
        entry, reason = build(name, kind, group, probe, probe_reference, args.iqa_size, args.large_size)
        if entry is None:
            skipped[name] = reason
            _log(f"metric {name}: {reason}")
            continue
        # Expensive metrics score only the first `limit` images of every condition (a seeded random subset).
        affordable = int(args.metric_seconds / max(entry.seconds * len(run_conditions), 1e-9))
        entry.limit = max(min(clean.shape[0], affordable), min(args.min_images, clean.shape[0]))
        entry.seconds = 0.0
        entries.append(entry)
        _log(
            f"metric {name}: ok ({entry.group}, input {entry.size or 28}px x{entry.channels}, "
            f"higher_is_better={entry.higher_is_better}, {entry.limit} images per condition)"
        )

    correct: dict[str, list[Tensor]] = {name: [] for name in models}
    condition_of: list[Tensor] = []
    sweep = corrupted_conditions(clean, labels, next(iter(models.values())), run_conditions, args.seed)
    for index, ((name, severity), images) in enumerate(zip(run_conditions, sweep)):
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
        _log(f"condition {index + 1}/{len(run_conditions)} {name} s{severity}: {accuracy}")

    condition_index = torch.cat(condition_of).numpy()
    position = np.tile(np.arange(clean.shape[0]), len(run_conditions))
    outcome = {name: torch.cat(parts).numpy() for name, parts in correct.items()}
    oriented = {entry.name: orient(entry) for entry in entries}
    limits = {entry.name: entry.limit for entry in entries}
    results = analyse(args, run_conditions, family_of, condition_index, position, outcome, oriented, limits, entries)
    results.update(
        {
            "config": {
                key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
            },
            "environment": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
            "task_models": recipes,
            "reference_network": reference,
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
    plot_all(out, results, family_of, {name: condition_index[position < limits[name]] for name in oriented}, oriented)
    results["seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(_markdown(results, args.lofo_results))
    _log(f"wrote {out / 'results.json'} and {out / 'results.md'} in {results['seconds']} s")
    return results


def render_from_results(args: argparse.Namespace) -> Path:
    """Write ``results.md`` of the run whose ``results.json`` is ``args.from_results`` into ``args.out``; returns its path.

    Nothing is re-measured, so a report can gain sections (such as the LOFO figures) without the
    38-minute full run; the plots need per-image scores and are left as they are.
    """
    results = json.loads(args.from_results.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.md"
    path.write_text(_markdown(results, args.lofo_results))
    _log(f"wrote {path} from {args.from_results}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.alignment``; returns the exit status."""
    args = parse_args(argv)
    if args.from_results is not None:
        render_from_results(args)
    else:
        run(args)
    return 0
