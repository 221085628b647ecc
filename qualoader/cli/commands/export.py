"""``qualoader export``: a table of scores, one row per sample, as CSV, Parquet or JSON lines.

SOURCE is a score store folder (made by ``qualoader precompute`` or the Python API; columns
``index``, ``path`` for image folders or ``key``, then ``<metric>`` and ``<metric>_difficulty`` per
metric configuration) or tagged webdataset shards (paths, brace patterns or a folder of shards,
read from their ``<shard>.quality.json`` sidecars; columns ``index``, ``shard``, ``key``, then the
metrics). Scores that are missing (not scored, skipped, uncalibrated difficulty) are empty in CSV
and null in Parquet and JSON lines. The output file is written atomically (a temporary file in its
folder, renamed when complete), so a reader never sees half a table; it gets the permissions your
umask gives. A FIFO, a device or /dev/stdout as --output is written into, never replaced. An
--output that is, or lies inside, one of the inputs (the store folder, a shard, its sidecar, a
profile) is refused. Parquet needs pyarrow
(``pip install 'qualoader[export]'``).

A store's columns are named by metric (``<metric>``, or ``<metric>-<profile name>`` when two
profiles of one metric share the store). ``--metric`` / ``--profile`` select columns: only the
tables whose metric configuration they match are exported, each mapped to difficulty with that
metric's current calibration (a re-calibrated metric, a refitted profile) without rescoring
anything; without them every table is exported with the calibration saved when it was created.
Shards carry the difficulty written when they were tagged, so these options apply to stores only.

--flags adds yes/no columns flag_<name> (blurry, noisy, jpeg, dark, light, low-contrast, clipped; hard for an
aligned metric's calibrated difficulty): an image is flagged when its measure is an outlier for this table
(median -/+ 3 robust standard deviations, see qualoader.flags) or past a threshold given as name=T. The
thresholds used are printed and written to OUTPUT.flags.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from qualoader.cli._errors import UserError, check_outputs, output_errors, user_errors
from qualoader.cli._flags import add_flags_argument, parse_flags_option
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
    add_flags_argument(parser, "add one yes/no column flag_<name> per flag; the thresholds go to the summary line and to OUTPUT.flags.json")
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


def _flag_columns(specs: list[str], columns: dict[str, object]) -> tuple[dict[str, object], Any]:
    """``flag_<name>`` columns for the ``--flags`` specifications, and the :class:`~qualoader.flags.FlagResult`."""
    from qualoader.cli._errors import as_option
    from qualoader.flags import compute_flags

    names, thresholds = parse_flags_option(specs)
    try:
        result = compute_flags(columns, names, thresholds=thresholds)
    except (KeyError, ValueError, TypeError) as error:
        raise as_option(error, "flags", "--flags") from error
    if not result.flags:
        raise UserError(f"--flags should find a measure to flag in SOURCE, but got none of them ({'; '.join(result.skipped.values())})")
    return {f"flag_{name}": values for name, values in result.flags.items()}, result


def _stale_thresholds(output: Path) -> Path | None:
    """``OUTPUT.flags.json`` written by an earlier ``export --flags`` to the same file, else ``None``."""
    from qualoader._json import read_json

    sidecar = Path(f"{output}.flags.json")
    if not output.is_file() or not sidecar.is_file() or sidecar.is_symlink():
        return None
    try:
        content = read_json(sidecar)
    except (OSError, ValueError):
        return None  # not a file this command wrote: left alone
    return sidecar if isinstance(content, dict) and set(content) == {"thresholds", "skipped"} else None


def _inputs(items: list[str], profiles: list[Path]) -> list[tuple[str, object]]:
    """What ``--output`` must not overwrite: the store folder (``store.json``, tables) or the shards and their sidecars; profiles."""
    from qualoader._outputs import sidecar_inputs

    pairs: list[tuple[str, object]] = [("--profile", profile) for profile in profiles]
    if len(items) == 1 and Path(items[0]).is_dir():
        pairs.append(("SOURCE", items[0]))  # a store, or a folder of shards: nothing is written inside it
    from qualoader.webdataset import expand_shards

    return pairs + sidecar_inputs("SOURCE", [shard for shard in expand_shards(items) if not Path(shard).is_dir()])


def run(args: argparse.Namespace) -> int:
    from qualoader.data.export import write_columns

    with user_errors():
        inputs = _inputs(args.source, args.profile)
        check_outputs(args.output, "--output", inputs)  # first: whatever else is wrong, say this
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
        flags, sidecar = None, None
        if args.flags:
            flag_columns, flags = _flag_columns(args.flags, columns)
            columns = {**columns, **flag_columns}
            # a FIFO or a device (-o /dev/stdout) has no folder of its own for a second file: the summary line states the thresholds
            if not args.output.exists() or args.output.is_file():
                sidecar = Path(f"{args.output}.flags.json")
                check_outputs(sidecar, "--output", inputs)
    if flags is not None and sidecar is not None:
        from qualoader._atomic import write_json_atomic

        # the thresholds travel with the table (a fitted threshold is a property of this dataset, not of the flag);
        # written first and removed if the table fails, so no table with flag columns is left without its thresholds
        with output_errors("--output", sidecar):
            write_json_atomic(sidecar, {"thresholds": [t.to_dict() for t in flags.thresholds.values()], "skipped": flags.skipped})
    try:
        with output_errors("--output", args.output):  # a FIFO or a device is written through, never replaced
            write_columns(columns, args.output, output_format)
    except BaseException as error:  # a full disk or Ctrl-C too: the thresholds of a table that was not written go with it
        if sidecar is not None:
            sidecar.unlink(missing_ok=True)
        if isinstance(error, ImportError):
            raise UserError(str(error)) from error
        raise
    stale = None if args.flags else _stale_thresholds(args.output)
    if stale is not None:
        stale.unlink(missing_ok=True)  # they described the flag columns of the table this export replaced
    rows = len(next(iter(columns.values()))) if columns else 0
    metrics = [
        name for name in columns
        if name not in ("index", "path", "key", "shard") and not name.endswith("_difficulty") and not name.startswith("flag_")
    ]
    print(f"exported {rows} rows of {what} ({', '.join(metrics) or 'no metric'}) to {args.output} ({output_format})")
    if stale is not None:
        print(f"removed {stale}: the thresholds of an earlier export's flag columns, which this table has no more")
    if flags is not None:
        where = f" (thresholds in {sidecar})" if sidecar is not None else ""
        # without a thresholds file the table may be on stdout: the thresholds go to stderr, beside it rather than into it
        print("flags: " + "; ".join(t.describe() for t in flags.thresholds.values()) + where,
              file=sys.stdout if sidecar is not None else sys.stderr)
    return 0
