"""Bounded JSON reading: every JSON file qualoader reads (profiles, store headers, sidecars, calibrations).

A file a user received may be hostile: nested ten thousand levels deep (``json`` then raises
``RecursionError``), gigabytes long, or not text at all. Each of these is one ``ValueError`` that names
the file and says what was expected, never a traceback from the parser.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "loads_json", "read_bounded", "read_json"]

#: No qualoader JSON file nests deeper than about six levels; 64 leaves room and stays far from the
#: interpreter's recursion limit, so the depth check itself cannot overflow.
MAX_JSON_DEPTH = 64
#: The largest JSON file qualoader writes (a profile with a calibration curve) is under 1 MB.
MAX_JSON_BYTES = 64 * 1024 * 1024


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, iteratively (a deep value must not recurse)."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in item)
    return deepest


def loads_json(text: str | bytes, *, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse ``text`` as JSON nested at most ``max_depth`` levels.

    Args:
        text: the document.
        what: how the error names the document, e.g. ``"profile 'p.json'"``.
        max_depth: the deepest nesting accepted.

    Raises:
        ValueError: not valid JSON (also not UTF-8), or nested deeper than ``max_depth``.

    Example:
        >>> loads_json('{"a": [1, 2]}', what="example")
        {'a': [1, 2]}
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"{what} should be JSON nested at most {max_depth} levels deep, but it nests deeper") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{what} should be a valid JSON document, but it is not ({error})") from None
    if _depth(value) > max_depth:
        raise ValueError(f"{what} should be JSON nested at most {max_depth} levels deep, but it nests deeper")
    return value


def read_bounded(path: str | os.PathLike[str], *, what: str, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of ``path``, refusing a file over ``max_bytes`` before reading it (and a longer special file after).

    Raises:
        ValueError: the file is larger than ``max_bytes``; the message names it by ``what``.
        OSError: the file cannot be read.
    """
    with Path(path).open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > max_bytes:
            raise ValueError(f"{what} should be at most {max_bytes} bytes, but it has {size}")
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:  # a special file whose size stat does not report
        raise ValueError(f"{what} should be at most {max_bytes} bytes, but it is longer")
    return data


def read_json(path: str | os.PathLike[str], *, what: str | None = None, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read and parse the JSON file ``path``, refusing files over ``max_bytes`` before reading them.

    Args:
        path: the file.
        what: how the error names the file (default ``"JSON file '<path>'"``).
        max_bytes: the largest file accepted.

    Raises:
        ValueError: too large, not JSON, or nested too deep (see :func:`loads_json`).
        OSError: the file cannot be read.
    """
    what = what or f"JSON file '{Path(path)}'"
    return loads_json(read_bounded(path, what=what, max_bytes=max_bytes), what=what)
