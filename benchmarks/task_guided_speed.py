"""``task-guided`` throughput at 224 px on one CPU thread: the former full-resolution statistics vs the metric now.

Both sides run in the same process on the same batches of real photos (scikit-image, 224 px RGB):

* ``before``: what the metric computed up to version 1 of its head: input validation, the 16
  image statistics of :func:`~qualoader.metrics.aligned.task_guided.task_guided_features` at full
  resolution, and a 16-input MLP head;
* ``after``: ``create_metric("task-guided")`` as shipped (statistics and reference-network
  response at the reference's 28 px input).

Usage (from the repository root)::

    python -m benchmarks.task_guided_speed [--batch-size 64] [--repeats 5] [--size 224]

Prints a JSON object with images per second of both and their ratio (median over repeats).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch

from qualoader._validation import check_images
from qualoader.datasets import load_photos
from qualoader.metrics import create_metric
from qualoader.metrics.aligned.task_guided import TaskGuidedHead, task_guided_features


def _throughput(score: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, repeats: int) -> float:
    """Median images per second of ``score(batch)`` over ``repeats`` timed calls (after one warm-up)."""
    score(batch)
    rates = []
    for _ in range(repeats):
        tick = time.perf_counter()
        score(batch)
        rates.append(batch.shape[0] / (time.perf_counter() - tick))
    return statistics.median(rates)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    photos = load_photos(args.size)
    batch = photos.repeat((args.batch_size + photos.shape[0] - 1) // photos.shape[0], 1, 1, 1)[: args.batch_size].contiguous()
    former_head = TaskGuidedHead().requires_grad_(False)  # same size as the version-1 head: 16 -> 64 -> 64 -> 1

    @torch.no_grad()
    def before(images: torch.Tensor) -> torch.Tensor:
        return former_head(task_guided_features(check_images(images)))

    metric = create_metric("task-guided")
    with torch.no_grad():
        after_rate = _throughput(metric, batch, args.repeats)
        before_rate = _throughput(before, batch, args.repeats)
        after_rate = max(after_rate, _throughput(metric, batch, args.repeats))  # interleaved, so load shifts hit both sides
        before_rate = max(before_rate, _throughput(before, batch, args.repeats))
    result = {
        "images": f"{args.batch_size} x 3 x {args.size} x {args.size} (scikit-image photos)",
        "threads": args.threads,
        "inputs": metric.inputs,
        "before_images_per_s": round(before_rate, 1),
        "after_images_per_s": round(after_rate, 1),
        "speedup": round(after_rate / before_rate, 2),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
