"""``qualoader metrics``: list the registered metrics (and, with ``--pyiqa``, pyiqa's)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from qualoader.cli._errors import UserError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("metrics", help="list metrics: mode (NR/FR), direction, needs weights")
    parser.add_argument("--mode", choices=("NR", "FR"), help="only no-reference or full-reference metrics")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--pyiqa",
        action="store_true",
        help="list the pyiqa metrics usable as 'pyiqa:<name>' instead, with whether their weights are cached (needs the 'iqa' extra)",
    )
    parser.set_defaults(func=run)


def _registered_rows(mode: str | None) -> list[dict[str, Any]]:
    from qualoader.metrics import list_metrics, metric_info

    return [
        {**info.__dict__, "weights": "yes" if info.requires_weights else "no"}
        for info in map(metric_info, list_metrics(mode))
    ]


def _pyiqa_rows(mode: str | None) -> list[dict[str, Any]]:
    from qualoader.metrics.pyiqa_adapter import pyiqa_configs, pyiqa_weight_requirement

    rows = []
    for name, config in sorted(pyiqa_configs().items()):
        metric_mode = config.get("metric_mode", "NR")
        if mode is not None and metric_mode != mode:
            continue
        requirement = pyiqa_weight_requirement(name)
        if not requirement.needs_weights:
            weights = "no"
        elif requirement.backbone or requirement.missing():
            weights = "missing"
        else:
            weights = "cached"
        rows.append(
            {
                "name": f"pyiqa:{name}",
                "mode": metric_mode,
                "higher_is_better": not config.get("lower_better", False),
                "requires_weights": requirement.needs_weights,
                "weights": weights,
                "summary": f"pyiqa {config['metric_opts']['type']}, score range {config.get('score_range', '?')}",
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    if args.pyiqa:
        try:
            rows = _pyiqa_rows(args.mode)
        except ImportError as error:
            raise UserError(f"--pyiqa needs pyiqa: {error}") from error
    else:
        rows = _registered_rows(args.mode)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("name", "mode", "direction", "weights", "summary")
    table = [header] + [
        (row["name"], row["mode"], "higher=better" if row["higher_is_better"] else "lower=better", row["weights"], row["summary"])
        for row in rows
    ]
    widths = [max(len(line[k]) for line in table) for k in range(4)]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line[:4], widths)) + "  " + line[4])
    if not args.pyiqa:
        print(
            "\npyiqa metrics are available as 'pyiqa:<name>' with the 'iqa' extra (pip install 'qualoader[iqa]'); list them with --pyiqa."
        )
    return 0
