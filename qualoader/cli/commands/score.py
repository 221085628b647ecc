"""``qualoader score``: write the sidecar quality index of existing webdataset shards.

For each shard ``X.tar`` of SHARDS (paths or brace patterns), ``OUT/X.tar.quality.json`` maps every
sample key to its ``--metric`` scores (the same file ``qualoader tag`` writes), so samplers can plan
without reading images. The shards are not modified. ``--engine local`` scores in this process;
``--engine ray`` scores one shard per Ray task with Ray Data, on a local Ray instance started by
the command (``--num-cpus``) or on the cluster at ``--address`` (an address that does not answer
within 10 s is an error).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qualoader.cli._shard_commands import add_scoring_arguments, check_positive, fail, print_skipped, run_reporting_errors
from qualoader.cli._sources import parse_source

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score webdataset shards into <shard>.quality.json sidecar indexes (locally or with Ray)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("shards", nargs="+", metavar="SHARDS", help="shard paths or brace patterns")
    parser.add_argument("--out", required=True, help="folder receiving the sidecar indexes")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="score here (local) or with Ray Data (ray)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start a local instance)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    add_scoring_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    error = check_positive("score", args, ("batch_size", "num_cpus"))
    if error is not None:
        return error
    if args.engine == "local" and (args.address is not None or args.num_cpus is not None):
        return fail("score", "--address and --num-cpus should be used with --engine ray, but got --engine local")
    return run_reporting_errors("score", lambda: _score(args))


def _score(args: argparse.Namespace) -> int:
    from qualoader.cli._profiles import cli_metrics
    from qualoader.webdataset import score_shard, sidecar_path

    if args.profile and args.engine == "ray":
        return fail("score", "--profile should be used with --engine local (Ray workers build metrics by name), but got --engine ray")
    if args.strict and args.engine == "ray":
        return fail("score", "--strict should be used with --engine local (Ray workers build metrics by name), but got --engine ray")
    metrics = cli_metrics(
        args.metric, args.profile, device=args.device, strict=args.strict, downscale=args.downscale, trust=args.trust_profile
    )  # bad names and profiles fail before any file is written
    shards = list(parse_source(args.shards, kinds={"shards"}, name="SHARDS").shards)  # the commands' one SOURCE grammar
    names = [Path(shard).name for shard in shards]
    if len(set(names)) != len(names):
        return fail("score", "SHARDS should have distinct file names (sidecars share one folder), but got duplicates")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.engine == "ray":
        from qualoader.distributed import score_shards_ray

        indexes = score_shards_ray(
            shards,
            args.metric,
            address=args.address,
            num_cpus=args.num_cpus,
            batch_size=args.batch_size,
            device=args.device,
            on_error=args.on_error,
            progress=not args.no_progress,
        )
    else:
        indexes = [
            score_shard(
                shard, metrics, batch_size=args.batch_size, device=args.device, handler=args.on_error, progress=not args.no_progress
            )
            for shard in shards
        ]
    total, skipped = 0, []
    for shard, index in zip(shards, indexes, strict=True):
        index.write(sidecar_path(shard, out))
        total += len(index.quality)
        skipped.extend(index.skipped_samples)
    print(
        f"scored {total} samples of {len(shards)} shards with {', '.join(metric.name for metric in metrics)} ({args.engine}); "
        f"{len(skipped)} skipped; sidecars in {out}"
    )
    print_skipped(skipped)
    return 0
