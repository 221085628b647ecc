import sys

from qualoader.cli import main

sys.exit(main())
