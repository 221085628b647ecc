"""``python -m qualoader``: the ``qualoader`` command.

``python -m`` puts the current folder first on ``sys.path``; it is taken off before anything else is
imported, so a file in the folder being scored (a ``torch.py``, a module a received profile names)
can never shadow a library or run at import. A trusted profile's entry point still resolves from the
current folder: :mod:`qualoader.profiles.profile` adds it for that one import, explicitly.
"""

import os
import sys

# sys.path[0] is '' or the current folder's path under `python -m`; only that entry is removed, so a
# PYTHONPATH the user set (even one naming this folder) is kept.
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from qualoader.cli import console  # noqa: E402  (after the sys.path fix above, on purpose)

console()
