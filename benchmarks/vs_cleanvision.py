"""The classical suite against CleanVision on the same folder of real photo PNGs, decode included.

Builds ``--count`` (default 512) PNGs at ``--size`` px (default 224) from random crops, flips and
rescales of the scikit-image photos (fixed seed), then times, in one run and with the same number
of processes on both sides (``--workers``, default 2):

* ``decode``: our decoder alone (:func:`qualoader.decoding.load_image`) in a DataLoader;
* ``qualoader classical``: decode + the nine classical measures through one
  :class:`~qualoader.engine.ScoringEngine` per worker process;
* ``cleanvision``: ``Imagelab.find_issues`` with its five per-image checks (blurry, dark, light,
  low_information, grayscale; ``n_jobs=workers``).

Figures are images/s, best of ``--repeats``; the ratio is qualoader / CleanVision from this run.
CleanVision is Apache-2.0 (``pip install 'qualoader[bench]'``); without it the script still times
our side and says that CleanVision was skipped. ``--device cuda`` scores on the GPU in the main
process (workers only decode). Run: ``python benchmarks/vs_cleanvision.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

from engine_common import best_of, machine, make_photo_folder, score_folder


def _cleanvision_seconds(folder: Path, workers: int) -> float | None:
    try:
        from cleanvision import Imagelab
    except ImportError:
        print("cleanvision is not installed (pip install 'qualoader[bench]'): CleanVision skipped")
        return None
    issue_types = {"blurry": {}, "dark": {}, "light": {}, "low_information": {}, "grayscale": {}}
    logging.disable(logging.WARNING)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = Imagelab(data_path=str(folder), verbose=False)
        lab.find_issues(issue_types=issue_types, n_jobs=workers, verbose=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2, help="processes on both sides")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        files = make_photo_folder(folder, args.count, args.size)
        decode, _ = best_of(args.repeats, lambda: score_folder(files, None, workers=args.workers))
        ours, _ = best_of(args.repeats, lambda: score_folder(files, "classical", workers=args.workers, device=args.device))
        theirs = min((s for s in (_cleanvision_seconds(folder, args.workers) for _ in range(args.repeats)) if s is not None), default=None)
    rates = {"decode": args.count / decode, "qualoader classical": args.count / ours}
    if theirs is not None:
        rates["cleanvision"] = args.count / theirs
    print(f"{args.count} real photo PNGs at {args.size} px, {args.workers} processes each, device {args.device}; {machine()}")
    for name, rate in rates.items():
        print(f"  {name:<22} {rate:8.0f} images/s")
    if theirs is not None:
        print(f"  qualoader / cleanvision: {rates['qualoader classical'] / rates['cleanvision']:.2f}x")
    print(f"  qualoader classical / decode alone: {rates['qualoader classical'] / rates['decode']:.2f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "images_per_s": rates}, indent=2))


if __name__ == "__main__":
    main()
