"""``qualoader export``: a table of scores, one row per sample, as CSV, Parquet or JSON lines.

SOURCE is a score store folder (made by ``qualoader precompute`` or the Python API; columns
``index``, ``path`` for image folders or ``key``, then ``<metric>`` and ``<metric>_difficulty`` per
metric configuration) or tagged webdataset shards (paths, brace patterns or a folder of shards,
read from their ``<shard>.quality.json`` sidecars; columns ``index``, ``shard``, ``key``, then the
metrics). Scores that are missing (not scored, skipped, uncalibrated difficulty) are empty in CSV
and null in Parquet and JSON lines. The output file is written atomically (a temporary file in its
folder, renamed when complete), so a reader never sees half a table. Parquet needs pyarrow
(``pip install 'qualoader[export]'``).

A store's columns are named by metric (``<metric>``, or ``<metric>-<profile name>`` when two
profiles of one metric share the store). ``--metric`` / ``--profile`` select columns: only the
tables whose metric configuration they match are exported, each mapped to difficulty with that
metric's current calibration (a re-calibrated metric, a refitted profile) without rescoring
anything; without them every table is exported with the calibration saved when it was created.
Shards carry the difficulty written when they were tagged, so these options apply to stores only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from qualoader.cli._errors import UserError, user_errors
from qualoader.cli._profiles import add_profile_argument, cli_metrics, stored_profile_metrics

__all__ = ["add_parser", "run"]

_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export scores (a score store or tagged shards) as CSV, Parquet or JSON lines, one row per sample",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", nargs="+", metavar="SOURCE", help="a score store folder, or tagged .tar shards (paths, brace patterns or a folder)"
    )
    parser.add_argument("--output", "-o", required=True, type=Path, help="the file to write (replaced atomically when it exists)")
    parser.add_argument("--format", choices=("csv", "jsonl", "parquet"), default=None,
                        help="output format (default: from the --output suffix: .csv, .parquet, .jsonl)")
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        help="export only these metrics' columns, their difficulty from the metrics' current calibration: a name, a,b,c or the suite "
        "classical (repeatable; default: every column, difficulty from the calibration saved in the store)",
    )
    add_profile_argument(parser, repeat=True, scoring=False)
    parser.set_defaults(func=run)


def _store_columns(root: str, metrics: list[Any], profiles: list[Path] | None = None) -> dict[str, object]:
    """The columns of the store at ``root``, difficulties mapped by the current calibrations of ``metrics`` where they match a table."""
    from qualoader.data import ScoreStore
    from qualoader.data.export import store_columns

    store = ScoreStore(root)
    # profiles are matched to their tables from their files: exporting stored scores builds no network (and runs none of a profile's code)
    metrics = metrics + stored_profile_metrics(profiles, store.tables())
    fingerprints = {table.fingerprint for table in store.tables()}
    unmatched = [metric.name for metric in metrics if metric.fingerprint() not in fingerprints]
    if unmatched:
        # a typo or another profile would silently leave the header's difficulties in place
        tables = ", ".join(f"{table.metric_name} [{table.fingerprint}]" for table in store.tables()) or "none"
        raise UserError(
            f"--metric and --profile should name metric configurations the store holds, but got {', '.join(unmatched)}, which match "
            f"none of its tables ({tables})"
        )
    return store_columns(store, metrics=metrics, select=bool(metrics))


def _columns(items: list[str], metrics: list[Any], profiles: list[Path] | None = None) -> tuple[dict[str, object], str]:
    """The columns of SOURCE and a description of it."""
    from qualoader.data.export import shard_columns

    if len(items) == 1 and (Path(items[0]) / "store.json").exists():
        return _store_columns(items[0], metrics, profiles), f"score store {items[0]!r}"
    from qualoader.cli._sources import parse_source

    source = parse_source(items, kinds=("shards",))
    if not source.shards:
        raise UserError(
            f"SOURCE should be a score store folder (with store.json) or tagged shards, but got SOURCE={source.text!r} without either"
        )
    if metrics or profiles:
        raise UserError(
            "--metric and --profile apply to a score store (shards keep the difficulty written when they were tagged), but got "
            f"SOURCE={source.text!r} of {len(source.shards)} shard(s)"
        )
    return shard_columns(list(source.shards)), f"{len(source.shards)} shard(s)"


def run(args: argparse.Namespace) -> int:
    from qualoader.data.export import write_columns

    with user_errors():
        output_format = args.format or _SUFFIXES.get(args.output.suffix.lower())
        if output_format is None:
            raise UserError(
                f"--format should be given (csv, jsonl or parquet) when --output has no known suffix, but got --output={str(args.output)!r}"
            )
        if not args.output.parent.is_dir():
            raise UserError(f"--output should be in an existing folder, but got --output={str(args.output)!r}")
        if args.output.is_dir():
            raise UserError(f"--output should be a file, but got --output={str(args.output)!r}, which is a folder")
        metrics = cli_metrics(args.metric, None) if args.metric else []
        columns, what = _columns(args.source, metrics, args.profile)
    try:
        write_columns(columns, args.output, output_format)
    except ImportError as error:
        raise UserError(str(error)) from error
    rows = len(next(iter(columns.values()))) if columns else 0
    metrics = [name for name in columns if name not in ("index", "path", "key", "shard") and not name.endswith("_difficulty")]
    print(f"exported {rows} rows of {what} ({', '.join(metrics) or 'no metric'}) to {args.output} ({output_format})")
    return 0
