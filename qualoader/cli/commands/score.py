"""``qualoader score``: write the sidecar quality index of existing webdataset shards.

For each shard ``X.tar`` of SHARDS (paths or brace patterns), ``OUT/X.tar.quality.json`` maps every
sample key to its ``--metric`` scores (the same file ``qualoader tag`` writes), so samplers can plan
without reading images. The shards are not modified. ``--engine local`` scores in this process;
``--engine ray`` scores one shard per Ray task with Ray Data, on a local Ray instance started by
the command (``--num-cpus``) or on the cluster at ``--address``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score webdataset shards into <shard>.quality.json sidecar indexes (locally or with Ray)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("shards", nargs="+", metavar="SHARDS", help="shard paths or brace patterns")
    parser.add_argument("--metric", action="append", required=True, help="registered no-reference metric (repeat for several)")
    parser.add_argument("--out", required=True, help="folder receiving the sidecar indexes")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="score here (local) or with Ray Data (ray)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start a local instance)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per metric call (default: 64)")
    parser.add_argument("--device", default="cpu", help="scoring device (default: cpu)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="corrupt shard / missing or undecodable image: stop (raise) or skip and count")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"qualoader score: error: {message}", file=sys.stderr)
    return 2


def _failed(error: BaseException) -> int:
    print(f"qualoader score: failed: {type(error).__name__}: {error}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qualoader.webdataset import (
        CorruptShardError,
        ImageDecodeError,
        MissingImageError,
        expand_shards,
        score_shard,
        sidecar_path,
    )

    for name in ("batch_size", "num_cpus"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            return _fail(f"--{name.replace('_', '-')} should be a positive int, but got {value}")
    if args.engine == "local" and (args.address is not None or args.num_cpus is not None):
        return _fail("--address and --num-cpus should be used with --engine ray, but got --engine local")
    try:
        shards = expand_shards(args.shards)
        names = [Path(shard).name for shard in shards]
        if len(set(names)) != len(names):
            return _fail("SHARDS should have distinct file names (sidecars share one folder), but got duplicates")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if args.engine == "ray":
            from qualoader.distributed import score_shards_ray

            indexes = score_shards_ray(
                shards, args.metric, address=args.address, num_cpus=args.num_cpus, batch_size=args.batch_size, device=args.device, on_error=args.on_error
            )
        else:
            indexes = [score_shard(shard, args.metric, batch_size=args.batch_size, device=args.device, handler=args.on_error) for shard in shards]
    except (ImageDecodeError, MissingImageError, CorruptShardError, OSError) as error:
        return _failed(error)
    except (KeyError, ValueError, TypeError) as error:
        return _fail(str(error))
    except Exception as error:  # noqa: BLE001 - data or worker failures: report, exit 1
        return _failed(error)
    total = skipped = 0
    for shard, index in zip(shards, indexes, strict=True):
        index.write(sidecar_path(shard, out))
        total += len(index.quality)
        skipped += index.skipped
    print(f"scored {total} samples of {len(shards)} shards with {', '.join(args.metric)} ({args.engine}); {skipped} skipped; sidecars in {out}")
    return 0
