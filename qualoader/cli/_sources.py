"""The one source grammar of the ``qualoader`` commands.

A SOURCE is one of:

* ``fashion-mnist`` or ``fashion-mnist:<split>`` (``train`` / ``test``; the full local copy, else
  the sample bundled with qualoader);
* an image folder (flat, or ``ImageFolder``-style ``root/<class>/<image>``);
* webdataset ``.tar`` shards: paths, brace patterns (``data-{000..009}.tar``) or a folder of shards.

Every command parses its SOURCE arguments with :func:`parse_source` and states which kinds it takes;
a SOURCE of another kind, a bad split or a missing path is a :class:`~qualoader.cli._errors.UserError`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qualoader.cli._errors import UserError, user_errors

__all__ = ["FASHION_MNIST", "SOURCE_HELP", "SOURCE_KINDS", "Source", "parse_source"]

FASHION_MNIST = "fashion-mnist"
SOURCE_KINDS = frozenset({"fashion-mnist", "folder", "shards"})
SOURCE_HELP = (
    "fashion-mnist[:train|test] (the full local copy, else the bundled sample), an image folder, "
    "or webdataset .tar shards (paths, brace patterns such as data-{000..009}.tar, or a folder of shards)"
)
_SPLITS = ("train", "test")
_SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_KIND_WORDS = {"fashion-mnist": "fashion-mnist[:split]", "folder": "an image folder", "shards": "webdataset shards"}


@dataclass(frozen=True)
class Source:
    """A parsed SOURCE.

    Attributes:
        kind: ``"fashion-mnist"``, ``"folder"`` or ``"shards"``.
        text: the SOURCE as given (items joined by spaces), for messages.
        split: the Fashion-MNIST split written in the SOURCE (``None`` when not written or not Fashion-MNIST).
        folder: the image folder (``kind == "folder"``).
        shards: the shard paths or urls, brace patterns expanded (``kind == "shards"``).
    """

    kind: str
    text: str
    split: str | None = None
    folder: Path | None = None
    shards: tuple[str, ...] = field(default_factory=tuple)

    def resolved_split(self, option: str | None, default: str = "test") -> str:
        """The Fashion-MNIST split: from the SOURCE, else a ``--split`` option, else ``default``.

        Raises:
            UserError: the SOURCE and ``--split`` name different splits.
        """
        if self.split is not None and option is not None and option != self.split:
            raise UserError(f"--split should agree with SOURCE, but got SOURCE={self.text!r} and --split={option!r}")
        return self.split or option or default

    def report_source(self) -> str | list[str]:
        """The form :func:`qualoader.report.build_report` takes."""
        if self.kind == "fashion-mnist":
            return f"{FASHION_MNIST}:{self.split or 'test'}"
        if self.kind == "folder":
            return str(self.folder)
        return list(self.shards)


def _is_remote(item: str) -> bool:
    return "://" in item or item.startswith("pipe:")


def parse_source(items: str | Sequence[str], kinds: Collection[str] = SOURCE_KINDS, name: str = "SOURCE") -> Source:
    """Parse SOURCE arguments into a :class:`Source` of one of ``kinds``.

    Args:
        items: the SOURCE argument(s) as typed (several only for shards).
        kinds: the kinds the command takes (a subset of :data:`SOURCE_KINDS`).
        name: the argument's name in messages.

    Raises:
        UserError: a bad split, a path that does not exist, a mix of kinds, or a kind the command does not take.
    """
    parts = [items] if isinstance(items, str) else list(items)
    if not parts:
        raise UserError(f"{name} should name a dataset, a folder or shards ({SOURCE_HELP}), but got nothing")
    text = " ".join(parts)
    source = _classify(parts, text, name)
    if source.kind not in kinds:
        expected = " or ".join(_KIND_WORDS[kind] for kind in sorted(kinds))
        raise UserError(f"{name} should be {expected} for this command, but got {name}={text!r}, which is {_KIND_WORDS[source.kind]}")
    return source


def _classify(parts: list[str], text: str, name: str) -> Source:
    first = parts[0]
    if len(parts) == 1 and (first == FASHION_MNIST or first.startswith(FASHION_MNIST + ":")):
        _, _, split = first.partition(":")
        if split and split not in _SPLITS:
            raise UserError(f"{name} should be fashion-mnist, fashion-mnist:train or fashion-mnist:test, but got {name}={first!r}")
        return Source("fashion-mnist", text, split=split or None)
    if len(parts) == 1 and Path(first).is_dir():
        folder = Path(first)
        shards = sorted(str(path) for path in folder.glob("*.tar"))
        return Source("shards", text, shards=tuple(shards)) if shards else Source("folder", text, folder=folder)
    from qualoader.webdataset import expand_shards

    with user_errors():
        expanded = expand_shards(parts)
    for item in expanded:
        if _is_remote(item) or item.endswith(_SHARD_SUFFIXES):
            continue
        if not Path(item).exists():
            raise UserError(f"{name} should be an existing folder or shard, but got {name}={item!r}, which does not exist")
        raise UserError(
            f"{name} should be one folder, fashion-mnist[:split] or .tar shards, but got {name}={item!r}, which is none of them"
        )
    return Source("shards", text, shards=tuple(expanded))
