"""Rebuild ``qualoader/assets/fashion_mnist_sample.npz`` from a full local copy of Fashion-MNIST.

The sample is the first ``--test`` images of the TEST split and the first ``--train`` images of the
TRAIN split, with their labels, so that ``images[:k]`` of the sample equals ``images[:k]`` of the
full split: a computation on a prefix gives the same numbers with either copy. The members are
LZMA-compressed inside the ``.npz`` (about 15% smaller than numpy's deflate; ``numpy.load`` reads
them as usual) and the zip timestamps are fixed, so the same inputs give the same bytes.

Fashion-MNIST: Han Xiao, Kashif Rasul, Roland Vollgraf, Zalando Research (2017), MIT licence,
https://github.com/zalandoresearch/fashion-mnist.

Usage (from the repository root; needs the full idx files, e.g. the Debian package
``dataset-fashion-mnist``)::

    python tools/build_fashion_mnist_sample.py                      # 3000 test + 2000 train
    python tools/build_fashion_mnist_sample.py --root /data/fashion-mnist --test 3000 --train 2000
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np

from qualoader.datasets import load_fashion_mnist

_ASSET = Path(__file__).resolve().parents[1] / "qualoader" / "assets" / "fashion_mnist_sample.npz"
#: A fixed zip timestamp: the archive's bytes depend only on the images.
_EPOCH = (2020, 1, 1, 0, 0, 0)


def build(out: Path, root: str | None, num_test: int, num_train: int) -> dict[str, str]:
    """Write the sample to ``out`` atomically; returns ``{member: sha256 of its array bytes}``."""
    arrays: dict[str, np.ndarray] = {}
    for split, count in (("test", num_test), ("train", num_train)):
        images, labels = load_fashion_mnist(split, root=root, source="full")
        if count > images.shape[0]:
            raise ValueError(f"--{split} should be at most {images.shape[0]}, but got --{split}={count}")
        arrays[f"{split}_images"] = images[:count, 0].numpy()  # (count, 28, 28) uint8
        arrays[f"{split}_labels"] = labels[:count].numpy().astype(np.uint8)  # (count,) uint8
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_LZMA) as archive:
        for name, array in sorted(arrays.items()):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_LZMA
            archive.writestr(info, buffer.getvalue())
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    partial.replace(out)
    return {name: hashlib.sha256(array.tobytes()).hexdigest() for name, array in sorted(arrays.items())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default=None, help="folder with the full idx files (default: $QUALOADER_FASHION_MNIST or the Debian path)"
    )
    parser.add_argument("--test", type=int, default=3000, help="first N test images (default: 3000)")
    parser.add_argument("--train", type=int, default=2000, help="first N train images (default: 2000)")
    parser.add_argument("--out", type=Path, default=_ASSET, help=f"output file (default: {_ASSET})")
    args = parser.parse_args(argv)
    digests = build(args.out, args.root, args.test, args.train)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    for name, digest in digests.items():
        print(f"  {name}: sha256 {digest}")


if __name__ == "__main__":
    main()
