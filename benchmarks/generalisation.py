"""``python -m benchmarks.generalisation``: the leave-one-family-out benchmark.

It lives in :mod:`benchmarks.alignment.generalisation`, beside the alignment benchmark whose task
models, statistics and report it shares; this shim keeps the documented command working.
"""

import sys

from benchmarks.alignment.generalisation import FAMILIES, build_parser, main, parse_args, render_markdown, run

__all__ = ["FAMILIES", "build_parser", "main", "parse_args", "render_markdown", "run"]

if __name__ == "__main__":
    sys.exit(main())
