"""``qualoader tag``: write quality-tagged copies of webdataset shards, with sidecar indexes.

Every sample of IN_SHARDS (paths or brace patterns such as ``data-{000..009}.tar``) keeps all its
members byte for byte under the same key and gains a ``quality.json`` member with the score of
each ``--metric`` (and its fingerprint; the difficulty too when ``--calibration`` is given). The
output shards ``OUT_DIR/<prefix>-000000.tar``, ... are cut by webdataset's ``ShardWriter``
(``--maxcount``, ``--maxsize``); each gets a ``<shard>.quality.json`` sidecar (key -> scores).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tag",
        help="write webdataset shards with a quality.json member per sample (and sidecar indexes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="IN_SHARDS... OUT_DIR", help="input shards (paths or brace patterns), then the output folder")
    parser.add_argument("--metric", action="append", required=True, help="registered no-reference metric (repeat for several)")
    parser.add_argument("--calibration", action="append", default=[], metavar="NAME=PATH", help="attach a DifficultyCalibration JSON to metric NAME (adds its difficulty)")
    parser.add_argument("--maxcount", type=int, default=100_000, help="samples per output shard (default: 100000)")
    parser.add_argument("--maxsize", type=int, default=3_000_000_000, help="member bytes per output shard (default: 3e9)")
    parser.add_argument("--prefix", default="tagged", help="output shard name prefix (default: tagged)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per metric call (default: 64)")
    parser.add_argument("--device", default="cpu", help="scoring device (default: cpu)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="corrupt shard / missing or undecodable image: stop (raise) or skip and count")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"qualoader tag: error: {message}", file=sys.stderr)
    return 2


def _failed(error: BaseException) -> int:
    print(f"qualoader tag: failed: {type(error).__name__}: {error}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from qualoader.calibration import DifficultyCalibration
    from qualoader.metrics import create_metric
    from qualoader.webdataset import (
        CorruptShardError,
        ImageDecodeError,
        MissingImageError,
        tag_shards,
    )

    if len(args.paths) < 2:
        return _fail("IN_SHARDS... OUT_DIR should name at least one input shard and the output folder, but got only " + repr(args.paths))
    *shards, out_dir = args.paths
    for name in ("maxcount", "maxsize", "batch_size"):
        if getattr(args, name) <= 0:
            return _fail(f"--{name.replace('_', '-')} should be a positive int, but got {getattr(args, name)}")
    try:
        metrics = {name: create_metric(name, device=args.device) for name in args.metric}
        for spec in args.calibration:
            name, sep, path = spec.partition("=")
            if not sep or name not in metrics:
                return _fail(f"--calibration should be NAME=PATH with NAME one of {sorted(metrics)}, but got {spec!r}")
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
        )
    except (ImageDecodeError, MissingImageError, CorruptShardError, OSError) as error:
        return _failed(error)
    except (KeyError, ValueError, TypeError) as error:
        return _fail(str(error))
    except Exception as error:  # noqa: BLE001 - data or worker failures: report, exit 1
        return _failed(error)
    skipped = sum(report.skipped.values())
    print(f"tagged {report.count} samples into {len(report.shards)} shards in {out_dir} ({skipped} skipped)")
    for kind, count in sorted(report.skipped.items()):
        print(f"  skipped {count} x {kind}")
    return 0
