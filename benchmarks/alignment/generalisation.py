"""Generalisation benchmark: does an aligned no-reference score predict accuracy under degradation types it never saw?

Protocol (leave one family out). The corruption suite has five families: the four of ImageNet-C
(noise, blur, digital, weather: 19 corruptions) and ``extra`` (:mod:`qualoader.corruptions.extra`: low light,
posterize, occlusion, vignette, over-sharpening, scanline dropout). For each family F, a
``task-guided`` head is trained on a corruption sweep of Fashion-MNIST TRAIN images over the other
four families (plus clean), then scores a sweep of TEST images of family F (plus clean). The mean
score per condition (corruption x severity) is correlated (Spearman, 95% percentile-bootstrap CI
over conditions) with the accuracy of each of three task models the scores never saw
(:mod:`benchmarks.alignment.models`, trained here on clean TRAIN images). The in-family figure is the
alignment benchmark's setting: a head trained on every family, scored on the 19 ImageNet-C
corruptions plus clean.

Candidates: heads reading image statistics (``image``, the former default), the reference
network's response (``network``) or both (``both``); and training-free scores of the reference
network itself (softmax confidence, negative entropy, energy, logit margin, negative bn-shift).
The shipped head is scored too, as it is.

Usage (from the repository root; ``benchmarks/generalisation.py`` is a shim that runs this module)::

    python -m benchmarks.generalisation --quick     # < 5 min on 2 cores
    python -m benchmarks.generalisation             # the committed figures (about 7 min on 2 cores)

Writes ``results.json`` and ``results.md`` to ``--out`` (default ``benchmarks/results/generalisation``);
the task models are cached in ``--out/models``. The alignment report (:mod:`benchmarks.alignment.markdown`)
reads the committed ``benchmarks/generalisation_results.json`` to show these figures beside its in-family ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.alignment.analysis import ci_dict, fmt_ci, fmt_number
from benchmarks.alignment.models import TASK_MODELS, load_or_train, predict_correct
from qualoader.calibration import iterate_sweep
from qualoader.corruptions import CORRUPTION_FAMILIES, list_corruptions
from qualoader.metrics.aligned.task_guided import TaskGuidedHead, head_feature_names, head_features, load_task_guided_head
from qualoader.metrics.aligned.task_guided_training import FeatureSweep, feature_sweep, fit_head, head_target
from qualoader.reference import default_reference
from qualoader.stats import bootstrap_ci, spearman

__all__ = ["FAMILIES", "IMAGENET_C", "IN_FAMILY", "build_parser", "main", "parse_args", "render_markdown", "run", "score_test_sweep"]

# benchmarks/results/generalisation, where it was before this module moved into the package
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "generalisation"
FAMILIES = ("noise", "blur", "digital", "weather", "extra")
IMAGENET_C = ("noise", "blur", "digital", "weather")
#: Group of the figures of a head fitted on every family, scored on the ImageNet-C families.
IN_FAMILY = "in-family (ImageNet-C)"
HEAD_INPUTS = ("image", "network", "both")
#: Training-free scores read off the reference network's features: (column, sign so higher = better).
RAW_SCORES: dict[str, tuple[str, float]] = {
    "confidence": ("max_probability", 1.0),
    "neg-entropy": ("entropy", -1.0),
    "energy": ("energy", 1.0),
    "logit-margin": ("logit_margin", 1.0),
}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _family_of(name: str) -> str:
    return "clean" if name == "clean" else CORRUPTION_FAMILIES[name]


@torch.no_grad()
def score_test_sweep(
    network,
    models: dict[str, torch.nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    severities: Sequence[int],
    seed: int,
    batch_size: int,
) -> dict[str, Any]:
    """Head features ``"both"`` per TEST image and condition, and each task model's correctness.

    Uses the library's sweep (:func:`qualoader.calibration.iterate_sweep`), so the conditions and
    their seeded corruptions are those of every other sweep with the same seed.
    """
    names, batches = iterate_sweep(
        images, labels, network, list_corruptions(), (0, *severities), torch.Generator().manual_seed(seed), batch_size
    )
    rows: dict[str, list[torch.Tensor]] = {"features": [], "condition": [], **{f"correct/{m}": [] for m in models}}
    conditions: list[tuple[str, int]] = []
    index_of: dict[tuple[int, int], int] = {}
    for _clean, batch, label, corruption, severity in batches:
        key = (corruption, severity)
        if key not in index_of:
            index_of[key] = len(conditions)
            conditions.append(("clean" if corruption < 0 else names[corruption], severity))
        rows["features"].append(head_features(batch, "both", network))
        rows["condition"].append(torch.full((batch.shape[0],), index_of[key]))
        for model_name, model in models.items():
            rows[f"correct/{model_name}"].append(predict_correct(model, batch, label))
    merged = {key: torch.cat(value) for key, value in rows.items()}
    return {"conditions": conditions, **merged}


def _per_condition(values: np.ndarray, condition: np.ndarray, count: int) -> np.ndarray:
    return np.bincount(condition, weights=values, minlength=count) / np.bincount(condition, minlength=count)


def _interval(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict[str, float | None]:
    return ci_dict(bootstrap_ci(spearman, x, y, n_boot=n_boot, generator=torch.Generator().manual_seed(seed)))


def _columns(names: tuple[str, ...], wanted: tuple[str, ...]) -> list[int]:
    return [names.index(name) for name in wanted]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the protocol and write ``results.json`` / ``results.md``; returns the results."""
    from qualoader.datasets import load_fashion_mnist

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test")
    network = default_reference()
    names_both = head_feature_names("both", network)

    # Task models: the alignment benchmark's three architectures, trained on clean TRAIN images.
    task_subset = torch.randperm(train_images.shape[0], generator=torch.Generator().manual_seed(args.seed + 1))[: args.task_train_images]
    models, recipes = {}, {}
    for index, name in enumerate(TASK_MODELS):
        models[name], recipes[name] = load_or_train(
            name,
            train_images[task_subset],
            train_labels[task_subset],
            epochs=args.epochs,
            seed=args.seed + 100 * index,
            cache_dir=out / "models",
            log=_log,
        )

    # Head training sweep: TRAIN images not used by anything else here, every family.
    head_subset = torch.randperm(train_images.shape[0], generator=torch.Generator().manual_seed(args.seed + 2))[: args.train_images]
    # The sweeps dominate the run time; cached under a name that holds every option they depend on, the corruption
    # suite included (a suite that gained corruptions must not reuse a sweep without them).
    suite = hashlib.sha256(",".join(list_corruptions()).encode()).hexdigest()[:8]
    train_cache = out / f"sweep_train_n{args.train_images}_s{''.join(map(str, args.train_severities))}_seed{args.seed}_c{suite}.pt"
    if train_cache.is_file():
        train = FeatureSweep(**torch.load(train_cache, weights_only=True))
        _log(f"training sweep: loaded {train_cache}")
    else:
        _log(
            f"training sweep: {args.train_images} TRAIN images x {len(list_corruptions())} corruptions x severities {args.train_severities}"
        )
        train = feature_sweep(
            network, train_images[head_subset], train_labels[head_subset], list_corruptions(), (0, *args.train_severities),
            torch.Generator().manual_seed(args.seed + 3), args.batch_size, inputs="both",
        )
        torch.save(train._asdict(), train_cache)
    target = head_target(train, "blend")
    train_family = np.array(["clean" if c < 0 else CORRUPTION_FAMILIES[train.names[c]] for c in train.corruption.tolist()])
    _log(f"training sweep done: {train.features.shape[0]} rows")

    test_subset = torch.randperm(test_images.shape[0], generator=torch.Generator().manual_seed(args.seed + 4))[: args.test_images]
    # The test sweep also holds the task models' correctness, so its name includes their training recipe.
    test_cache = (
        out
        / (
            f"sweep_test_n{args.test_images}_s{''.join(map(str, args.test_severities))}_seed{args.seed}"
            f"_e{args.epochs}_t{args.task_train_images}_c{suite}.pt"
        )
    )
    if test_cache.is_file():
        test = torch.load(test_cache, weights_only=True)
        test["conditions"] = [tuple(c) for c in test["conditions"]]
        _log(f"test sweep: loaded {test_cache}")
    else:
        test = score_test_sweep(
            network,
            models,
            test_images[test_subset].float() / 255,
            test_labels[test_subset],
            args.test_severities,
            args.seed + 5,
            args.batch_size,
        )
        torch.save(test, test_cache)
    conditions = test["conditions"]
    n_conditions = len(conditions)
    condition = test["condition"].numpy()
    family_of = [_family_of(name) for name, _ in conditions]
    accuracy = {m: _per_condition(test[f"correct/{m}"].numpy().astype(np.float64), condition, n_conditions) for m in models}
    _log(f"test sweep done: {n_conditions} conditions x {args.test_images} TEST images")

    def members(families: Sequence[str]) -> np.ndarray:
        return np.array([i for i, f in enumerate(family_of) if f in (*families, "clean")])

    groups = {IN_FAMILY: members(IMAGENET_C), **{f: members((f,)) for f in FAMILIES}}
    features = test["features"]

    def condition_means(scores: torch.Tensor) -> np.ndarray:
        return _per_condition(scores.double().numpy(), condition, n_conditions)

    def correlate(means: dict[str, np.ndarray], label: str) -> dict[str, Any]:
        """``means[group]``: mean score per condition from the scorer meant for that group."""
        figures: dict[str, Any] = {}
        # 7919 (a prime) keeps the groups' seeds apart, far above the small per-model and per-label offsets.
        for group, rows in groups.items():
            figures[group] = {
                m: _interval(
                    means[group][rows], accuracy[m][rows], args.n_boot, args.seed + 7919 * (list(groups).index(group) + 1) + len(label) + i
                )
                for i, m in enumerate(models)
            }
        return figures

    results: dict[str, Any] = {"candidates": {}}
    # Training-free scores of the reference network (nothing was fitted: every figure is out-of-family).
    raw_columns = {**{k: (names_both.index(c), s) for k, (c, s) in RAW_SCORES.items()}}
    kl_columns = [i for i, n in enumerate(names_both) if n.endswith(".kl")]
    for label, (column, sign) in raw_columns.items():
        means = condition_means(sign * features[:, column])
        results["candidates"][label] = {
            "kind": "reference network, training-free",
            "figures": correlate(dict.fromkeys(groups, means), label),
        }
    means = condition_means(-features[:, kl_columns].mean(dim=1))
    results["candidates"]["neg-bn-shift"] = {
        "kind": "reference network, training-free",
        "figures": correlate(dict.fromkeys(groups, means), "neg-bn-shift"),
    }

    # The shipped head as it is (trained on the ImageNet-C families only).
    shipped, _ = load_task_guided_head()
    with torch.no_grad():
        shipped_scores = shipped(features[:, _columns(names_both, shipped.feature_names)])
    results["candidates"]["shipped head"] = {
        "kind": f"shipped head ({len(shipped.feature_names)} features)",
        "figures": correlate(dict.fromkeys(groups, condition_means(shipped_scores)), "shipped"),
    }

    # Heads: one fit on every family (in-family figures), one per held-out family.
    for inputs in args.head_inputs:
        for hidden in args.hidden:
            label = f"head:{inputs}:{'x'.join(map(str, hidden)) or 'linear'}"
            wanted = head_feature_names(inputs, network)
            columns = _columns(names_both, wanted)
            tick = time.perf_counter()
            means: dict[str, np.ndarray] = {}
            heads: dict[str, TaskGuidedHead] = {}
            for held_out in (None, *FAMILIES):
                keep = train_family != held_out if held_out else np.ones(train_family.shape, dtype=bool)
                keep_t = torch.from_numpy(keep)
                head, _ = fit_head(
                    train.features[keep_t][:, columns],
                    target[keep_t],
                    wanted,
                    hidden,
                    args.steps,
                    args.fit_batch,
                    3e-3,
                    # the same seed for every held-out family: the fits differ only by the rows they see
                    torch.Generator().manual_seed(args.seed + 11),
                )
                with torch.no_grad():
                    scores = condition_means(head(features[:, columns]))
                heads[held_out or "all"] = head
                if held_out is None:
                    means[IN_FAMILY] = scores
                else:
                    means[held_out] = scores
            results["candidates"][label] = {
                "kind": f"head on {inputs} features, hidden {hidden}; family figures are leave-one-family-out",
                "figures": correlate(means, label),
                "seconds": round(time.perf_counter() - tick, 1),
            }
            _log(f"{label}: {_summary_line(results['candidates'][label]['figures'])}")

    for label, entry in results["candidates"].items():
        entry["summary"] = _summarise(entry["figures"])
    results.update(
        {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "conditions": [
                {
                    "corruption": name,
                    "severity": severity,
                    "family": family_of[i],
                    "accuracy": {m: round(float(accuracy[m][i]), 4) for m in models},
                }
                for i, (name, severity) in enumerate(conditions)
            ],
            "task_models": recipes,
            "environment": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    (out / "results.md").write_text(render_markdown(results))
    _log(f"wrote {out / 'results.md'} in {results['seconds']} s")
    return results


def _summarise(figures: dict[str, Any]) -> dict[str, float | None]:
    def mean(values: list[float | None]) -> float | None:
        finite = [v for v in values if v is not None]
        return round(float(np.mean(finite)), 4) if finite else None

    per_family = {group: mean([ci["estimate"] for ci in by_model.values()]) for group, by_model in figures.items()}
    return {
        "in_family": per_family[IN_FAMILY],
        "leave_one_family_out": mean([per_family[f] for f in FAMILIES]),
        **per_family,
    }


def _summary_line(figures: dict[str, Any]) -> str:
    summary = _summarise(figures)
    return ", ".join(f"{k}={v:+.3f}" if v is not None else f"{k}=n/a" for k, v in summary.items())


def render_markdown(results: dict[str, Any]) -> str:
    """Markdown tables of a results dictionary (as written to ``results.md``)."""
    config = results["config"]
    models = list(results["task_models"])
    rows = sorted(results["candidates"].items(), key=lambda item: -(item[1]["summary"]["leave_one_family_out"] or -9))
    imagenet_c = {c["corruption"] for c in results["conditions"] if c["family"] in IMAGENET_C}
    lines = [
        "# Generalisation to unseen degradation types (leave one family out)",
        "",
        (f"Heads trained on {config['train_images']} Fashion-MNIST TRAIN images x every corruption except the held-out family, "
         f"severities {config['train_severities']} (+ clean), {config['steps']} Adam steps; scored on {config['test_images']} TEST images, "
         f"severities {config['test_severities']} (+ clean). Spearman of mean score per condition vs accuracy of each task model, "
         f"95% percentile-bootstrap CI ({config['n_boot']} resamples of the conditions). Family columns of the heads are "
         "leave-one-family-out (the head never saw that family); the in-family column is a head trained on every family, "
         f"scored on the {len(imagenet_c)} ImageNet-C corruptions. Training-free scores never saw any corruption."),
        "",
        "## Summary (mean Spearman over the three task models)",
        "",
        "| candidate | in-family | LOFO mean | " + " | ".join(FAMILIES) + " |",
        "|---|---|---|" + "---|" * len(FAMILIES),
    ]
    for label, entry in rows:
        s = entry["summary"]
        lines.append(
            f"| `{label}` | {fmt_number(s['in_family'])} | **{fmt_number(s['leave_one_family_out'])}** | "
            + " | ".join(fmt_number(s[f]) for f in FAMILIES)
            + " |"
        )
    lines += ["", "## Per task model, with 95% CIs", ""]
    for label, entry in rows:
        lines += [f"### `{label}` ({entry['kind']})", "", "| group | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        for group, by_model in entry["figures"].items():
            lines.append(f"| {group} | " + " | ".join(fmt_ci(by_model[m], digits=2) for m in models) + " |")
        lines.append("")
    lines += ["## Task models (clean accuracy)", "", "| model | clean | mean over corrupted conditions |", "|---|---|---|"]
    for m in models:
        accuracies = [c["accuracy"][m] for c in results["conditions"]]
        lines.append(f"| {m} | {accuracies[0]:.3f} | {np.mean(accuracies[1:]):.3f} |")
    lines += ["", f"Run time: {results['seconds']} s with {results['environment']['threads']} threads.", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run (< 5 min on 2 cores)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train-images", type=int, default=None, help="TRAIN images of the head's sweep (default 1000, quick 200)")
    parser.add_argument("--test-images", type=int, default=None, help="TEST images per condition (default 2000, quick 300)")
    parser.add_argument(
        "--task-train-images", type=int, default=None, help="clean TRAIN images for the task models (default 60000, quick 5000)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="task-model training epochs (default 2, quick 1)")
    parser.add_argument("--train-severities", type=int, nargs="+", default=None, help="default and quick 1 3 5")
    parser.add_argument("--test-severities", type=int, nargs="+", default=None, help="default 1 2 3 4 5, quick 1 3 5")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps per head (default 1000, quick 200)")
    parser.add_argument(
        "--hidden", type=str, nargs="+", default=None,
        help="hidden widths per head variant, e.g. 64x64 32 linear (default 64x64 linear, quick 64x64)",
    )
    parser.add_argument(
        "--head-inputs", nargs="*", choices=HEAD_INPUTS, default=list(HEAD_INPUTS), help="head variants to fit (default: all)"
    )
    parser.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default 1000, quick 200)")
    parser.add_argument("--batch-size", type=int, default=500, help="images per forward pass of the sweeps")
    parser.add_argument("--fit-batch", type=int, default=None, help="rows per Adam step of the heads (default 1024, quick 2048)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill the mode-dependent defaults."""
    args = build_parser().parse_args(argv)
    # Full mode is the committed run: task models trained as in the alignment benchmark (60,000 images, 2 epochs), and
    # 2000 TEST images per condition, because with fewer the noise family's accuracies differ by less than their
    # sampling error (two of the three task models barely react to CIFAR-strength noise).
    defaults = {
        "train_images": (200, 1000), "test_images": (300, 2000), "task_train_images": (5000, 60000), "epochs": (1, 2),
        "train_severities": ([1, 3, 5], [1, 3, 5]), "test_severities": ([1, 3, 5], [1, 2, 3, 4, 5]),
        "steps": (200, 1000), "fit_batch": (2048, 1024), "n_boot": (200, 1000), "hidden": (["64x64"], ["64x64", "linear"]),
    }
    for key, (quick, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    for key in ("train_images", "test_images", "task_train_images", "epochs", "steps", "n_boot", "batch_size", "fit_batch", "threads"):
        if getattr(args, key) <= 0:
            raise SystemExit(f"--{key.replace('_', '-')} should be a positive int, but got {getattr(args, key)}")
    for key in ("train_severities", "test_severities"):
        if any(not 1 <= s <= 5 for s in getattr(args, key)):
            raise SystemExit(f"--{key.replace('_', '-')} should be ints in 1..5, but got {getattr(args, key)}")
    try:
        args.hidden = [() if h == "linear" else tuple(int(w) for w in h.split("x")) for h in args.hidden]
    except ValueError:
        raise SystemExit(f"--hidden should be widths like 64x64, 32 or linear, but got {args.hidden}") from None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.generalisation``; returns the exit status."""
    run(parse_args(argv))
    return 0
