"""User errors of the ``qualoader`` commands: one line on stderr, exit code 2, a traceback only with ``--debug``.

A command raises :class:`UserError` for a mistake in its command line, or runs the code that turns
arguments into objects (metric names, sources, stores, devices) inside :func:`user_errors`, which
turns the ``KeyError`` / ``ValueError`` / ``TypeError`` / ``FileNotFoundError`` of the library's
argument checks into a :class:`UserError` with the same message (did-you-mean hints included).
:func:`qualoader.cli.main` prints it as ``qualoader <command>: error: <message>``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["UserError", "as_option", "check_device", "create_cli_metric", "error_line", "report_user_error", "user_errors"]

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


def check_device(device: str) -> None:
    """Raise :class:`UserError` unless ``device`` names a torch device this machine has."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise UserError(f"--device should be a torch device such as cpu, cuda or cuda:1, but got --device={device!r}") from error
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
