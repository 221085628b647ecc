"""``python -m benchmarks.alignment``: see :mod:`benchmarks.alignment` and ``--help``."""

import sys

from benchmarks.alignment.run import main

sys.exit(main())
