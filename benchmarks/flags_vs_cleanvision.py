"""Which degradations qualoader's quality flags and CleanVision's issue flags find, on the same folder of photos.

Builds a folder of PNG crops of the scikit-image photos (64-160 px, random crops, rescales and
flips from a fixed seed; :func:`engine_common.make_photo_folder`): ``--clean`` untouched images,
then ``--per-cell`` further crops for each degradation at each severity of ``--severities``
(gaussian blur, gaussian noise, JPEG, brightness raised, low light, contrast lowered; the corruptions
of :mod:`qualoader.corruptions`, fixed seed). Every image is a different crop, so no flag can
key on a duplicate.

qualoader: the nine classical measures (:class:`~qualoader.engine.ScoringEngine`), then
:func:`qualoader.flags.compute_flags` with its default rules (thresholds fitted on this folder:
median -/+ 3 robust standard deviations). CleanVision 0.3.7 (Apache-2.0): its per-image checks
(blurry, dark, light, low_information, grayscale, odd_aspect_ratio, odd_size), run by
``cleanvision_flags_runner.py`` under ``--cleanvision-python`` (a separate environment with
``pip install cleanvision==0.3.7``), skipped with a message when that option is not given.

Per degradation and severity it reports the recall of the matching flag (blur -> blurry, noise ->
noisy, JPEG -> jpeg, brightness -> light, low light -> dark, contrast -> low-contrast; CleanVision:
blurry, none, none, light, dark, low_information) and of any flag, and for clean images the share
flagged by any flag (false alarms). Run: ``python benchmarks/flags_vs_cleanvision.py
--cleanvision-python /work/cvenv/bin/python --out benchmarks/flags_vs_cleanvision_results.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from engine_common import machine, make_photo_folder
from PIL import Image

from qualoader.corruptions import corrupt
from qualoader.decoding import load_image
from qualoader.engine import ScoringEngine
from qualoader.flags import compute_flags

#: degradation -> (qualoader flag, CleanVision issue or None where it has no check for it)
DEGRADATIONS: dict[str, tuple[str, str | None]] = {
    "gaussian_blur": ("blurry", "blurry"),
    "gaussian_noise": ("noisy", None),
    "jpeg": ("jpeg", None),
    "brightness": ("light", "light"),
    "low_light": ("dark", "dark"),
    "contrast": ("low-contrast", "low_information"),
}


def _fashion_folder(folder: Path, count: int) -> list[Path]:
    """The first ``count`` Fashion-MNIST TEST images as PNGs (28 px grey; the same images with the full copy or the bundled sample)."""
    from qualoader.datasets import load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{index:05d}.png" for index in range(count)]
    for path, image in zip(paths, images[:count]):
        Image.fromarray(image[0].numpy()).save(path, format="PNG")
    return paths


def build_folder(
    folder: Path, clean: int, per_cell: int, severities: tuple[int, ...], seed: int = 0, source: str = "photos"
) -> dict[str, tuple[str, int]]:
    """Write the folder (photo crops, or Fashion-MNIST images); returns ``{file name: (degradation or "clean", severity)}``."""
    cells = [(name, severity) for name in DEGRADATIONS for severity in severities]
    count = clean + per_cell * len(cells)
    files = make_photo_folder(folder, count, (64, 160), seed=seed) if source == "photos" else _fashion_folder(folder, count)
    generator = torch.Generator().manual_seed(seed)
    truth: dict[str, tuple[str, int]] = {}
    for index, path in enumerate(files):
        image = load_image(path).float().div(255.0)
        # every file RGB, clean or not, as a camera writes them: a grey file would tell the degraded ones apart by its mode
        image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
        if index < clean:
            key = ("clean", 0)
        else:
            key = cells[(index - clean) // per_cell]
            image = corrupt(image[None], key[0], key[1], generator)[0].clamp(0.0, 1.0)
        array = image.mul(255.0).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")
        truth[path.name] = key
    return truth


def qualoader_flags(folder: Path, names: list[str]) -> tuple[dict[str, list[str]], dict[str, str], float]:
    """``{file name: [flag, ...]}``, the thresholds used, and the seconds taken (scoring and flags)."""
    start = time.perf_counter()
    images = [load_image(folder / name) for name in names]
    scores = ScoringEngine("classical").score(images).scores
    result = compute_flags({name: values.numpy() for name, values in scores.items()})
    seconds = time.perf_counter() - start
    flagged = {name: [flag for flag, marks in result.flags.items() if marks[row]] for row, name in enumerate(names)}
    return flagged, {flag: info.describe() for flag, info in result.thresholds.items()}, seconds


#: CleanVision checks of image properties, not of degradations (grey photos, unusual sizes): left out of "any flag".
_PROPERTY_ISSUES = frozenset({"grayscale", "odd_aspect_ratio", "odd_size"})


def cleanvision_flags(folder: Path, python: str) -> tuple[dict[str, list[str]], float, dict[str, list[str]]]:
    """CleanVision's quality flags per file, its seconds, and its property flags (grayscale, odd sizes) per file."""
    runner = Path(__file__).with_name("cleanvision_flags_runner.py")
    done = subprocess.run([python, str(runner), str(folder)], capture_output=True, text=True, check=True)
    payload = json.loads(done.stdout)
    quality = {name: [i for i in issues if i not in _PROPERTY_ISSUES] for name, issues in payload["flagged"].items()}
    properties = {name: [i for i in issues if i in _PROPERTY_ISSUES] for name, issues in payload["flagged"].items()}
    return quality, float(payload["seconds"]), properties


def false_alarms(truth: dict[str, tuple[str, int]], flagged: dict[str, list[str]]) -> dict[str, int]:
    """Clean images flagged, per flag."""
    counts: dict[str, int] = {}
    for name, (degradation, _) in truth.items():
        if degradation == "clean":
            for flag in flagged[name]:
                counts[flag] = counts.get(flag, 0) + 1
    return dict(sorted(counts.items()))


def _share(hits: list[bool]) -> float:
    return float(np.mean(hits)) if hits else float("nan")


def compare(truth: dict[str, tuple[str, int]], ours: dict[str, list[str]], theirs: dict[str, list[str]] | None) -> list[dict[str, object]]:
    """One row per (degradation, severity) plus a "clean" row: recalls of the matching flag and of any flag."""
    groups: dict[tuple[str, int], list[str]] = {}
    for name, key in truth.items():
        groups.setdefault(key, []).append(name)
    rows = []
    for (degradation, severity), members in sorted(groups.items(), key=lambda item: (item[0][0] != "clean", item[0])):
        ours_flag, theirs_flag = DEGRADATIONS.get(degradation, (None, None))
        row: dict[str, object] = {"degradation": degradation, "severity": severity, "n": len(members)}
        row["qualoader_flag"] = ours_flag
        row["qualoader_match"] = _share([ours_flag in ours[m] for m in members]) if ours_flag else None
        row["qualoader_any"] = _share([bool(ours[m]) for m in members])
        if theirs is not None:
            row["cleanvision_flag"] = theirs_flag
            row["cleanvision_match"] = _share([theirs_flag in theirs[m] for m in members]) if theirs_flag else None
            row["cleanvision_any"] = _share([bool(theirs[m]) for m in members])
        rows.append(row)
    return rows


def _cell(value: object) -> str:
    return "n/a" if value is None else f"{value:.0%}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict[str, object]], with_cleanvision: bool) -> str:
    header = ["degradation", "severity", "n", "qualoader flag", "recall", "any flag"]
    if with_cleanvision:
        header += ["CleanVision flag", "recall", "any flag"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        clean = row["degradation"] == "clean"
        cells = [str(row["degradation"]) + (" (false alarms)" if clean else ""), "-" if clean else str(row["severity"]), str(row["n"]),
                 "-" if clean else _cell(row["qualoader_flag"]), "-" if clean else _cell(row["qualoader_match"]),
                 _cell(row["qualoader_any"])]
        if with_cleanvision:
            cells += ["-" if clean else _cell(row.get("cleanvision_flag")) if row.get("cleanvision_flag") else "none (no check)",
                      "-" if clean else _cell(row.get("cleanvision_match")), _cell(row.get("cleanvision_any"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", type=int, default=200, help="untouched photos (default: 200)")
    parser.add_argument("--per-cell", type=int, default=20, help="photos per degradation and severity (default: 20)")
    parser.add_argument("--severities", default="1,3,5", help="comma-separated severities 1-5 (default: 1,3,5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", choices=("photos", "fashion-mnist"), default="photos",
                        help="photo crops (default; the folder the flag defaults were chosen on) or the first Fashion-MNIST TEST "
                        "images, 28 px (a held-out check: data no default was chosen on)")
    parser.add_argument("--cleanvision-python", default=None,
                        help="python of an environment with cleanvision==0.3.7 installed (default: CleanVision is skipped)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    # one thread, as CleanVision runs with n_jobs=1: on a shared machine torch's intra-op threads spin against
    # other jobs (measured under load 13 on 2 cores: 0.19 s with one thread, 9.6 s with two, for 200 images)
    torch.set_num_threads(1)
    severities = tuple(int(s) for s in args.severities.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        truth = build_folder(folder, args.clean, args.per_cell, severities, args.seed, args.source)
        names = sorted(truth)
        ours, thresholds, ours_seconds = qualoader_flags(folder, names)
        theirs, theirs_seconds, properties = None, None, None
        if args.cleanvision_python:
            theirs, theirs_seconds, properties = cleanvision_flags(folder, args.cleanvision_python)
        else:
            print("CleanVision skipped: pass --cleanvision-python PATH (a venv with pip install cleanvision==0.3.7)", file=sys.stderr)
    rows = compare(truth, ours, theirs)
    table = markdown_table(rows, theirs is not None)
    what = "photo PNGs of 64-160 px" if args.source == "photos" else "Fashion-MNIST TEST PNGs of 28 px"
    print(f"{len(truth)} {what} ({args.clean} clean, {args.per_cell} per degradation and severity), seed {args.seed}; {machine()}")
    print(f"qualoader: classical measures + flags in {ours_seconds:.1f} s" +
          (f"; CleanVision find_issues in {theirs_seconds:.1f} s (one process, one thread each)" if theirs_seconds is not None else ""))
    print("thresholds fitted on this folder: " + "; ".join(thresholds.values()))
    print(table)
    alarms = {"qualoader": false_alarms(truth, ours)}
    if theirs is not None and properties is not None:
        alarms["cleanvision"] = false_alarms(truth, theirs)
        alarms["cleanvision (image properties, not counted above)"] = false_alarms(truth, properties)
    for tool, counts in alarms.items():
        print(f"clean images flagged, per flag, {tool}: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    if args.out is not None:
        figures = {
            "machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "images": len(truth),
            "qualoader_seconds": ours_seconds, "cleanvision_seconds": theirs_seconds, "thresholds": thresholds, "rows": rows,
            "false_alarms_per_flag": alarms,
            "table": table,
        }
        args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
