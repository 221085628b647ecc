"""User errors of the ``qualoader`` commands: one line on stderr, exit code 2, a traceback only with ``--debug``.

A command raises :class:`UserError` for a mistake in its command line, or runs the code that turns
arguments into objects (metric names, sources, stores, devices) inside :func:`user_errors`, which
turns the ``KeyError`` / ``ValueError`` / ``TypeError`` / ``FileNotFoundError`` of the library's
argument checks into a :class:`UserError` with the same message (did-you-mean hints included).
:func:`qualoader.cli.main` prints it as ``qualoader <command>: error: <message>``.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "OUTPUT_OPTIONS",
    "WRITE_ERRNOS",
    "UserError",
    "as_option",
    "check_device",
    "check_outputs",
    "cli_inputs",
    "create_cli_metric",
    "error_line",
    "output_errors",
    "report_user_error",
    "user_errors",
    "write_error",
]

#: The library raises these for bad arguments (the style guide's TypeError / ValueError, the registry's
#: KeyError, a missing file or weights); inside :func:`user_errors` they are the user's to fix.
_ARGUMENT_ERRORS = (KeyError, ValueError, TypeError, FileNotFoundError)


class UserError(ValueError):
    """A mistake in the command line; the message says what was expected and what was given.

    A ``ValueError`` subclass, so code that reports bad values already reports these too.
    """


def _message(error: BaseException) -> str:
    # str(KeyError("x")) is "'x'" (the repr of the key): keep the message itself.
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error) or type(error).__name__


def error_line(command: str | None, message: str, *, kind: str = "error") -> str:
    """``qualoader <command>: <kind>: <message>`` on one line (newlines in the message become spaces); ``kind``: error or warning."""
    prefix = f"qualoader {command}" if command else "qualoader"
    return f"{prefix}: {kind}: {' '.join(message.split())}"


def report_user_error(command: str | None, error: BaseException) -> int:
    """Print ``error`` as one line on stderr; returns the exit code 2."""
    print(error_line(command, _message(error)), file=sys.stderr)
    return 2


def as_option(error: BaseException, argument: str, option: str) -> UserError:
    """``error`` as a :class:`UserError` whose message names the command-line ``option`` instead of
    the library's ``argument`` (``"name should be ..., but got name='x'"`` -> ``"--metric should be ..."``).
    """
    message = _message(error)
    if message.startswith(f"{argument} should"):
        message = option + message[len(argument) :].replace(f"{argument}=", f"{option}=")
    return UserError(message)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the argument errors raised inside the block into :class:`UserError` (same message, chained)."""
    try:
        yield
    except UserError:
        raise
    except _ARGUMENT_ERRORS as error:
        raise UserError(_message(error)) from error


#: The errors of a write that the user fixes (space, a read-only or quota-bound file system, permissions, a file size limit).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENXIO})


#: Each command's output option and its ``argparse`` destination: a failed write that reaches
#: :func:`qualoader.cli.main` unexplained is reported against it.
OUTPUT_OPTIONS: dict[str, tuple[str, str]] = {
    "calibrate": ("--out", "out"),
    "demo": ("--output", "output"),
    "export": ("--output", "output"),
    "precompute": ("--store", "store"),
    "report": ("--out", "out"),
    "score": ("--out", "out"),
}


def write_error(error: OSError, option: str | None, path: object) -> UserError:
    """The one line for a failed write: which option, which path, what the system said (and which file, when another)."""
    reason = os.strerror(error.errno) if error.errno is not None else str(error)
    code = errno.errorcode.get(error.errno or -1)
    reason += f" ({code})" if code else ""
    if path is None:
        return UserError(f"the output should be writable, but writing failed: {reason}")
    if option is None:
        return UserError(f"{str(path)!r} could not be read or written: {reason}")
    detail = f" while writing {str(error.filename)!r}" if error.filename is not None and str(error.filename) != str(path) else ""
    return UserError(f"{option} should be writable, but got {option}={str(path)!r}: {reason}{detail}")


@contextmanager
def output_errors(option: str, path: object) -> Iterator[None]:
    """Turn a failed write inside the block (:data:`WRITE_ERRNOS`) into a :class:`UserError` naming ``option`` and ``path``.

    The code inside cleans up its own partial output (atomic writes, staging folders); this only says what happened.
    """
    try:
        yield
    except OSError as error:
        if error.errno not in WRITE_ERRNOS or isinstance(error, BrokenPipeError):
            raise
        raise write_error(error, option, path) from error


def check_outputs(output: object, option: str, inputs: Any) -> None:
    """:func:`qualoader._outputs.check_output` for a command line: an overlap is a :class:`UserError` (same message)."""
    from qualoader._outputs import OutputOverlapError, check_output

    try:
        check_output(output, option, inputs)  # type: ignore[arg-type]
    except OutputOverlapError as error:
        raise UserError(str(error)) from error


def cli_inputs(args: Any, options: dict[str, str]) -> list[tuple[str, object]]:
    """``(option, path)`` pairs for :func:`check_outputs` from the parsed ``args``: ``options`` maps a destination to its option.

    A value may be a path, a list of paths or a parsed SOURCE (its folder, or its shards and their
    sidecars); ``None`` and Fashion-MNIST are skipped.
    """
    from qualoader._outputs import sidecar_inputs
    from qualoader.cli._sources import Source

    pairs: list[tuple[str, object]] = []
    for dest, option in options.items():
        value = getattr(args, dest, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if isinstance(item, Source):
                pairs += [(option, item.folder)] if item.folder is not None else sidecar_inputs(option, list(item.shards))
            elif item is not None:
                pairs.append((option, item))
    return pairs


def check_device(device: str) -> None:
    """Raise :class:`UserError` unless ``device`` names a torch device this machine has."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise UserError(f"--device should be a torch device such as cpu, cuda or cuda:1, but got --device={device!r}") from error
    if parsed.type == "meta":  # tensors without data: every score would fail far from here
        raise UserError(f"--device should be a device that holds data (cpu, cuda, mps), but got --device={device!r}")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(parsed.type, True):
        raise UserError(
            f"--device should be a device this machine has, but got --device={device!r} and torch sees no {parsed.type.upper()} device"
        )
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise UserError(f"--device should be one of the {torch.cuda.device_count()} CUDA devices, but got --device={device!r}")


def create_cli_metric(name: str, device: str | None = None, *, no_reference: bool = True, **kwargs: Any) -> Any:
    """``create_metric(name, device, **kwargs)`` for a command line: unknown names, missing weights and
    (with ``no_reference``) full-reference metrics raise :class:`UserError`.
    """
    from qualoader.metrics import create_metric, list_metrics, metric_info

    def refuse() -> UserError:
        return UserError(
            f"--metric should be a no-reference metric (this command has no clean reference image), but got the "
            f"full-reference metric {name!r}; no-reference metrics: {', '.join(list_metrics('NR'))}"
        )

    try:
        # Registered names are checked before construction, which may load a network for nothing.
        if no_reference and ":" not in name and metric_info(name).mode == "FR":
            raise refuse()
        metric = create_metric(name, device=device, **kwargs)
    except UserError:
        raise
    except _ARGUMENT_ERRORS as error:
        raise as_option(error, "name", "--metric") from error
    if no_reference and metric.requires_reference:
        raise refuse()
    return metric
