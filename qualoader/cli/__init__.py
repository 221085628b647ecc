"""The ``qualoader`` console script.

Each sub-command lives in its own module of :mod:`qualoader.cli.commands`, which exposes
``add_parser(subparsers)``; the parser's ``func`` default runs it. Heavy imports stay inside
the commands' ``run`` functions (and inside ``--help``'s name lists) so that ``qualoader --help``
is instant.

What every command shares is set up here, once: ``--debug`` and ``--no-progress`` options, the
check of ``--device``, the lists of metric and corruption names in ``--help``, and the handling of
user errors (:mod:`qualoader.cli._errors`): ``qualoader <command>: error: <message>`` on one line
and exit code 2, or the traceback with ``--debug``. qualoader's own warnings raised while a command
runs (:class:`~qualoader.profiles.DomainWarning`, :class:`~qualoader.datasets.FashionMNISTSampleWarning`)
are shown the same way, ``qualoader <command>: warning: <message>``, once per distinct message.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import os
import pkgutil
import sys
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TextIO

from qualoader.cli import commands
from qualoader.cli._errors import OUTPUT_OPTIONS, WRITE_ERRNOS, UserError, check_device, error_line, report_user_error, write_error

__all__ = ["build_parser", "console", "main"]


def _wrap(title: str, names: Sequence[str]) -> str:
    # Names hold hyphens (gradient-energy): break lines only between names, so each can be copied whole.
    text = textwrap.fill(
        ", ".join(names), width=100, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False, break_long_words=False
    )
    return f"{title}:\n{text}\n"


class _StoreOnce(argparse._StoreAction):
    """``store``, refusing a second value: an option that takes one value and is given twice is an error, not "the last wins".

    Options that take several values say so (``action="append"``, repeatable everywhere: ``--metric``,
    ``--profile``); every other option is this one, in every command, so a repeat never goes unnoticed.
    """

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None
    ) -> None:
        given = namespace.__dict__.setdefault("_qualoader_given", {})
        if option_string is not None and self.dest in given:
            parser.error(
                f"{option_string} should be given once (it takes one value), but got {option_string}={given[self.dest]!r} "
                f"and {option_string}={values!r}"
            )
        given[self.dest] = values
        super().__call__(parser, namespace, values, option_string)


class _CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors take one line and whose help ends with the valid metric / corruption names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, rest = super().parse_known_args(args, namespace)
        vars(parsed).pop("_qualoader_given", None)  # _StoreOnce's record of this parse, not an option
        return parsed, rest

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("qualoader").strip() or None
        self.exit(2, error_line(command, f"{message} (see '{self.prog} --help')") + "\n")

    def format_help(self) -> str:
        text = super().format_help()
        options = self._option_string_actions
        if "--metric" in options:
            from qualoader.metrics import list_metrics

            text += "\n" + _wrap("no-reference metrics", list_metrics("NR"))
            text += _wrap("full-reference metrics (need a clean reference image)", list_metrics("FR"))
            text += "  and pyiqa's as pyiqa:<name> (listed by 'qualoader metrics --pyiqa')\n"
        if "--corruptions" in options:
            from qualoader.corruptions import CORRUPTION_ALIASES, list_corruptions

            text += "\n" + _wrap("corruption names", list_corruptions())
            text += _wrap(
                "ImageNet-C names accepted as aliases", [f"{alias} = {name}" for alias, name in sorted(CORRUPTION_ALIASES.items())]
            )
        return text


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per module in :mod:`qualoader.cli.commands`."""
    parser = _CommandParser(
        prog="qualoader",
        description="DNN-aligned image quality for PyTorch data pipelines.",
        epilog="Start with 'qualoader demo' (offline, under a minute).",
    )
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error instead of one line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not module_info.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{module_info.name}").add_parser(subparsers)
    for subparser in subparsers.choices.values():
        # SUPPRESS: an option not given after the command keeps the value given before it.
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
        if "--no-progress" not in subparser._option_string_actions:
            subparser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


@contextmanager
def _command_warnings(command: str) -> Iterator[None]:
    """While the block runs, show warnings of qualoader's own categories as one line each on stderr.

    Python's filters still decide whether a warning is shown at all (``-W error``, ``-W ignore``);
    of those shown, each distinct message is printed once. Other libraries' warnings go to the
    ``warnings.showwarning`` in place before, which is restored afterwards.
    """
    previous = warnings.showwarning
    shown: set[tuple[type[Warning], str]] = set()

    def show(
        message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None, line: str | None = None
    ) -> None:
        if not category.__module__.startswith("qualoader."):
            previous(message, category, filename, lineno, file, line)
            return
        # Handed on with a throwaway file: Python's own display writes its "file:line: Category: ..."
        # there instead of stderr, while a recorder (catch_warnings(record=True), pytest.warns) still gets it.
        previous(message, category, filename, lineno, io.StringIO(), line)
        text = " ".join(str(message).split())
        if (category, text) not in shown:
            shown.add((category, text))
            print(error_line(command, text, kind="warning"), file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def console() -> NoReturn:
    """The ``qualoader`` executable and ``python -m qualoader``: :func:`main`, then exit with its code.

    ``gc.freeze()`` first: the interpreter's last garbage collection would walk every object torch
    made at import, about 0.25 s of a command that scores (a tenth of a short ``precompute``). Every
    command has written, flushed and closed its outputs before :func:`main` returns, so no output
    waits on that collection.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


@contextmanager
def _before_torch(args: argparse.Namespace) -> Iterator[None]:
    """Run the command's ``before_torch`` hook (work that starts before torch is imported), closing what it opened on every path out."""
    hook = getattr(args, "before_torch", None)
    opened = hook(args) if hook is not None else None
    try:
        yield
    finally:
        if opened is not None:
            opened.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; returns the process exit code.

    A user error (:class:`~qualoader.cli._errors.UserError`, raised by a command or by the
    ``--device`` check) prints ``qualoader <command>: error: <message>`` on stderr and returns 2;
    with ``--debug`` it propagates with its traceback. A write that fails for want of space or
    permission (:data:`~qualoader.cli._errors.WRITE_ERRNOS`) and escaped the command's own report is
    one such line too. Warnings of qualoader's own categories print ``qualoader <command>: warning:
    <message>`` on stderr, once per distinct message.

    Ctrl-C at any point, imports included, prints one line and returns 130. A closed standard output
    (``qualoader ... | head``) ends the command quietly with 141, the shells' code for SIGPIPE.
    """
    command: str | None = None
    debug = False
    args = None
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit:  # --help, or a usage error: what argparse printed must meet a closed pipe here, not at exit
            sys.stdout.flush()
            raise
        command, debug = args.command, args.debug
        if args.command is None:
            parser.print_help()
            sys.stdout.flush()
            return 0
        with _command_warnings(args.command), _before_torch(args):
            try:
                if getattr(args, "device", None) is not None:
                    check_device(args.device)
                code = int(args.func(args) or 0)
            except UserError as error:
                if args.debug:
                    raise
                return report_user_error(args.command, error)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at the interpreter's exit
        return code
    except KeyboardInterrupt:
        if debug:
            raise
        print(error_line(command, "interrupted by SIGINT (Ctrl-C)"), file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as error:
        if debug or error.errno not in WRITE_ERRNOS:
            raise
        option, dest = OUTPUT_OPTIONS.get(command or "", (None, ""))
        path = getattr(args, dest, None) if option else None
        if path is None or not _belongs_to(error.filename, path):
            option, path = None, error.filename  # another file (an input, say): named by itself, not as the output
        return report_user_error(command, write_error(error, option, path))


def _belongs_to(filename: object, output: object) -> bool:
    """Whether a failing ``filename`` (``None``: unknown, as for a failed ``write``) is the output, inside it, or its temporary."""
    if filename is None:
        return True
    name, out = Path(os.path.abspath(str(filename))), Path(os.path.abspath(str(output)))
    return name == out or out in name.parents or (name.parent == out.parent and name.name.startswith(f".{out.name}."))


def _closed_pipe() -> int:
    """Point stdout at /dev/null (the interpreter's final flush would fail again) and return 128 + SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or replaced (tests)
        pass
    return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
