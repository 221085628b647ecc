"""``qualoader tag``: write quality-tagged copies of webdataset shards, with sidecar indexes.

Every sample of IN_SHARDS (paths or brace patterns such as ``data-{000..009}.tar``) keeps all its
members byte for byte under the same key and gains a ``quality.json`` member with the score of
each ``--metric`` (and its fingerprint; the difficulty too when ``--calibration`` is given). The
output shards ``OUT_DIR/<prefix>-000000.tar``, ... are cut by webdataset's ``ShardWriter``
(``--maxcount``, ``--maxsize``); each gets a ``<shard>.quality.json`` sidecar (key -> scores).

OUT_DIR must be new or empty and must not hold any input shard. Everything is written to a
staging folder beside OUT_DIR and published in one step (the folders are exchanged) only once the
whole set is complete, so an error, Ctrl-C, SIGTERM or kill -9 leaves the complete old set or the
complete new set, never a partial shard or a mix. ``--overwrite`` accepts an OUT_DIR holding a
previous output (only shards and sidecars) and replaces it as a whole. With ``--on-error skip`` every skipped sample is
listed, by input shard and key, in the summary and in a sidecar.
"""

from __future__ import annotations

import argparse

from qualoader.cli._shard_commands import add_scoring_arguments, check_positive, fail, print_skipped, run_reporting_errors
from qualoader.cli._sources import parse_source

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tag",
        help="write webdataset shards with a quality.json member per sample (and sidecar indexes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="+", metavar="IN_SHARDS... OUT_DIR", help="input shards (paths or brace patterns), then the output folder"
    )
    parser.add_argument(
        "--calibration",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="attach a DifficultyCalibration JSON to metric NAME (adds its difficulty)",
    )
    parser.add_argument("--maxcount", type=int, default=100_000, help="samples per output shard (default: 100000)")
    parser.add_argument("--maxsize", type=int, default=3_000_000_000, help="member bytes per output shard (default: 3e9)")
    parser.add_argument("--prefix", default="tagged", help="output shard name prefix (default: tagged)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the shards and sidecars of a previous run in OUT_DIR (once the new set is complete)",
    )
    add_scoring_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        return fail(
            "tag", "IN_SHARDS... OUT_DIR should name at least one input shard and the output folder, but got only " + repr(args.paths)
        )
    error = check_positive("tag", args, ("maxcount", "maxsize", "batch_size"))
    if error is not None:
        return error
    return run_reporting_errors("tag", lambda: _tag(args), interruptible=True)


def _tag(args: argparse.Namespace) -> int:
    from qualoader.calibration import DifficultyCalibration
    from qualoader.cli._profiles import cli_metrics
    from qualoader.webdataset import tag_shards

    *shards, out_dir = args.paths
    shards = list(parse_source(shards, kinds={"shards"}, name="IN_SHARDS").shards)  # the commands' one SOURCE grammar
    built = cli_metrics(args.metric, args.profile, device=args.device, strict=args.strict, downscale=args.downscale,
                        trust=args.trust_profile)
    metrics = {metric.name: metric for metric in built}
    for spec in args.calibration:
        name, sep, path = spec.partition("=")
        if not sep or name not in metrics:
            return fail("tag", f"--calibration should be NAME=PATH with NAME one of {sorted(metrics)}, but got {spec!r}")
        metrics[name].calibration = DifficultyCalibration.load(path)
    report = tag_shards(
        shards,
        out_dir,
        list(metrics.values()),
        batch_size=args.batch_size,
        device=args.device,
        maxcount=args.maxcount,
        maxsize=args.maxsize,
        prefix=args.prefix,
        handler=args.on_error,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(f"tagged {report.count} samples into {len(report.shards)} shards in {out_dir} ({len(report.skipped_samples)} skipped)")
    print_skipped(report.skipped_samples)
    return 0
