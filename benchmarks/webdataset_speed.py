"""Throughput of quality-tagged WebDataset streaming: samples/s with and without scoring.

Builds shards from real images (Fashion-MNIST 28x28 and scikit-image photos at 256x256, PNG),
then times, in one process with one torch thread:

* ``read``: strict tar reading (``read_shards``), no decoding;
* ``read+decode``: plus PNG decoding to tensors (what any image pipeline pays);
* ``read+annotate``: ``annotate_quality(metric, batch_size=64)`` (decoding + batched scoring);
* ``read+.decode``: webdataset's own ``.decode("torchrgb8")`` (what a training pipeline runs anyway);
* ``read+.decode+annotate``: the stage after ``.decode(...)``: it scores the decoded tensors, so each
  image is decoded once; the ratio to ``read+.decode`` is what scoring adds to a decoding pipeline;
* ``tag``: the whole ``tag_shards`` pass (read, score, write tagged shards and sidecars);
* ``read tagged+filter``: reading the tagged shards and filtering on ``quality.json`` (no scoring).

Each figure is the best of ``--repeats`` runs; ratios are against ``read`` and ``read+decode``
measured in the same run (the goal: ``read+annotate`` >= 0.85x ``read+decode`` at 256 px with a
classical metric). ``--device cuda`` scores on the GPU. Run:
``python benchmarks/webdataset_speed.py [--quick] [--metric sharpness] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import webdataset as wds

from qualoader.datasets import load_fashion_mnist, load_photos
from qualoader.engine import parse_metric_spec
from qualoader.webdataset import (
    annotate_quality,
    decode_image,
    filter_quality,
    read_shards,
    tag_shards,
    write_image_shards,
)


def _count(iterable: object) -> int:
    return sum(1 for _ in iterable)  # type: ignore[union-attr]


def _decode_all(samples: object) -> object:
    for sample in samples:  # type: ignore[union-attr]
        sample["image"] = decode_image(sample["png"])
        yield sample


#: ``time.perf_counter`` (wall clock) or ``time.process_time`` (CPU time of this process, which a
#: machine shared with other jobs does not inflate); set by ``--clock``.
_CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = _CLOCKS["wall"]


def _best(run: Callable[[], int], repeats: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeats):
        start = _clock()
        count = run()
        best = min(best, _clock() - start)
    return count / best, count


def bench(name: str, shards: list[str], spec: str, repeats: int, workdir: Path, device: str = "cpu") -> dict[str, float]:
    metric = parse_metric_spec(spec)

    def source() -> wds.DataPipeline:
        return wds.DataPipeline(wds.SimpleShardList(shards), read_shards())

    def decoded() -> wds.DataPipeline:
        return wds.DataPipeline(wds.SimpleShardList(shards), read_shards(), wds.decode("torchrgb8"))

    results: dict[str, float] = {}
    results["read"], n = _best(lambda: _count(source()), repeats)
    results["read+decode"], _ = _best(lambda: _count(_decode_all(source())), repeats)
    results["read+annotate"], _ = _best(lambda: _count(annotate_quality(metric, batch_size=64, device=device)(source())), repeats)
    results["read+.decode"], _ = _best(lambda: _count(decoded()), repeats)
    results["read+.decode+annotate"], _ = _best(lambda: _count(annotate_quality(metric, batch_size=64, device=device)(decoded())), repeats)
    out = workdir / f"{name}-tagged"
    results["tag"], _ = _best(
        lambda: tag_shards(shards, out, metric, batch_size=64, maxcount=1000, device=device, overwrite=True).count, repeats
    )
    tagged = sorted(str(p) for p in out.glob("*.tar"))
    results["read tagged+filter"], _ = _best(
        lambda: _count(filter_quality(metric[0], low=0.0)(wds.DataPipeline(wds.SimpleShardList(tagged), read_shards()))), repeats
    )
    print(f"\n{name}: {n} samples, metrics {metric}")
    print(f"  {'stage':<22} {'samples/s':>12} {'vs read':>9} {'vs decode':>10}")
    for key, rate in results.items():
        print(f"  {key:<22} {rate:>12.0f} {rate / results['read']:>9.3f} {rate / results['read+decode']:>10.3f}")
    print(f"  read+.decode+annotate / read+.decode: {results['read+.decode+annotate'] / results['read+.decode']:.3f}")
    return {"samples": n, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    parser.add_argument("--metric", default="sharpness", help="a metric, 'a,b,c' or a suite such as 'classical'")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--clock", choices=sorted(_CLOCKS), default="wall", help="wall clock, or this process's CPU time (for a shared machine)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "webdataset_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    global _clock
    _clock = _CLOCKS[args.clock]
    repeats = 1 if args.quick else 3
    n_fm, n_photo = (1000, 60) if args.quick else (5000, 300)
    images, labels = load_fashion_mnist("test")
    photos = load_photos(256)
    report = {
        "machine": platform.processor() or platform.machine(),
        "torch_threads": 1,
        "repeats": repeats,
        "metric": args.metric,
        "device": args.device,
        "clock": args.clock,
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        fm = [str(p) for p in write_image_shards(images[:n_fm], str(workdir / "fm-%06d.tar"), labels=labels[:n_fm], maxcount=1000)]
        photo_images = [photos[i % len(photos)] for i in range(n_photo)]
        ph = [str(p) for p in write_image_shards(photo_images, str(workdir / "photo-%06d.tar"), maxcount=100)]
        report["fashion_mnist_28px"] = bench("fashion-mnist 28x28", fm, args.metric, repeats, workdir, args.device)
        report["photos_256px"] = bench("photos 256x256", ph, args.metric, repeats, workdir, args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
