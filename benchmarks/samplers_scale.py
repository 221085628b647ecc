"""Scale benchmark: build and iterate one full epoch of every ``qualoader.samplers`` sampler at large N.

For N quality scores (default ``10**7``, float64 uniform, seed 0) each case constructs a sampler,
then iterates one epoch with a plain ``for`` loop (checking the count against ``len``); construction
and iteration are timed separately with ``time.perf_counter``. Each case runs in a fresh subprocess
(this script with the hidden ``--case NAME``) whose ``ru_maxrss`` gives its peak memory; the case
``imports-only`` (import torch and qualoader.samplers, build the scores) is the memory floor.
The baseline is ``torch.utils.data.RandomSampler`` over the same N (seeded generator), measured in
the same run. ``torch.utils.data.WeightedRandomSampler`` is tried too: beyond ``2**24`` weights
(e.g. ``--n 20000000``) ``torch.multinomial`` refuses it and the row reads ``fails: ...``, while
``QualityWeightedSampler`` still works.

Usage::

    python benchmarks/samplers_scale.py [--quick] [--n N] [--cases NAME,NAME]

Prints a markdown table and writes it with the figures to ``benchmarks/results/samplers_scale.md``
and ``.json``. Timings depend on machine load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASELINE = "RandomSampler (torch)"
CASES = [
    *("imports-only", BASELINE, "WeightedRandomSampler (torch)"),
    *("QualityStratifiedSampler", "QualityStratifiedBatchSampler"),
    *("QualityWeightedSampler", "QualityWeightedSampler no-replacement"),
    *("CurriculumSampler epoch 5/10", "CurriculumSampler pace_by=sample"),
]
RESULTS = Path(__file__).resolve().parent / "results"


def build(name: str, scores: Any, n: int) -> Any:
    """Construct the sampler of case ``name`` over ``scores`` (``None`` for imports-only)."""
    import torch
    from torch.utils.data import RandomSampler, WeightedRandomSampler

    from qualoader import samplers as qs  # already imported by run_case, so not timed

    factories: dict[str, Callable[[], Any]] = {
        "imports-only": lambda: None,
        BASELINE: lambda: RandomSampler(range(n), generator=torch.Generator().manual_seed(0)),
        "WeightedRandomSampler (torch)": lambda: WeightedRandomSampler(
            torch.from_numpy(scores), n, generator=torch.Generator().manual_seed(0)
        ),
        "QualityStratifiedSampler": lambda: qs.QualityStratifiedSampler(scores, 10, seed=0),
        "QualityStratifiedBatchSampler": lambda: qs.QualityStratifiedBatchSampler(scores, 256, 10, seed=0),
        "QualityWeightedSampler": lambda: qs.QualityWeightedSampler(scores, higher_is_better=True, temperature=1.0, seed=0),
        "QualityWeightedSampler no-replacement": lambda: qs.QualityWeightedSampler(
            scores, higher_is_better=True, temperature=1.0, replacement=False, seed=0
        ),
        "CurriculumSampler epoch 5/10": lambda: qs.CurriculumSampler(scores, higher_is_better=True, full_at=10),
        "CurriculumSampler pace_by=sample": lambda: qs.CurriculumSampler(scores, higher_is_better=True, pace_by="sample", full_at=n * 5),
    }
    sampler = factories[name]()
    if name.startswith("CurriculumSampler epoch"):
        sampler.set_epoch(5)
    return sampler


def run_case(name: str, n: int) -> dict[str, Any]:
    """Measure one case in this process and return its figures (peak memory read last)."""
    import torch
    import torch.utils.data  # imports outside the timed region

    import qualoader.samplers  # noqa: F401

    scores = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    row: dict[str, Any] = {"case": name, "n": n, "error": None}
    try:
        t0 = time.perf_counter()
        sampler = build(name, scores, n)
        t1 = time.perf_counter()
        count = 0
        if sampler is not None:
            for _ in sampler:
                count += 1
            assert count == len(sampler), f"{name}: iterated {count} items, len {len(sampler)}"
        t2 = time.perf_counter()
        row.update(construct_s=t1 - t0, iterate_s=t2 - t1, total_s=t2 - t0, items=count)
    except RuntimeError as error:
        row["error"] = "fails: " + (str(error).strip().splitlines() or [type(error).__name__])[0]
    row["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    return row


def spawn(name: str, n: int) -> dict[str, Any]:
    """Run ``name`` in a fresh interpreter and parse the JSON line it prints."""
    proc = subprocess.run([sys.executable, __file__, "--case", name, "--n", str(n)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return {"case": name, "n": n, "error": f"crashed: {last}", "peak_mb": None}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table with ratios to the RandomSampler total and memory above imports-only."""
    base = next((r for r in rows if r["case"] == BASELINE and not r["error"]), None)
    floor = next((r["peak_mb"] for r in rows if r["case"] == "imports-only"), None)
    lines = [
        "| case | N | construct s | iterate s | total s | ratio total vs RandomSampler | peak MB | MB above imports-only |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        above = f"{r['peak_mb'] - floor:.0f}" if r["peak_mb"] is not None and floor is not None else "-"
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else "-"
        if r["error"]:
            lines.append(f"| {r['case']} | {r['n']} | {r['error']} | - | - | - | {peak} | {above} |")
            continue
        ratio = f"{r['total_s'] / base['total_s']:.2f}x" if base and r["case"] != "imports-only" else "-"
        lines.append(
            f"| {r['case']} | {r['n']} | {r['construct_s']:.2f} | {r['iterate_s']:.2f} | {r['total_s']:.2f} | {ratio} | {peak} | {above} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse arguments; run one case (``--case``) or all of them and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="number of scores (default 10**7)")
    parser.add_argument("--quick", action="store_true", help="N = 10**6")
    parser.add_argument("--cases", default=None, help="comma-separated subset of the cases")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = 10**6 if args.quick else args.n
    if args.case is not None:
        print(json.dumps(run_case(args.case, n)))
        return
    names = CASES if args.cases is None else [c.strip() for c in args.cases.split(",")]
    names = [c for c in ("imports-only", BASELINE) if c not in names] + names
    rows = [spawn(name, n) for name in names]
    text = table(rows)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    import torch

    meta = {"n": n, "python": sys.version.split()[0], "torch": torch.__version__}
    (RESULTS / "samplers_scale.md").write_text(f"# Sampler scale benchmark (N={n})\n\n{text}\n")
    (RESULTS / "samplers_scale.json").write_text(json.dumps({**meta, "cases": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
