"""``qualoader report``: a static HTML quality report (plus PNGs) of a dataset or of WebDataset shards.

SOURCE is fashion-mnist[:train|test] (the full local copy, else the bundled sample), a folder of
images (flat or ImageFolder-style), one or more .tar shards (brace patterns allowed), or a folder of
.tar shards. Tagged shards (with quality.json members) are read without decoding for the metrics
they carry; other metrics decode and score the images. Open DIR/index.html in a browser: it needs
no server.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qualoader.cli._errors import UserError, user_errors
from qualoader.cli._profiles import add_profile_argument, cli_metrics
from qualoader.cli._sources import SOURCE_HELP, parse_source

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a static HTML quality report (distributions, difficulty, examples, shards)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", nargs="+", metavar="SOURCE", help=SOURCE_HELP)
    parser.add_argument(
        "--metric", action="append", default=[], help="no-reference metric(s): a name, a,b,c or the suite classical (repeatable)"
    )
    add_profile_argument(parser, repeat=True)
    parser.add_argument("--out", required=True, type=Path, help="output folder (index.html, report.json, plots/, thumbs/)")
    parser.add_argument("--max-images", type=int, default=5000, help="report on at most this many images (default: 5000)")
    parser.add_argument("--examples", type=int, default=8, help="lowest/highest-quality thumbnails per metric (default: 8)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per metric call (default: 64)")
    parser.add_argument("--device", default="cpu", help="torch device for the metrics (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qualoader._validation import check_positive_int
    from qualoader.report import build_report

    with user_errors():
        for option in ("max_images", "examples", "batch_size"):
            check_positive_int(getattr(args, option), f"--{option.replace('_', '-')}")
        source = parse_source(args.source).report_source()
        if len(set(args.metric)) != len(args.metric):
            raise UserError(f"--metric should name distinct metrics, but got --metric={args.metric}")
        metrics = cli_metrics(args.metric, args.profile, device=args.device, strict=args.strict, downscale=args.downscale,
                              trust=args.trust_profile)
        if args.out.exists() and not args.out.is_dir():
            raise UserError(f"--out should be a folder, but got --out={str(args.out)!r}, which is a file")
        # Reading the source checks it (missing shards, no images) before any scoring starts.
        from qualoader.report.sources import load_source

        load_source(source, max_images=1)
    from qualoader.profiles import DomainError

    try:
        index = build_report(
            source,
            metrics,
            args.out,
            max_images=args.max_images,
            examples=args.examples,
            batch_size=args.batch_size,
            device=args.device,
            progress=not args.no_progress,
        )
    except DomainError as error:  # --strict: images outside an aligned metric's domain are the user's to fix
        raise UserError(str(error)) from error
    print(index)
    return 0
