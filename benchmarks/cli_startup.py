"""Whole-process timings of the ``qualoader`` command line: what a user waits for, start-up included.

Builds ``--count`` PNGs (default 1024) of ``--size`` px (default 224), in ``images/photos/``, from seeded random crops of
the scikit-image photos, then times each command below as a fresh subprocess, ``--repeats`` times
(default 5, interleaved so that load on a shared machine spreads over all of them), and reports the
median wall-clock seconds and ratios against baselines measured in the same run:

* ``python -c pass``: the interpreter alone;
* ``import torch``: the floor of any command that scores;
* ``decode only``: a process that imports torch and decodes every PNG with qualoader's decoder in a
  DataLoader with ``--workers`` workers and nothing else (the work no scorer can avoid);
* ``qualoader --help``;
* ``precompute, first image``: ``qualoader precompute DIR --metric classical --limit 1`` into a new
  store: start-up plus one image, i.e. the time before the first image is scored;
* ``precompute, all images``: ``qualoader precompute DIR --metric classical --num-workers W`` into a
  new store (the command of the comparison with CleanVision);
* ``precompute, no head start``: the same with ``QUALOADER_HEAD_START=0``, i.e. without the process
  that decodes the folder while torch is imported (:mod:`qualoader.cli._head_start`): what the head
  start gains, measured in the same run;
* ``cleanvision`` (with ``--cleanvision-python PATH``, the interpreter of a venv holding CleanVision):
  ``Imagelab(data_path=DIR).find_issues()`` as a whole process on the same folder, each run right after
  a precompute run; the benchmark then prints how many times faster precompute is: the median of the
  per-run ratios (CleanVision's seconds / precompute's; a pair shares the machine's load) and the ratio
  of the medians.

``--only NAME`` (repeatable) times a subset of these commands (e.g. the two of the comparison).

``--pythonpath`` chooses the qualoader checkout the commands import (default: this one), so one
run can time two checkouts on the same machine and the same images. ``--json`` writes the figures.
Run: ``python benchmarks/cli_startup.py --count 256 --repeats 3``; the comparison with CleanVision:
``python benchmarks/cli_startup.py --cleanvision-python /path/to/cv-venv/bin/python --only cleanvision --only "precompute, all images"``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_DECODE = """
import sys, torch
from pathlib import Path
from torch.utils.data import DataLoader
from qualoader.decoding import load_image
paths = sorted(Path(sys.argv[1]).rglob('*.png'))
loader = DataLoader(paths, batch_size=64, num_workers=int(sys.argv[2]), collate_fn=lambda batch: [load_image(p) for p in batch])
count = sum(len(batch) for batch in loader)
assert count == len(paths)
"""

# CleanVision's whole run as a user starts it: its own imports, the folder scan, every default check.
_CLEANVISION = """
import sys
from cleanvision import Imagelab
Imagelab(data_path=sys.argv[1]).find_issues()
"""


def write_images(folder: Path, count: int, size: int, seed: int = 0) -> None:
    """``count`` PNGs of ``size`` px: random crops (seeded) of the scikit-image photos at twice the size."""
    import torch
    from PIL import Image

    from qualoader.datasets import load_photos

    photos = load_photos(size=2 * size)
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        photo = photos[k % photos.shape[0]]
        top, left = torch.randint(0, size + 1, (2,), generator=generator).tolist()
        crop = photo[:, top : top + size, left : left + size]
        Image.fromarray((crop.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"{k:05d}.png")


def time_command(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Wall-clock seconds of one subprocess run of ``argv``; a failure stops the benchmark with its stderr."""
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1024, help="PNGs in the folder (default: 1024)")
    parser.add_argument("--size", type=int, default=224, help="side of each PNG in pixels (default: 224)")
    parser.add_argument("--workers", type=int, default=2, help="--num-workers of precompute and of the decode baseline (default: 2)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command; the median is reported (default: 5)")
    parser.add_argument("--pythonpath", default=str(REPO), help="the qualoader checkout the commands import (default: this one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--cleanvision-python", type=Path, default=None, metavar="PATH",
                        help="python of a venv with CleanVision installed: also time its whole run on the same folder")
    parser.add_argument("--only", action="append", default=None, metavar="NAME", help="time only this command (repeatable)")
    args = parser.parse_args(argv)

    env = {**os.environ, "PYTHONPATH": args.pythonpath}
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="qualoader-cli-startup-") as temp:
        root = Path(temp)
        images = root / "images"
        # one class folder: the ImageFolder layout every version of precompute reads (flat folders are newer)
        write_images(images / "photos", args.count, args.size)
        stores = iter(range(10**6))
        commands = {
            "python -c pass": lambda: [python, "-c", "pass"],
            "import torch": lambda: [python, "-c", "import torch"],
            "decode only": lambda: [python, "-c", _DECODE, str(images), str(args.workers)],
            "qualoader --help": lambda: [python, "-m", "qualoader", "--help"],
            "precompute, first image": lambda: [
                python, "-m", "qualoader", "precompute", str(images), "--store", str(root / f"store{next(stores)}"),
                "--metric", "classical", "--limit", "1", "--no-progress",
            ],
            "precompute, all images": lambda: [
                python, "-m", "qualoader", "precompute", str(images), "--store", str(root / f"store{next(stores)}"),
                "--metric", "classical", "--num-workers", str(args.workers), "--no-progress",
            ],
            "precompute, no head start": lambda: [
                python, "-m", "qualoader", "precompute", str(images), "--store", str(root / f"store{next(stores)}"),
                "--metric", "classical", "--num-workers", str(args.workers), "--no-progress",
            ],
        }  # fmt: skip
        environments = {"precompute, no head start": {**env, "QUALOADER_HEAD_START": "0"}}
        if args.cleanvision_python is not None:
            commands["cleanvision"] = lambda: [str(args.cleanvision_python), "-c", _CLEANVISION, str(images)]
        if args.only:
            unknown = sorted(set(args.only) - set(commands))
            if unknown:
                parser.error(f"--only should name commands of {sorted(commands)}, but got --only={unknown}")
            commands = {name: argv for name, argv in commands.items() if name in args.only}
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):  # interleaved: a burst of load on the machine hits every command alike
            for name, argv in commands.items():
                times[name].append(time_command(argv(), environments.get(name, env), root))
    medians = {name: statistics.median(values) for name, values in times.items()}
    torch_s, decode_s = medians.get("import torch", float("nan")), medians.get("decode only", float("nan"))
    print(f"{args.count} PNGs of {args.size} px, {args.workers} workers, median of {args.repeats} runs, qualoader from {args.pythonpath}")
    print(f"{'command':<26}{'median s':>10}{'min s':>9}{'x import torch':>16}{'x decode only':>15}")
    for name, median in medians.items():
        print(f"{name:<26}{median:>10.2f}{min(times[name]):>9.2f}{median / torch_s:>16.2f}{median / decode_s:>15.2f}")
    precompute_s = medians.get("precompute, all images")
    if precompute_s is not None:
        rate, decode_rate = args.count / precompute_s, args.count / decode_s
        print(f"precompute, all images: {rate:.0f} images/s as a whole process ({decode_rate:.0f} for decode only)")
        if "precompute, no head start" in medians:
            print(f"the head start makes it {medians['precompute, no head start'] / precompute_s:.2f}x as fast (medians)")
    if precompute_s is not None and "cleanvision" in medians:
        # per run too: the machine's load changes between runs, a pair run back to back shares it
        pairs = sorted(cv / qualoader for cv, qualoader in zip(times["cleanvision"], times["precompute, all images"]))
        per_run = ", ".join(f"{ratio:.2f}" for ratio in pairs)
        print(f"precompute vs CleanVision, whole processes: {statistics.median(pairs):.2f}x as fast (median of the per-run ratios "
              f"{per_run}; ratio of the medians {medians['cleanvision'] / precompute_s:.2f}x: CleanVision {medians['cleanvision']:.2f} s, "
              f"precompute {precompute_s:.2f} s)")
    if args.json is not None:
        payload = {"count": args.count, "size": args.size, "workers": args.workers, "repeats": args.repeats, "seconds": times}
        if precompute_s is not None and "cleanvision" in medians:
            payload["cleanvision_ratio"] = statistics.median(
                cv / qualoader for cv, qualoader in zip(times["cleanvision"], times["precompute, all images"])
            )
        args.json.write_text(json.dumps({**payload, "median_s": medians}, indent=1) + "\n")


if __name__ == "__main__":
    main()
