"""What the scoring engine saves: k metrics in one pass, and mixed image sizes for aligned metrics.

Two measurements on folders of real photo PNGs (random crops of the scikit-image photos, fixed
seed), decode included, ``--workers`` processes (default 2; on CPU each worker decodes and scores):

* **k metrics in one pass vs k single-metric passes** (k = 3 and 9, the first k of the classical
  suite): one engine pass decodes each image once and shares the luma, gradients and histograms;
  k passes decode k times and recompute them. Reported: time of k passes / time of one pass.
* **aligned metrics of one network** (``--shared``, default ``bn-shift,confidence,task-guided``,
  all on the embedded reference): one engine pass runs the network once per batch for all of them
  (each metric hooks the same forward); k single-metric passes decode and run it k times.
  Reported: time of k passes / time of one pass.
* **mixed-size folder vs the same folder resized** for an aligned metric (``--aligned``, default
  ``bn-shift``): a folder whose images have random sides in [160, 288] px against the same crops
  written at 224 px. The engine resizes to the reference network's input before batching, so
  mixed sizes make one network call per batch. Reported: time(mixed) / time(resized), for the
  engine alone and for a whole :func:`qualoader.data.precompute` pass into a score store.

Figures are the best of ``--repeats``; all ratios come from this run. ``--device cuda`` scores on
the GPU in the main process (workers decode). Run: ``python benchmarks/engine_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

from engine_common import best_of, machine, make_photo_folder, precompute_seconds, score_folder

from qualoader.engine import METRIC_SUITES
from qualoader.profiles import DomainWarning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--aligned", default="bn-shift")
    parser.add_argument("--shared", default="bn-shift,confidence,task-guided", help="aligned metrics of one network, scored together")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    # Photos are far outside the embedded 28 px grey reference's domain, on purpose: this measures
    # speed, not scores, so the domain warning (inherited by the forked workers) would only be noise.
    warnings.filterwarnings("ignore", category=DomainWarning)
    suite = list(METRIC_SUITES["classical"])
    report: dict[str, object] = {"machine": machine(), "count": args.count, "workers": args.workers, "device": args.device}
    print(f"{args.count} real photo PNGs, {args.workers} processes, device {args.device}; {machine()}")

    def timed(files: list[Path], metrics: str) -> float:
        return best_of(args.repeats, lambda: score_folder(files, metrics, workers=args.workers, device=args.device))[0]

    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photo_folder(Path(tmp) / "photos224", args.count, 224)
        for k in (3, 9):
            together = timed(photos, ",".join(suite[:k]))
            apart = sum(timed(photos, name) for name in suite[:k])
            report[f"k{k}"] = {"one_pass_s": together, "k_passes_s": apart, "k_passes_over_one_pass": apart / together}
            print(
                f"  k={k}: one pass {args.count / together:6.0f} images/s, {k} passes {args.count / apart:6.0f} images/s -> "
                f"{apart / together:.2f}x"
            )
        shared = args.shared.split(",")
        together = timed(photos, args.shared)
        apart = sum(timed(photos, name) for name in shared)
        report["shared_forward"] = {"metrics": shared, "one_pass_s": together, "k_passes_s": apart, "ratio": apart / together}
        print(
            f"  {args.shared}: one pass (one forward per batch) {args.count / together:6.0f} images/s, {len(shared)} passes "
            f"{args.count / apart:6.0f} images/s -> {apart / together:.2f}x"
        )
        mixed = make_photo_folder(Path(tmp) / "mixed", args.count, (160, 288), seed=1)
        resized = make_photo_folder(Path(tmp) / "resized", args.count, 224, seed=1)  # same crops, one size
        mixed_s, resized_s = timed(mixed, args.aligned), timed(resized, args.aligned)
        report["mixed_vs_resized"] = {"metric": args.aligned, "mixed_s": mixed_s, "resized_s": resized_s, "ratio": mixed_s / resized_s}
        print(
            f"  {args.aligned}, engine: mixed sizes {args.count / mixed_s:6.0f} images/s, resized {args.count / resized_s:6.0f} images/s "
            f"-> mixed/resized time {mixed_s / resized_s:.2f}"
        )
        # The same through precompute (workers decode, the main process scores into a store).
        runs = iter(range(10**6))

        def stored(files: list[Path]) -> float:
            return min(
                precompute_seconds(files, args.aligned, Path(tmp) / f"store{next(runs)}", workers=args.workers, device=args.device)
                for _ in range(args.repeats)
            )

        mixed_p, resized_p = stored(mixed), stored(resized)
        report["precompute_mixed_vs_resized"] = {
            "metric": args.aligned,
            "mixed_s": mixed_p,
            "resized_s": resized_p,
            "ratio": mixed_p / resized_p,
        }
        print(
            f"  {args.aligned}, precompute: mixed sizes {args.count / mixed_p:6.0f} images/s, resized {args.count / resized_p:6.0f} "
            f"images/s -> mixed/resized time {mixed_p / resized_p:.2f}"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
