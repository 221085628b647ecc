"""``python -m benchmarks.training``: see :mod:`benchmarks.training` and ``--help``."""

import sys

from benchmarks.training.run import main

# Guarded: the training processes are spawned, and spawn re-imports the main module in each of them.
if __name__ == "__main__":
    sys.exit(main())
