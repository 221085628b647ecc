"""``qualoader metrics``: list the registered metrics."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("metrics", help="list metrics: mode (NR/FR), direction, needs weights")
    parser.add_argument("--mode", choices=("NR", "FR"), help="only no-reference or full-reference metrics")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qualoader.metrics import list_metrics, metric_info

    infos = [metric_info(name) for name in list_metrics(args.mode)]
    if args.json:
        print(json.dumps([info.__dict__ for info in infos], indent=2))
        return 0
    header = ("name", "mode", "direction", "weights", "summary")
    rows = [
        (i.name, i.mode, "higher=better" if i.higher_is_better else "lower=better", "yes" if i.requires_weights else "no", i.summary)
        for i in infos
    ]
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4])
    print("\npyiqa metrics are available as 'pyiqa:<name>' with the 'iqa' extra (pip install 'qualoader[iqa]').")
    return 0
