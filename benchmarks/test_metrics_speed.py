"""Throughput of every registered metric at 64x3x224x224 on CPU, against pyiqa where it has the metric.

Run with pytest-benchmark (prints a ratio table at the end of the module)::

    OMP_NUM_THREADS=1 pytest benchmarks/test_metrics_speed.py

or as a plain script (no pytest; ``--repeats`` timed calls after one warm-up)::

    OMP_NUM_THREADS=1 python benchmarks/test_metrics_speed.py --repeats 3

Both sides score the same batch of real photos (a noisy copy against the clean one for FR
metrics) in the same process with the same thread count; ratio = ours / pyiqa in images/s.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable

import pytest
import torch

from qualoader.datasets import load_photos
from qualoader.metrics import create_metric, list_metrics, metric_info

BATCH, SIZE = 64, 224
#: our metric name -> (pyiqa name, pyiqa options giving the same definition)
PYIQA_EQUIVALENT: dict[str, tuple[str, dict]] = {
    "psnr": ("psnr", {}),
    "ssim": ("ssim", {}),
    "ms-ssim": ("ms_ssim", {}),
    "entropy": ("entropy", {}),
}
OURS = [name for name in list_metrics() if not metric_info(name).requires_weights]


def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """64 real photos (the 15 skimage photos, tiled) at 224 px and a seeded noisy copy."""
    photos = load_photos(SIZE)
    clean = photos.repeat((BATCH + len(photos) - 1) // len(photos), 1, 1, 1)[:BATCH].contiguous()
    generator = torch.Generator().manual_seed(0)
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    return noisy, clean


def scorer(implementation: str, name: str, images: torch.Tensor, reference: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A no-argument callable that scores the batch once with ``implementation`` ("ours"/"pyiqa")."""
    if implementation == "ours":
        metric = create_metric(name, device="cpu", check_values=False)
        fr = metric.requires_reference
    else:
        import pyiqa

        pyiqa_name, options = PYIQA_EQUIVALENT[name]
        metric = pyiqa.create_metric(pyiqa_name, device="cpu", **options)
        fr = metric.metric_mode == "FR"

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return metric(images, reference) if fr else metric(images)

    return run


def ratio_table(seconds: dict[tuple[str, str], float]) -> list[str]:
    """Lines of a table: metric, ours img/s, pyiqa img/s, ratio."""
    lines = [f"{'metric':16s} {'ours img/s':>11s} {'pyiqa img/s':>12s} {'ours/pyiqa':>11s}"]
    for name in sorted({name for _, name in seconds}):
        ours = BATCH / seconds[("ours", name)] if ("ours", name) in seconds else float("nan")
        if ("pyiqa", name) in seconds:
            theirs = BATCH / seconds[("pyiqa", name)]
            lines.append(f"{name:16s} {ours:11.1f} {theirs:12.1f} {ours / theirs:10.2f}x")
        else:
            lines.append(f"{name:16s} {ours:11.1f} {'-':>12s} {'-':>11s}")
    return lines


# ---------------------------------------------------------------------------------------- pytest
CASES = [("ours", name) for name in OURS] + [("pyiqa", name) for name in sorted(PYIQA_EQUIVALENT)]


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return make_batch()


@pytest.fixture(scope="module")
def timings(request: pytest.FixtureRequest):
    results: dict[tuple[str, str], float] = {}
    yield results
    if not results:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        print(f"\nmetric throughput at {BATCH}x3x{SIZE}x{SIZE}, CPU, {torch.get_num_threads()} thread(s):")
        print("\n".join(ratio_table(results)))


@pytest.mark.parametrize(("implementation", "name"), CASES, ids=[f"{i}-{n}" for i, n in CASES])
def test_metric_throughput(implementation, name, batch, timings, benchmark):
    if implementation == "pyiqa":
        pytest.importorskip("pyiqa")
    run = scorer(implementation, name, *batch)
    benchmark.group = name
    benchmark.extra_info["images_per_call"] = BATCH
    scores = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert scores.reshape(-1).shape == (BATCH,)
    if benchmark.stats is not None:  # None under --benchmark-disable
        timings[(implementation, name)] = benchmark.stats.stats.median


# ---------------------------------------------------------------------------------------- script
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per metric (median is reported)")
    args = parser.parse_args()
    images, reference = make_batch()
    seconds: dict[tuple[str, str], float] = {}
    for implementation, name in CASES:
        run = scorer(implementation, name, images, reference)
        run()  # warm-up
        samples = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            samples.append(time.perf_counter() - start)
        seconds[(implementation, name)] = sorted(samples)[len(samples) // 2]
    print(f"metric throughput at {BATCH}x3x{SIZE}x{SIZE}, CPU, {torch.get_num_threads()} thread(s):")
    print("\n".join(ratio_table(seconds)))


if __name__ == "__main__":
    main()
