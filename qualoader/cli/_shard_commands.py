"""What ``qualoader tag`` and ``qualoader score`` share: scoring options, argument checks and error reporting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable

__all__ = ["add_scoring_arguments", "check_positive", "fail", "run_reporting_errors"]


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """``--metric`` (repeatable, required), ``--batch-size``, ``--device`` and ``--on-error``."""
    parser.add_argument("--metric", action="append", required=True, help="registered no-reference metric (repeat for several)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per metric call (default: 64)")
    parser.add_argument("--device", default="cpu", help="scoring device (default: cpu)")
    parser.add_argument(
        "--on-error", choices=("raise", "skip"), default="raise", help="corrupt shard / missing or undecodable image: stop (raise) or skip and count"
    )


def fail(command: str, message: str) -> int:
    """Report a usage error of ``qualoader <command>``; exit code 2."""
    print(f"qualoader {command}: error: {message}", file=sys.stderr)
    return 2


def check_positive(command: str, args: argparse.Namespace, names: Iterable[str]) -> int | None:
    """``fail`` for the first of the int options ``names`` that is given and not positive, else ``None``."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            return fail(command, f"--{name.replace('_', '-')} should be a positive int, but got {value}")
    return None


def run_reporting_errors(command: str, work: Callable[[], int]) -> int:
    """Run ``work``; bad arguments exit 2 with their message, data and worker failures exit 1."""
    from qualoader.webdataset import CorruptShardError, ImageDecodeError, MissingImageError

    try:
        return work()
    except (ImageDecodeError, MissingImageError, CorruptShardError, OSError) as error:
        failure: Exception = error
    except (KeyError, ValueError, TypeError) as error:
        return fail(command, str(error))
    except Exception as error:  # noqa: BLE001 - data or worker failures: report, exit 1
        failure = error
    print(f"qualoader {command}: failed: {type(failure).__name__}: {failure}", file=sys.stderr)
    return 1
