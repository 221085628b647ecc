"""The classical suite against CleanVision on the same folder of real photo PNGs, decode included.

Builds ``--count`` (default 512) PNGs at ``--size`` px (default 224) from random crops, flips and
rescales of the scikit-image photos (fixed seed), then times, in one run and with the same number
of processes on both sides (``--workers``, default 2):

* ``decode``: our decoder alone (:func:`qualoader.decoding.load_image`) in a DataLoader;
* ``qualoader classical``: decode + the nine classical measures through one
  :class:`~qualoader.engine.ScoringEngine` per worker process;
* ``qualoader classical, downscale F`` (``--downscale``, default 2; 1 leaves the row out): the same
  suite with the reduced-resolution option of the classical measures
  (:class:`~qualoader.metrics.classical.ClassicalMetric`'s ``downscale``), which computes the
  gradients and second differences (sharpness, gradient-energy, noise) on the luma averaged over
  F x F blocks, as CleanVision computes its blur check on 64 px thumbnails; the other six measures
  read every pixel either way. Its agreement with full resolution is
  printed per measure: Spearman over the same photos, each degraded by one of gaussian blur,
  gaussian noise, JPEG, contrast or brightness at a random severity 0-5 (a fixed seed), so the
  ranking is checked where quality actually varies;
* ``cleanvision``: ``Imagelab.find_issues`` with its five per-image checks (blurry, dark, light,
  low_information, grayscale; ``n_jobs=workers``).

Figures are images/s (wall clock) and CPU milliseconds per image summed over all processes (which
other jobs on a shared machine do not inflate), best of ``--repeats`` interleaved runs; the ratios
are qualoader / CleanVision from this run.
CleanVision is Apache-2.0 (``pip install 'qualoader[bench]'``); without it the script still times
our side and says that CleanVision was skipped. ``--device cuda`` scores on the GPU in the main
process (workers only decode). Run: ``python benchmarks/vs_cleanvision.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import resource
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from engine_common import build_engine, machine, make_photo_folder, score_folder

from qualoader.corruptions import corrupt
from qualoader.decoding import load_image
from qualoader.engine import METRIC_SUITES
from qualoader.stats import spearman

_AGREEMENT_DEGRADATIONS = ("gaussian_blur", "gaussian_noise", "jpeg", "contrast", "brightness")


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers, CleanVision's pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(run: Callable[[], object]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one run."""
    cpu, wall = _cpu_seconds(), time.perf_counter()
    run()
    return time.perf_counter() - wall, _cpu_seconds() - cpu


def _cleanvision_seconds(folder: Path, workers: int) -> float:
    from cleanvision import Imagelab
    issue_types = {"blurry": {}, "dark": {}, "light": {}, "low_information": {}, "grayscale": {}}
    logging.disable(logging.WARNING)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = Imagelab(data_path=str(folder), verbose=False)
        lab.find_issues(issue_types=issue_types, n_jobs=workers, verbose=False)
    return time.perf_counter() - start


def downscale_agreement(files: list[Path], factor: int, seed: int = 0) -> dict[str, float]:
    """Spearman, per classical measure, of the scores at ``downscale=factor`` against full resolution.

    Each photo is degraded by one of :data:`_AGREEMENT_DEGRADATIONS` at a random severity 0-5
    (0: untouched), so the agreement is measured across real quality differences.
    """
    generator = torch.Generator().manual_seed(seed)
    images = []
    for path in files:
        image = load_image(path).float().div(255.0)[None]
        severity = int(torch.randint(0, 6, (1,), generator=generator))
        name = _AGREEMENT_DEGRADATIONS[int(torch.randint(len(_AGREEMENT_DEGRADATIONS), (1,), generator=generator))]
        images.append((corrupt(image, name, severity, generator) if severity else image)[0])
    full = build_engine("classical").score(images).scores
    reduced = build_engine("classical", downscale=factor).score(images).scores
    return {name: float(spearman(full[name].numpy(), reduced[name].numpy())) for name in METRIC_SUITES["classical"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2, help="processes on both sides")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--downscale", type=int, default=2, help="also time the classical suite at this reduced resolution (1: skip)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        files = make_photo_folder(folder, args.count, args.size)
        runs = {
            "decode": lambda: score_folder(files, None, workers=args.workers),
            "qualoader classical": lambda: score_folder(files, "classical", workers=args.workers, device=args.device),
        }
        reduced = f"qualoader classical, downscale {args.downscale}"
        if args.downscale > 1:
            runs[reduced] = lambda: score_folder(files, "classical", workers=args.workers, device=args.device, downscale=args.downscale)
        if importlib.util.find_spec("cleanvision") is not None:
            runs["cleanvision"] = lambda: _cleanvision_seconds(folder, args.workers)
        else:
            print("cleanvision is not installed (pip install 'qualoader[bench]'): CleanVision skipped")
        # Interleaved repeats, so a burst of load from other jobs hits every side alike; best of each.
        timings = {name: (float("inf"), float("inf")) for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                wall, cpu = _timed(run)
                timings[name] = (min(timings[name][0], wall), min(timings[name][1], cpu))
        agreement = downscale_agreement(files, args.downscale) if args.downscale > 1 else {}
    rates = {name: args.count / wall for name, (wall, _) in timings.items()}
    cpu_ms = {name: 1e3 * cpu / args.count for name, (_, cpu) in timings.items()}
    print(f"{args.count} real photo PNGs at {args.size} px, {args.workers} processes each, device {args.device}; {machine()}")
    for name, rate in rates.items():
        print(f"  {name:<22} {rate:8.0f} images/s   {cpu_ms[name]:6.2f} CPU ms/image (all processes)")
    ours = [name for name in rates if name.startswith("qualoader")]
    if "cleanvision" in rates:
        for name in ours:
            print(f"  {name} / cleanvision: {rates[name] / rates['cleanvision']:.2f}x images/s, "
                  f"{cpu_ms['cleanvision'] / cpu_ms[name]:.2f}x less CPU per image")
    for name in ours:
        print(f"  {name} / decode alone: {rates[name] / rates['decode']:.2f}")
    if agreement:
        print(f"  agreement of downscale {args.downscale} with full resolution (Spearman, {args.count} photos, degraded at random):")
        print("    " + ", ".join(f"{name} {value:.3f}" for name, value in agreement.items()))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "machine": machine(),
            "args": {k: str(v) for k, v in vars(args).items()},
            "images_per_s": rates,
            "cpu_ms_per_image": cpu_ms,
            "downscale_agreement_spearman": agreement,
        }
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
