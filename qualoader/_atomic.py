"""Atomic file writes: a reader never sees a half-written file under its final name."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_bytes_atomic", "write_json_atomic"]


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then ``os.replace``.

    The temporary file lives beside the destination because ``os.replace`` is only atomic within
    one file system.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike[str], payload: Any, *, indent: int = 1) -> Path:
    """Write ``payload`` as strict JSON (NaN and Inf refused) to ``path`` atomically.

    Raises:
        ValueError: ``payload`` holds NaN or Inf (not valid JSON; nothing is written).
    """
    text = json.dumps(payload, indent=indent, allow_nan=False) + "\n"
    return write_bytes_atomic(path, text.encode())
