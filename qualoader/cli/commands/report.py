"""``qualoader report``: a static HTML quality report (plus PNGs) of a dataset or of WebDataset shards.

SOURCE is a folder of images (flat or ImageFolder-style), 'fashion-mnist:test' / 'fashion-mnist:train',
one or more .tar shards, or a folder of .tar shards. Tagged shards (with quality.json members)
are read without decoding for the metrics they carry; other metrics decode and score the images.
Open DIR/index.html in a browser: it needs no server.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a static HTML quality report (distributions, difficulty, examples, shards)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", nargs="+", metavar="DATASET_OR_SHARDS", help="image folder, fashion-mnist:<split>, .tar shards or a folder of shards")
    parser.add_argument("--metric", action="append", required=True, help="no-reference metric name; repeat for several")
    parser.add_argument("--out", required=True, type=Path, help="output folder (index.html, report.json, plots/, thumbs/)")
    parser.add_argument("--max-images", type=int, default=5000, help="report on at most this many images (default: 5000)")
    parser.add_argument("--examples", type=int, default=8, help="lowest/highest-quality thumbnails per metric (default: 8)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per metric call (default: 64)")
    parser.add_argument("--device", default="cpu", help="torch device for the metrics (default: cpu)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qualoader.report import build_report

    index = build_report(
        args.source if len(args.source) > 1 else args.source[0],
        args.metric,
        args.out,
        max_images=args.max_images,
        examples=args.examples,
        batch_size=args.batch_size,
        device=args.device,
    )
    print(index)
    return 0
