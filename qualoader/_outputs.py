"""The one check that an output never overwrites, pollutes or swallows an input.

Every command that writes (``export -o``, ``calibrate --out``, ``report --out``, ``demo --output``,
``precompute --store``) calls :func:`check_output` with its output and its inputs (stores, shards
and their sidecars, weights, profiles, image folders) before it writes anything. An output is
refused when it

* **is** an input: the same path after resolving ``..`` and symbolic links, or the same file by
  device and inode (a hard link, a bind mount);
* **lies inside** an input folder (a report or a store inside the image folder would be read as
  data next time; an export inside a store folder could replace ``store.json``);
* **contains** an input (a folder output whose files could replace the input's).

Special files are not compared: a FIFO or a character device (``/dev/null``, ``/dev/stdout``) is
written through by :mod:`qualoader._atomic`, never replaced, so it cannot destroy an input.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = ["OutputOverlapError", "check_output", "sidecar_inputs"]

PathLike = str | os.PathLike[str]


class OutputOverlapError(ValueError):
    """An output that is, contains or lies inside one of the inputs of the same command."""


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _is_special(path: Path) -> bool:
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _encloses(outer: Path, inner: Path) -> bool:
    """Whether the folder ``outer`` holds ``inner`` (strictly), by resolved path or by the identity of one of ``inner``'s parents."""
    outer_real, inner_real = Path(os.path.realpath(outer)), Path(os.path.realpath(inner))
    if outer_real in inner_real.parents:
        return True
    outer_id = _identity(outer)
    if outer_id is None:
        return False
    # a bind mount or a second path to the same folder: compare the folders themselves
    return any(_identity(parent) == outer_id for parent in inner_real.parents)


def _linked_inside(output: Path, folder: Path) -> bool:
    """Whether ``output`` is a hard link of a file inside ``folder``.

    Only an output with several links pays for the walk of ``folder``: a file with one link can be no other file.
    """
    try:
        info = os.stat(output)
    except (OSError, ValueError):
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_nlink < 2 or not folder.is_dir():
        return False
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                other = os.stat(os.path.join(parent, name), follow_symlinks=False)
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino):
                return True
    return False


def _relation(output: Path, source: Path) -> str | None:
    if os.path.realpath(output) == os.path.realpath(source):
        return "is"
    output_id, source_id = _identity(output), _identity(source)
    if output_id is not None and output_id == source_id:
        return "is the same file (a hard link or a bind mount) as"
    if _encloses(source, output):
        return "lies inside"
    if _linked_inside(output, source):
        return "is a hard link of a file inside"
    if _encloses(output, source):
        return "contains"
    return None


def check_output(output: PathLike, option: str, inputs: Iterable[tuple[str, PathLike | None]]) -> None:
    """Refuse an ``output`` that is, lies inside or contains one of ``inputs``.

    Args:
        output: the file or folder the command will write.
        option: its command-line option (``--output``) or argument name, for the message.
        inputs: ``(option, path)`` pairs naming each input (``("SOURCE", "store")``,
            ``("--weights", "net.pt")``); ``None`` paths are skipped. Inputs that do not exist
            are compared by path only.

    Raises:
        OutputOverlapError: ``output`` overlaps an input; the message names both options and paths.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> check_output(f"{folder}/out.csv", "--output", [("SOURCE", f"{folder}/store")])
        >>> check_output(f"{folder}/store/store.json", "--output", [("SOURCE", f"{folder}/store")])
        Traceback (most recent call last):
        ...
        qualoader._outputs.OutputOverlapError: --output should not overwrite or lie inside an input, ...
    """
    output = Path(output)
    if _is_special(output):
        return
    for input_option, source in inputs:
        if source is None:
            continue
        relation = _relation(output, Path(source))
        if relation is not None:
            raise OutputOverlapError(
                f"{option} should not overwrite or lie inside an input, but got {option}={str(output)!r}, which {relation} "
                f"{input_option}={str(source)!r}"
            )


def sidecar_inputs(option: str, shards: Iterable[str]) -> list[tuple[str, PathLike | None]]:
    """``(option, path)`` input pairs for local webdataset shards and their ``<shard>.quality.json`` sidecars (urls are skipped)."""
    pairs: list[tuple[str, PathLike | None]] = []
    for shard in shards:
        if "://" in shard or shard.startswith("pipe:"):
            continue
        pairs += [(option, shard), (option, f"{shard}.quality.json")]
    return pairs
