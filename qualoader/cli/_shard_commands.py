"""What ``qualoader tag`` and ``qualoader score`` share: scoring options, argument checks and error reporting."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from qualoader.cli._errors import UserError, error_line, report_user_error

__all__ = ["add_scoring_arguments", "check_positive", "fail", "print_skipped", "run_reporting_errors"]

#: Most skipped samples printed one per line (the sidecars list them all).
MAX_LISTED = 20


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """``--metric`` and ``--profile`` (repeatable, at least one), ``--batch-size``, ``--device`` and ``--on-error``."""
    from qualoader.cli._profiles import add_profile_argument

    parser.add_argument(
        "--metric", action="append", default=[], help="no-reference metric(s): a name, a,b,c or the suite classical (repeatable)"
    )
    add_profile_argument(parser, repeat=True)
    parser.add_argument("--batch-size", type=int, default=64, help="images per metric call (default: 64)")
    parser.add_argument("--device", default="cpu", help="scoring device (default: cpu)")
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="corrupt shard / missing or undecodable image: stop (raise) or skip and count",
    )


def fail(command: str, message: str) -> int:
    """Report a usage error of ``qualoader <command>`` on one line; exit code 2."""
    print(error_line(command, message), file=sys.stderr)
    return 2


def check_positive(command: str, args: argparse.Namespace, names: Iterable[str]) -> int | None:
    """``fail`` for the first of the int options ``names`` that is given and not positive, else ``None``."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            return fail(command, f"--{name.replace('_', '-')} should be a positive int, but got {value}")
    return None


def print_skipped(skipped: Sequence[Any]) -> None:
    """Print skipped samples (``SkippedSample``): counts by error type, then each by shard and key."""
    counts: dict[str, int] = {}
    for entry in skipped:
        counts[entry.error] = counts.get(entry.error, 0) + 1
    for kind, count in sorted(counts.items()):
        print(f"  skipped {count} x {kind}")
    for entry in skipped[:MAX_LISTED]:
        print(f"  skipped {entry}")
    if len(skipped) > MAX_LISTED:
        print(f"  ... and {len(skipped) - MAX_LISTED} more, all listed in the sidecars (skipped_samples)")


class _Terminated(BaseException):
    """SIGTERM turned into an exception, so that clean-up code (staging folders) runs as for Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated(signum)


def run_reporting_errors(command: str, work: Callable[[], int], *, interruptible: bool = False) -> int:
    """Run ``work``; bad arguments exit 2 with their message, data and worker failures exit 1.

    With ``interruptible``, SIGTERM is handled like Ctrl-C while ``work`` runs: the error unwinds
    through ``work``'s clean-up, and the command exits 143 (SIGTERM) or 130 (SIGINT) with one line.
    """
    from qualoader.webdataset import CorruptShardError, ImageDecodeError, MissingImageError, MissingTagError

    previous = None
    if interruptible and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return work()
    except ImageDecodeError as error:  # a bad input image (undecodable, too small or large, NaN), named: a user error, exit 2
        return report_user_error(command, error)
    except (KeyboardInterrupt, _Terminated) as error:
        name, code = ("SIGTERM", 143) if isinstance(error, _Terminated) else ("SIGINT", 130)
        print(f"qualoader {command}: interrupted by {name}; no partial file was left", file=sys.stderr)
        return code
    except (UserError, BrokenPipeError):
        raise  # qualoader.cli.main prints the one, ends the other quietly (a closed stdout: | head)
    except (ImageDecodeError, MissingImageError, MissingTagError, CorruptShardError, OSError) as error:
        failure: Exception = error
    except (KeyError, ValueError, TypeError) as error:  # the library's argument checks (out_dir, prefix, ...)
        return report_user_error(command, error)
    except Exception as error:  # noqa: BLE001 - data or worker failures: report, exit 1
        failure = error
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"qualoader {command}: failed: {type(failure).__name__}: {failure}", file=sys.stderr)
    return 1
