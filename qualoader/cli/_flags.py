"""The ``--flags`` option of ``export`` and ``report``: one spelling, one parser, one error text."""

from __future__ import annotations

import argparse

from qualoader.cli._errors import as_option

__all__ = ["add_flags_argument", "parse_flags_option"]

_SPEC_HELP = (
    "quality flags (blurry, noisy, jpeg, dark, light, low-contrast, clipped, hard): alone, every flag whose measure is there; "
    "or names a,b; name=T sets a threshold in the measure's units instead of the robust fit (median -/+ 3 MAD) (repeatable)"
)


def add_flags_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--flags [SPEC]`` (repeatable; alone: ``all``), its help saying ``what`` the command does with the flags."""
    parser.add_argument("--flags", action="append", nargs="?", const="all", default=None, metavar="SPEC", help=f"{what}: {_SPEC_HELP}")


def parse_flags_option(specs: list[str]) -> tuple[list[str] | None, dict[str, float]]:
    """``(names, thresholds)`` of the ``--flags`` values (:func:`qualoader.flags.parse_flag_specs`); errors name ``--flags``."""
    from qualoader.flags import parse_flag_specs

    try:
        return parse_flag_specs(specs)
    except (ValueError, TypeError) as error:
        raise as_option(error, "flags", "--flags") from error
