"""One run of the training benchmark: data, scores, selection on validation, final seeds, TEST evaluation, report."""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import platform
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.training.analysis import analyse, choose, selection_table
from benchmarks.training.arms import SCORE_ARMS, arm_grid, online_available
from benchmarks.training.data import HELD_OUT_FAMILIES, TRAIN_FAMILIES, BenchmarkData, build_data, family_corruptions
from benchmarks.training.markdown import render_markdown
from benchmarks.training.models import ARCHITECTURES, accuracy, build_model
from benchmarks.training.options import PUBLISHED_DIR, PUBLISHED_REPORT, parse_args
from benchmarks.training.plots import plot_all
from benchmarks.training.scores import score_training_set
from benchmarks.training.train import Job, RunConfig, run_id, train_run
from qualoader._atomic import write_bytes_atomic, write_json_atomic
from qualoader._json import read_json

__all__ = ["main", "run"]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _display(path: Path) -> str:
    """``path`` relative to the repository root when inside it, so committed results carry no machine's folders."""
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parents[2]))
    except ValueError:
        return str(path)


def _data_key(args: argparse.Namespace) -> str:
    key = f"{args.train_size}-{args.val_size}-{args.test_size}-{args.degraded_share}-{args.seed}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _load_or_build(args: argparse.Namespace) -> BenchmarkData:
    """The benchmark data, built once and cached under ``out/cache`` (keyed by the data options)."""
    path = args.out / "cache" / f"data-{_data_key(args)}.pt"
    if path.is_file():
        return BenchmarkData(**torch.load(path, weights_only=True))
    _log(f"building data: {args.train_size} TRAIN images ({args.val_size} validation), {args.degraded_share:.0%} degraded")
    data = build_data(
        train_size=args.train_size, val_size=args.val_size, test_size=args.test_size, degraded_share=args.degraded_share, seed=args.seed
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(vars(data), temporary)
    temporary.replace(path)  # atomic: a killed save never leaves a half-written cache under the final name
    return data


# Worker state: each training process loads the data once (spawned processes share nothing with the parent).
_WORKER: dict[str, Any] = {}


def _init_worker(data_path: str, scores_path: str, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER["data"] = torch.load(data_path, weights_only=True)
    _WORKER["scores"] = torch.load(scores_path, weights_only=False)


def _work(task: tuple[Job, RunConfig, str]) -> dict[str, Any]:
    job, config, out = task
    data, scores = _WORKER["data"], _WORKER["scores"]
    return train_run(
        job, train_images=data["train_images"], train_labels=data["train_labels"], val_images=data["val_images"],
        val_labels=data["val_labels"], scores=scores["scores"], higher_is_better=scores["higher_is_better"], config=config, out=Path(out),
    )


class Runner:
    """Runs jobs (in ``workers`` processes), skipping those whose record exists; keeps every record read or written."""

    def __init__(self, args: argparse.Namespace, config: RunConfig, data_path: Path, scores_path: Path) -> None:
        self.args, self.config = args, config
        self.data_path, self.scores_path = data_path, scores_path
        self.records: dict[str, dict[str, Any]] = {}

    def run(self, jobs: Sequence[Job], stage: str) -> list[dict[str, Any]]:
        todo, records = [], []
        for job in dict.fromkeys(jobs):
            path = self.args.out / "runs" / f"{run_id(job)}.json"
            if path.is_file():
                self.records[run_id(job)] = read_json(path, what="run record")
            else:
                todo.append(job)
        # The slow architecture first, so the last jobs in flight are short ones and the workers finish together.
        todo.sort(key=lambda job: job.arch != "cnn-bn")
        _log(f"{stage}: {len(jobs)} runs, {len(todo)} to train ({len(jobs) - len(todo)} done before)")
        tasks = [(job, self.config, str(self.args.out)) for job in todo]
        started = time.perf_counter()
        if self.args.workers == 1 or len(tasks) <= 1:
            _init_worker(str(self.data_path), str(self.scores_path), self.args.threads)
            results = map(_work, tasks)
            self._collect(results, len(tasks), started)
        else:
            context = multiprocessing.get_context("spawn")  # fork after torch has started its thread pools can deadlock
            with context.Pool(
                self.args.workers, initializer=_init_worker, initargs=(str(self.data_path), str(self.scores_path), self.args.threads)
            ) as pool:
                self._collect(pool.imap_unordered(_work, tasks), len(tasks), started)
        for job in jobs:
            records.append(self.records[run_id(job)])
        return records

    def _collect(self, results: Any, total: int, started: float) -> None:
        for done, record in enumerate(results, 1):
            self.records[record["id"]] = record
            final = record["curve"][-1]
            elapsed = time.perf_counter() - started
            _log(f"  {done}/{total} {record['id']}: val {final['val_acc']:.4f} at step {final['step']} ({elapsed:.0f} s)")


def _jobs(arm: str, settings: Sequence[dict[str, Any]], archs: Sequence[str], seeds: Sequence[int]) -> list[Job]:
    return [Job(arm, tuple(setting.items()), arch, seed) for setting in settings for arch in archs for seed in seeds]


def _test_accuracies(args: argparse.Namespace, data: BenchmarkData, record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """TEST accuracies of a chosen run at every budget (cached next to its record): budget -> test set -> accuracy."""
    path = args.out / "tests" / f"{record['id']}.json"
    if path.is_file():
        return read_json(path, what="test accuracies")
    model = build_model(record["arch"], 0)
    result = {}
    for budget, saved in record["budgets"].items():
        model.load_state_dict(torch.load(args.out / "states" / saved["state"], weights_only=True))
        result[budget] = {name: accuracy(model, images, labels) for name, (images, labels) in data.tests.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark and write the outputs; returns the results dictionary."""
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = _load_or_build(args)
    _log(f"data: {data.train_images.shape[0]} training, {data.val_images.shape[0]} validation images, "
         f"{int(data.train_degraded.sum())} degraded; TEST sets of {data.tests['clean'][1].numel()} images")
    scores, directions, score_seconds = score_training_set(
        data.train_images, args.scores, out / f"store-{_data_key(args)}", f"training-benchmark-{_data_key(args)}", log=_log
    )
    scores_path = out / "cache" / f"scores-{_data_key(args)}.pt"
    torch.save({"scores": scores, "higher_is_better": directions}, scores_path)
    config = RunConfig(budgets=tuple(args.epochs), batch_size=args.batch_size, eval_every=args.eval_every)
    runner = Runner(args, config, out / "cache" / f"data-{_data_key(args)}.pt", scores_path)
    selection_seeds, all_seeds = list(range(args.selection_seeds)), list(range(args.seeds))
    arms = [arm for arm in args.arms if arm != "online" or online_available()]
    skipped = {} if arms == args.arms else {"online": "skipped: the installed samplers take no online feedback (update)"}

    # Stage 1: the score. Chosen per architecture on validation with the hard-weighted arm, the arm the
    # feasibility run pointed at; every other quality arm then uses that score (a grid over every score
    # for every arm would cost four times the compute).
    grids: dict[str, list[dict[str, Any]]] = {"random": [{}]}
    stage1 = _jobs("random", [{}], args.archs, selection_seeds)
    if "weighted-hard" in arms:
        grids["weighted-hard"] = arm_grid("weighted-hard", args.scores)
        stage1 += _jobs("weighted-hard", grids["weighted-hard"], args.archs, selection_seeds)
    runner.run(stage1, "stage 1 (score choice)")
    chosen: dict[str, dict[str, dict[str, Any]]] = {arch: {} for arch in args.archs}
    for arch in args.archs:
        chosen[arch]["random"] = {}
        if "weighted-hard" in arms:
            chosen[arch]["weighted-hard"] = choose(runner.records, "weighted-hard", grids["weighted-hard"], arch, selection_seeds)
    score_of = {arch: chosen[arch].get("weighted-hard", {}).get("score", args.scores[0]) for arch in args.archs}
    _log(f"chosen score per architecture: {score_of}")

    # Stage 2: every other arm's knobs, on validation, with the chosen score.
    stage2 = []
    arch_grids: dict[str, dict[str, list[dict[str, Any]]]] = {arch: {} for arch in args.archs}
    for arm in arms:
        if arm in ("random", "weighted-hard"):
            continue
        for arch in args.archs:
            grid = arm_grid(arm, [score_of[arch]] if arm in SCORE_ARMS else [], args.quick)
            arch_grids[arch][arm] = grid
            stage2 += _jobs(arm, grid, [arch], selection_seeds)
    runner.run(stage2, "stage 2 (settings)")
    for arch in args.archs:
        for arm, grid in arch_grids[arch].items():
            chosen[arch][arm] = choose(runner.records, arm, grid, arch, selection_seeds)
        _log(f"chosen settings ({arch}): {chosen[arch]}")

    # Stage 3: the chosen settings on every seed (the selection seeds' runs are reused).
    final_jobs = [
        Job(arm, tuple(setting.items()), arch, seed) for arch in args.archs for arm, setting in chosen[arch].items() for seed in all_seeds
    ]
    records = runner.run(final_jobs, "stage 3 (final seeds)")
    _log("evaluating the chosen runs on the TEST sets")
    tests = {record["id"]: _test_accuracies(args, data, record) for record in records}

    grid_of = {arch: {"weighted-hard": grids.get("weighted-hard", []), **arch_grids[arch]} for arch in args.archs}
    results = analyse(records, tests, chosen, config, score_seconds, data.train_images.shape[0], args.archs)
    results["selection"] = selection_table(runner.records, grid_of, chosen, args.archs, selection_seeds)
    results.update(
        {
            "config": {key: (_display(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
            "protocol": {
                "train_families": {family: family_corruptions([family]) for family in TRAIN_FAMILIES},
                "held_out_families": {family: family_corruptions([family]) for family in HELD_OUT_FAMILIES},
                "train_images": int(data.train_images.shape[0]), "val_images": int(data.val_images.shape[0]),
                "degraded_train_images": int(data.train_degraded.sum()),
                "test_images": int(data.tests["clean"][1].numel()),
                "architectures": {name: {"class": ARCHITECTURES[name].__name__, "summary": (ARCHITECTURES[name].__doc__ or "").strip(),
                                          "parameters": sum(p.numel() for p in build_model(name, 0).parameters())} for name in args.archs},
                "score_of": score_of,
            },
            "skipped": skipped,
            # Every run trained for the report (the settings that lost on validation included), and their training time.
            "runs": {"count": len(runner.records), "train_seconds": round(sum(r["train_seconds"] for r in runner.records.values()), 1)},
            "environment": {
                "python": platform.python_version(), "torch": torch.__version__, "threads": args.threads, "workers": args.workers,
            },
        }
    )
    plot_all(out / "plots", results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(out / "results.json", results)
    write_bytes_atomic(out / "results.md", render_markdown(results, plots="plots").encode())
    _log(f"wrote {out / 'results.json'} and {out / 'results.md'} in {results['seconds']} s")
    if args.publish:
        publish(results)
    return results


def publish(results: dict[str, Any]) -> None:
    """Write the committed report (``benchmarks/TRAINING_RESULTS.md``) with its results and plots (``benchmarks/training_results``)."""
    PUBLISHED_DIR.mkdir(parents=True, exist_ok=True)
    plot_all(PUBLISHED_DIR, results)
    write_json_atomic(PUBLISHED_DIR / "results.json", results)
    write_bytes_atomic(PUBLISHED_REPORT, render_markdown(results, plots=PUBLISHED_DIR.name).encode())
    _log(f"published {PUBLISHED_REPORT} and {PUBLISHED_DIR}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.training``; returns the exit status (130 when interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    # SIGTERM as Ctrl-C: the process pool then terminates its workers instead of leaving them running without a parent.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run(args)
    except KeyboardInterrupt:
        _log("interrupted: the finished runs are kept, the same command resumes")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0

