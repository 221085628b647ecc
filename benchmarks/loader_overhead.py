"""Loader overhead of the quality middleware, measured against a plain DataLoader in the same run.

Data: the real Fashion-MNIST test split (10,000 images), upsampled to 3x64x64 and PNG-encoded in
memory; every ``__getitem__`` decodes one PNG with PIL (the "decoded images" baseline).

Reported (median of ``--repeats`` alternating epochs; process CPU time with ``--num-workers 0``,
which other jobs on a shared machine disturb less, wall time otherwise):

* ``QualityLoader`` (deferred ``QualityDataset`` + per-batch store read) once every score is stored,
  vs the plain DataLoader: throughput ratio and overhead (target < 10%).
* ``QualityDataset`` in per-sample mode reading the store in ``__getitem__``, vs the plain DataLoader.
* The ``precompute`` pass (decode + score + write) vs a decode-only pass.

Run: ``python benchmarks/loader_overhead.py [--num-workers 0] [--metric sharpness] [--images 10000]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from qualoader.data import QualityDataset, QualityLoader, ScoreStore, precompute
from qualoader.datasets import load_fashion_mnist
from qualoader.metrics import create_metric


class PngDataset(Dataset[tuple[torch.Tensor, int]]):
    """``(uint8 (3, S, S), label)`` samples decoded from in-memory PNG bytes."""

    def __init__(self, blobs: list[bytes], labels: list[int]) -> None:
        self.blobs, self.labels = blobs, labels

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(io.BytesIO(self.blobs[index])) as image:
            array = np.array(image.convert("RGB"))
        return torch.from_numpy(array).permute(2, 0, 1), self.labels[index]


def build_dataset(count: int, size: int) -> PngDataset:
    images, labels = load_fashion_mnist("test")
    images, labels = images[:count], labels[:count]
    blobs = []
    for start in range(0, count, 1000):
        chunk = F.interpolate(images[start : start + 1000].float(), size=(size, size), mode="bilinear", align_corners=False)
        chunk = chunk.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()
        for array in chunk:
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
            blobs.append(buffer.getvalue())
    return PngDataset(blobs, labels.tolist())


#: CPU time of this process with ``num_workers=0`` (robust to other jobs on a shared machine), else wall time.
CLOCK: Callable[[], float] = time.perf_counter


def epoch_seconds(loader: Iterable[Any]) -> float:
    start = CLOCK()
    for _ in loader:
        pass
    return CLOCK() - start


def median_times(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Alternate the runs ``repeats`` times (so load drifts hit all of them) and keep medians."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--metric", default="sharpness")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (shared machine: keep small)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.num_workers == 0 else time.perf_counter

    start = time.perf_counter()
    base = build_dataset(args.images, args.size)
    print(f"built {len(base)} PNG images 3x{args.size}x{args.size} in {time.perf_counter() - start:.1f}s; "
          f"batch_size={args.batch_size}, num_workers={args.num_workers}, metric={args.metric}, threads={args.threads}, "
          f"clock={'process CPU time' if args.num_workers == 0 else 'wall time'}")
    metric = create_metric(args.metric)
    common = {"batch_size": args.batch_size, "num_workers": args.num_workers, "persistent_workers": args.num_workers > 0}

    with tempfile.TemporaryDirectory() as folder:
        store = ScoreStore(f"{folder}/scores", len(base))
        runs = iter(range(1_000_000))

        def run_precompute() -> float:  # each run fills a new, empty store
            start = CLOCK()
            precompute(
                base, metric, f"{folder}/fresh-{next(runs)}", batch_size=args.batch_size, num_workers=args.num_workers, progress=False
            )
            return CLOCK() - start

        precompute(base, metric, store, batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
        plain = DataLoader(base, **common)
        wrapped = QualityLoader(DataLoader(QualityDataset(base), **common), metric, "cpu", store=store)
        per_sample = DataLoader(QualityDataset(base, metric, store=store), **common)
        epoch_seconds(plain), epoch_seconds(wrapped), epoch_seconds(per_sample)  # warm-up (workers, caches)
        scored_before = wrapped.scored_batches
        times = median_times(
            {
                "plain DataLoader (decode only)": lambda: epoch_seconds(plain),
                "QualityLoader, scores stored": lambda: epoch_seconds(wrapped),
                "QualityDataset per-sample, scores stored": lambda: epoch_seconds(per_sample),
                "precompute (decode + score + write)": run_precompute,
            },
            args.repeats,
        )
        assert wrapped.scored_batches == scored_before, "stored epochs should not call the metric"

    baseline = times["plain DataLoader (decode only)"]
    print(f"\n{'run':<44}{'s/epoch':>9}{'img/s':>10}{'time ratio':>12}")
    for name, seconds in times.items():
        print(f"{name:<44}{seconds:>9.3f}{args.images / seconds:>10.0f}{seconds / baseline:>12.3f}")
    overhead = times["QualityLoader, scores stored"] / baseline - 1
    print(f"\nQualityLoader overhead once scores are stored: {overhead:+.1%} (target < 10%)")
    print(f"per-sample QualityDataset overhead:            {times['QualityDataset per-sample, scores stored'] / baseline - 1:+.1%}")
    print(f"precompute pass / decode-only pass:            {times['precompute (decode + score + write)'] / baseline:.2f}x")


if __name__ == "__main__":
    main()
