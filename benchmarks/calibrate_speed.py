"""How long ``qualoader calibrate`` takes for three metrics from one sweep, against one metric alone, in the same run.

The setting of the day-one user: 1000 RGB images of 64 px in 4 class folders and a torchvision
ResNet-18 with 4 outputs as the reference (random weights saved to a temporary file: nothing is
downloaded, and the timing does not depend on what the weights learned). It times whole
``calibrate`` commands in this process (data loading, the sweep, head training, fits and writes):

* ``--metric confidence,task-guided,bn-shift`` (one sweep, one forward pass per batch for all three);
* each metric alone (``--only`` picks which; default: all three, so the ratio is to the slowest).

Goal: all three in <= 180 s, and <= 1.3x one metric alone. Weak fits are expected with random
weights, so ``--allow-weak`` is passed: the figures here are time, not quality.

Run: ``python benchmarks/calibrate_speed.py [--images 1000] [--size 64] [--threads N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

METRICS = ("confidence", "task-guided", "bn-shift")
CLASSES = ("circle", "stripes", "checker", "blob")


def write_folder(root: Path, images: int, size: int, seed: int = 0) -> Path:
    """``images`` PNGs of ``size`` px in 4 class folders: seeded patterns with noise, so a network's errors vary."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for index in range(images):
        label = index % len(CLASSES)
        phase, scale = rng.uniform(0, 6.28), rng.uniform(4, 12)
        pattern = [
            ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < rng.uniform(0.05, 0.2)).astype(float),
            0.5 + 0.5 * np.sin(scale * 6.28 * xx + phase),
            ((np.floor(xx * scale) + np.floor(yy * scale)) % 2).astype(float),
            np.exp(-((xx - rng.uniform(0.2, 0.8)) ** 2 + (yy - rng.uniform(0.2, 0.8)) ** 2) * scale),
        ][label]
        colour = rng.uniform(0.3, 1.0, size=3)
        pixels = np.clip(pattern[..., None] * colour + rng.normal(0, 0.05, (size, size, 3)), 0, 1)
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255).astype(np.uint8)).save(folder / f"{index:05d}.png")
    return root


def time_calibrate(metrics: str, data: Path, weights: Path, out: Path, extra: Sequence[str]) -> tuple[float, dict]:
    """Seconds of one ``calibrate`` command and its JSON summary."""
    from qualoader.cli import main

    argv = [
        "calibrate", "--reference", "resnet18", "--weights", str(weights), "--input-size", "64", "--labels", ",".join(CLASSES),
        "--metric", metrics, "--data", str(data), "--allow-weak", "--out", str(out), *extra,
    ]
    stdout = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(stdout):
        code = main(argv)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"calibrate {metrics} failed with exit code {code}")
    return seconds, json.loads(stdout.getvalue())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="*", default=list(METRICS), choices=METRICS, help="single-metric runs to time")
    parser.add_argument("--progress", action="store_true", help="show calibrate's phase lines")
    args = parser.parse_args(argv)
    from torchvision.models import resnet18

    extra = ["--max-images", str(args.images)] + ([] if args.progress else ["--no-progress"])
    if args.threads:
        extra += ["--threads", str(args.threads)]
    with tempfile.TemporaryDirectory(prefix="qualoader-calibrate-speed-") as scratch:
        root = Path(scratch)
        data = write_folder(root / "data", args.images, args.size)
        weights = root / "resnet18.pt"
        torch.save(resnet18(weights=None, num_classes=len(CLASSES)).state_dict(), weights)
        joint, summary = time_calibrate(",".join(METRICS), data, weights, root / "joint", extra)
        single = {name: time_calibrate(name, data, weights, root / f"{name}.json", extra)[0] for name in args.only}
    slowest = max(single.values())
    report = {
        "images": args.images,
        "size": args.size,
        "torch_threads": torch.get_num_threads(),
        "three_metrics_s": round(joint, 1),
        "single_metric_s": {name: round(value, 1) for name, value in single.items()},
        "ratio_to_slowest_single": round(joint / slowest, 2),
        "held_out_auroc": {name: part["held_out"]["auroc"] for name, part in summary.items()},
        "goal": "three_metrics_s <= 180 and ratio <= 1.3",
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
