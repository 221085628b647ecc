"""The ``qualoader`` console script.

Each sub-command lives in its own module of :mod:`qualoader.cli.commands`, which exposes
``add_parser(subparsers)``; the parser's ``func`` default runs it. Heavy imports stay inside
the commands' ``run`` functions so that ``qualoader --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from qualoader.cli import commands

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per module in :mod:`qualoader.cli.commands`."""
    parser = argparse.ArgumentParser(
        prog="qualoader",
        description="DNN-aligned image quality for PyTorch data pipelines.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not module_info.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{module_info.name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
