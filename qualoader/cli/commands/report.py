"""``qualoader report``: a static HTML quality report (plus PNGs) of a dataset or of WebDataset shards.

SOURCE is fashion-mnist[:train|test] (the full local copy, else the bundled sample), a folder of
images (flat or ImageFolder-style), one or more .tar shards (brace patterns allowed), or a folder of
.tar shards. Tagged shards (with quality.json members) are read without decoding for the metrics
they carry; other metrics decode and score the images. Open DIR/index.html in a browser: it needs
no server.

The report is written to a hidden staging folder beside --out and moved into place when complete:
a failure (a full disk, a read-only file system, Ctrl-C) leaves --out as it was, with one line naming
the problem. A staging folder left by a killed run (kill -9) is removed by the next report into the
same --out (never one a running report holds). --out must not be, contain or lie inside the image folder, a shard or a profile (a
report inside the image folder would be read as images next time).
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from qualoader.cli._errors import UserError, as_option, check_outputs, output_errors, user_errors
from qualoader.cli._flags import add_flags_argument, parse_flags_option
from qualoader.cli._profiles import add_profile_argument, cli_metrics
from qualoader.cli._sources import SOURCE_HELP, Source, parse_source

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
    add_flags_argument(parser, "the flags the Flags section shows (default: every flag whose measure is scored, fitted thresholds)")
    parser.set_defaults(func=run)


def _inputs(parsed: Source, profiles: list[Path]) -> list[tuple[str, object]]:
    """What ``--out`` must not overlap: the image folder, or the shards and their sidecars; the profiles."""
    from qualoader._outputs import sidecar_inputs

    pairs: list[tuple[str, object]] = [("--profile", profile) for profile in profiles]
    if parsed.folder is not None:
        pairs.append(("SOURCE", parsed.folder))
    return pairs + sidecar_inputs("SOURCE", list(parsed.shards))


def _publish(out: Path, build: Callable[[Path], Path]) -> Path:
    """Run ``build(staging)`` in a hidden folder beside ``out``, then move what it wrote into ``out``.

    The staging folder is :func:`qualoader._atomic.staging_folder`'s: locked while this run lives, so the
    next report into ``out`` removes the ones a killed run (kill -9) left, and never a live one.
    On any error (or Ctrl-C) the staging folder, and the parent folders made for it, are removed: ``out`` is untouched.
    When ``out`` exists, the report's own entries (index.html, report.json, plots/, thumbs/) are replaced; other files stay.

    Returns:
        ``out / <the name build returned>`` (index.html).
    """
    from qualoader._atomic import current_umask, staging_folder

    made = [parent for parent in reversed(out.absolute().parents) if not parent.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with staging_folder(out) as staging:
            os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp's 0700 would become --out's mode
            index = build(staging)
            if not out.exists():
                os.rename(staging, out)
            else:
                for entry in sorted(staging.iterdir()):
                    target = out / entry.name
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    os.replace(entry, target)
                staging.rmdir()
    except BaseException:
        for parent in reversed(made):
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    return out / index.name


def _problem_line(index: Path) -> str:
    """The report's problem count as one terminal line (the list itself is on the page, under "Skipped", and in report.json)."""
    from qualoader._json import read_json

    counts = read_json(index.parent / "report.json", what="report.json").get("problem_counts", {})
    source, images = int(counts.get("source", 0)), int(counts.get("images", 0))
    if source + images == 0:
        return "problems: none"
    return (
        f"problems: {source + images} ({source} reading the source: truncated or unreadable shards, samples without an image; "
        f"{images} with images: undecodable or too small), listed under Skipped in {index}"
    )


def run(args: argparse.Namespace) -> int:
    from qualoader._validation import check_positive_int
    from qualoader.report import build_report

    with user_errors():
        for option in ("max_images", "examples", "batch_size"):
            check_positive_int(getattr(args, option), f"--{option.replace('_', '-')}")
        parsed = parse_source(args.source)
        source = parsed.report_source()
        if len(set(args.metric)) != len(args.metric):
            raise UserError(f"--metric should name distinct metrics, but got --metric={args.metric}")
        metrics = cli_metrics(
            args.metric, args.profile, device=args.device, strict=args.strict, downscale=args.downscale, trust=args.trust_profile
        )
        flags = args.flags or ["all"]
        from qualoader.report.flags import check_flag_request

        try:
            check_flag_request(parse_flags_option(flags)[0], [metric.name for metric in metrics])
        except ValueError as error:
            raise as_option(error, "flags", "--flags") from error
        if args.out.exists() and not args.out.is_dir():
            raise UserError(f"--out should be a folder, but got --out={str(args.out)!r}, which is a file")
        check_outputs(args.out, "--out", _inputs(parsed, args.profile))
        # Reading the source checks it (missing shards, no images) before any scoring starts.
        from qualoader.report.sources import load_source

        load_source(source, max_images=1)
    from qualoader.profiles import DomainError

    def build(folder: Path) -> Path:
        return build_report(
            source,
            metrics,
            folder,
            max_images=args.max_images,
            examples=args.examples,
            batch_size=args.batch_size,
            device=args.device,
            progress=not args.no_progress,
            flags=flags,
        )

    try:
        with output_errors("--out", args.out):
            index = _publish(args.out, build)
    except DomainError as error:  # --strict: images outside an aligned metric's domain are the user's to fix
        raise UserError(str(error)) from error
    print(index)
    print(_problem_line(index))
    return 0
