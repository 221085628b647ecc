"""What the score store's content digest costs: hashing a file (BLAKE2b of its size and bytes) against decoding it.

Builds ``--count`` (default 512) PNGs and as many JPEGs of ``--size`` px (default 224) from crops of the
scikit-image photos (fixed seed), then times in one process, best of ``--repeats`` interleaved runs:

* ``decode``: :func:`qualoader.decoding.load_image` of every file (what a ``precompute`` worker does per image);
* ``digest``: :func:`qualoader.data._provenance.file_digest` of every file (what the worker adds, and what a
  run that checks already-scored files does per file instead of decoding it).

Prints milliseconds per image and the ratio digest / decode for each format. The files are read from the
page cache in both (a first read from disk costs both the same I/O). Run: ``python benchmarks/store_digest_cost.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from qualoader.data._provenance import file_digest
from qualoader.datasets import load_photos
from qualoader.decoding import load_image


def _files(folder: Path, count: int, size: int, suffix: str) -> list[Path]:
    photos = (load_photos(512).permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        photo = photos[rng.integers(len(photos))]
        top, left = rng.integers(0, 512 - size, size=2)
        path = folder / f"{k:05d}{suffix}"
        options = {"quality": 90} if suffix == ".jpg" else {}
        Image.fromarray(photo[top : top + size, left : left + size]).save(path, **options)
        paths.append(path)
    return paths


def _time(function, paths: list[Path]) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for path in paths:
        function(path)
    return (time.perf_counter() - start) / len(paths) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".png", ".jpg"):
            paths = _files(Path(folder), args.count, args.size, suffix)
            decode, digest = [], []
            for _ in range(args.repeats):
                decode.append(_time(load_image, paths))
                digest.append(_time(file_digest, paths))
            size = np.mean([p.stat().st_size for p in paths]) / 1024
            print(
                f"{suffix[1:]:>4} {args.size} px ({size:.0f} KiB): decode {min(decode):.3f} ms/img, digest {min(digest):.3f} ms/img, "
                f"digest/decode {min(digest) / min(decode):.3f}"
            )


if __name__ == "__main__":
    main()
