"""pyiqa's weight files: which ones a metric downloads, and whether a cached one is safe to load.

Two jobs, both done before pyiqa builds anything:

* :func:`scan_weight_requirement` reads a metric's architecture source (with :mod:`ast`, never
  running it) for the files pyiqa would download, so a machine without internet gets a clear
  error naming the files and the folder instead of a hanging download.
* :func:`verify_checkpoint` and :func:`weights_only_loads` keep pyiqa from unpickling anything:
  pyiqa loads most checkpoints with ``torch.load(weights_only=False)``, so a file planted in its
  cache would run arbitrary code. Every cached file is first read with
  ``torch.load(weights_only=True)``, and while pyiqa builds the network every ``torch.load`` is
  forced to ``weights_only=True``.

The public entry points are re-exported by :mod:`qualoader.metrics.pyiqa_adapter`.
"""

from __future__ import annotations

import ast
import functools
import os
import pickle
import re
import threading
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "UnsafeCheckpointError",
    "WeightRequirement",
    "missing_weights_message",
    "scan_weight_requirement",
    "verify_cached_checkpoints",
    "verify_checkpoint",
    "weights_only_loads",
]

#: Calls that fetch pretrained backbones through timm, torchvision, CLIP or Hugging Face.
_BACKBONE_CALLS = ("timm.create_model", "clip.load", "from_pretrained", "hf_hub_download", "load_state_dict_from_url")
#: Helper modules of ``pyiqa.archs`` that define (not use) the download functions.
_HELPER_MODULES = frozenset({"arch_util", "func_util", "constants", "__init__"})
#: Formats pyiqa reads without pickle (``scipy.io.loadmat``; ``numpy.load`` keeps ``allow_pickle=False``).
_NON_PICKLE_SUFFIXES = frozenset({".mat", ".npy", ".npz"})


class UnsafeCheckpointError(ValueError):
    """A weight file that ``torch.load(weights_only=True)`` cannot read, so pyiqa is not allowed to load it.

    A ``ValueError`` (the file's content is the bad value): it is either corrupt or holds pickled
    Python objects, which could run code when unpickled.
    """


@dataclass(frozen=True)
class WeightRequirement:
    """What a pyiqa metric downloads on construction, found by reading its architecture source.

    Attributes:
        files: weight file names pyiqa fetches into :attr:`cache_dir` (any one of them may be the
            one the default configuration uses).
        selected: the subset of ``files`` the metric's default options pick, when they name one.
        backbone: ``True`` when the architecture also loads pretrained backbones through
            timm / torchvision / CLIP / Hugging Face (files that cannot be named statically).
        cache_dir: pyiqa's weight cache (``pyiqa.utils.download_util.DEFAULT_CACHE_DIR``).
        sources: the architecture source files that were read.
    """

    files: tuple[str, ...] = ()
    selected: tuple[str, ...] = ()
    backbone: bool = False
    cache_dir: Path = field(default_factory=Path)
    sources: tuple[str, ...] = ()

    @property
    def needs_weights(self) -> bool:
        """``True`` when constructing the metric loads any pretrained weights."""
        return bool(self.files) or self.backbone

    def missing(self) -> tuple[str, ...]:
        """Required files absent from :attr:`cache_dir` (``selected`` if known, else all unless one exists)."""
        wanted = self.selected or self.files
        absent = tuple(name for name in wanted if not (self.cache_dir / name).is_file())
        if not self.selected and len(absent) < len(wanted):
            return ()  # at least one candidate is cached and the default cannot be pinned down
        return absent

    def cached(self) -> tuple[Path, ...]:
        """Paths of the files pyiqa may load that are present in :attr:`cache_dir` (``selected`` first if known)."""
        wanted = self.selected or self.files
        return tuple(self.cache_dir / name for name in wanted if (self.cache_dir / name).is_file())


# -- source scanner --------------------------------------------------------------------------------


def _camel_to_snake(name: str) -> str:
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)).lower()


def _arch_source(arch_dir: Path, network_type: str) -> Path | None:
    """The ``pyiqa/archs/*_arch.py`` file defining ``network_type`` (pyiqa's own naming rules first)."""
    stem = network_type.removesuffix("_arch")
    for candidate in (stem, stem.lower(), _camel_to_snake(stem)):
        path = arch_dir / f"{candidate}_arch.py"
        if path.is_file():
            return path
    # Some classes live in a file named after another network: fall back to a definition search.
    pattern = re.compile(rf"^class {re.escape(network_type)}\b", re.MULTILINE)
    for path in sorted(arch_dir.glob("*.py")):
        if pattern.search(path.read_text(encoding="utf-8")):
            return path
    return None


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """Ids of the docstring constants of ``tree``: URLs quoted in documentation are not downloads."""
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                nodes.add(id(first.value))
    return nodes


@dataclass
class _Scan:
    files: set[str] = field(default_factory=set)
    backbone: bool = False
    siblings: set[str] = field(default_factory=set)


def _url_key_files(tree: ast.AST) -> dict[str, str]:
    """``default_model_urls = {"key": get_url_from_name("file"), ...}`` -> ``{"key": "file"}``."""
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for key, value in zip(node.value.keys, node.value.values):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    name = _file_of(value)
                    if name:
                        found[key.value] = name
    return found


def _file_of(node: ast.AST) -> str | None:
    """The weight file named by ``get_url_from_name("file")`` or by a literal URL, else ``None``."""
    if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("get_url_from_name") and node.args:
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(("http://", "https://")):
        return os.path.basename(node.value.split("?")[0])
    return None


def _scan_source(path: Path) -> _Scan:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = _docstring_nodes(tree)
    scan = _Scan()
    for node in ast.walk(tree):
        if id(node) in docstrings:
            continue
        name = _file_of(node)
        if name:
            scan.files.add(name)
        if isinstance(node, ast.Call):
            function = ast.unparse(node.func)
            if any(call in function for call in _BACKBONE_CALLS):
                scan.backbone = True
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg == "pretrained" and isinstance(value, ast.Constant) and value.value is True:
                    scan.backbone = True
                if keyword.arg == "weights" and not (isinstance(value, ast.Constant) and value.value is None):
                    scan.backbone = True
        if isinstance(node, ast.ImportFrom):
            # Weights may be fetched by a sibling architecture the metric builds on (e.g. a shared backbone).
            module = node.module or ""
            if node.level == 1 and module:
                scan.siblings.add(module.split(".")[0])
            elif module.startswith("pyiqa.archs."):
                scan.siblings.add(module.split(".")[2])
    return scan


def scan_weight_requirement(arch_dir: Path, options: dict[str, Any], cache_dir: Path) -> WeightRequirement:
    """Read the source of a pyiqa metric and report the weights it would download.

    Nothing is constructed and no network is used. The architecture module and the sibling
    ``pyiqa.archs`` modules it imports are parsed; weight URLs in docstrings are ignored.

    Args:
        arch_dir: the installed ``pyiqa/archs`` folder.
        options: pyiqa's ``metric_opts`` of a valid metric (``type`` names the architecture class).
        cache_dir: pyiqa's weight cache, read by the caller at call time.

    Returns:
        The :class:`WeightRequirement` of the metric's default configuration.
    """
    pretrained_path = options.get("pretrained_model_path")
    pinned = pretrained_path if isinstance(pretrained_path, str) else None
    files, selected, backbone, sources = _scan(arch_dir, options["type"], _option_values(options), pinned)
    return WeightRequirement(files=files, selected=selected, backbone=backbone, cache_dir=cache_dir, sources=sources)


def _option_values(options: dict[str, Any]) -> frozenset[str]:
    return frozenset(str(value) for value in options.values() if isinstance(value, (str, int, float)))


@functools.cache
def _scan(
    arch_dir: Path, network_type: str, option_values: frozenset[str], pretrained_path: str | None
) -> tuple[tuple[str, ...], tuple[str, ...], bool, tuple[str, ...]]:
    """``(files, selected, backbone, sources)`` of one metric (cached: installed sources never change)."""
    source = _arch_source(arch_dir, network_type)
    if source is None:  # unknown layout: assume the worst
        return (), (), True, ()
    main = _scan_source(source)
    files = set(main.files)
    backbone, sources = main.backbone, [source.name]
    for sibling in sorted(main.siblings - _HELPER_MODULES):
        path = arch_dir / f"{sibling}.py"
        if path.is_file():
            extra = _scan_source(path)
            files.update(extra.files)
            backbone = backbone or extra.backbone
            sources.append(path.name)
    keys = _url_key_files(ast.parse(source.read_text(encoding="utf-8")))
    selected = tuple(sorted({keys[key] for key in option_values if key in keys}))
    if pretrained_path is not None:
        selected = (os.path.basename(pretrained_path.split("?")[0]),)
    return tuple(sorted(files)), selected, backbone, tuple(sources)


def missing_weights_message(name: str, requirement: WeightRequirement) -> str:
    """One message naming the missing files, the cache folders and how to fill them."""
    parts = [f"pyiqa metric {name!r} needs pretrained weights that are not available offline and qualoader never downloads"]
    missing = requirement.missing()
    if missing and not requirement.selected and len(missing) > 1:
        parts.append(f"none of the weight files {', '.join(missing)} is in pyiqa's cache {requirement.cache_dir}")
    elif missing:
        parts.append(f"missing file(s) {', '.join(missing)} in pyiqa's cache {requirement.cache_dir}")
    if requirement.backbone:
        hub = Path(torch.hub.get_dir())
        parts.append(
            f"it also loads pretrained backbones (timm/torchvision/CLIP/Hugging Face) into {hub / 'checkpoints'} "
            "or the Hugging Face cache, which cannot be verified before construction"
        )
    parts.append(
        f"fix: on a machine with internet run python -c \"import pyiqa; pyiqa.create_metric('{name}')\", copy "
        f"{requirement.cache_dir} (and {Path(torch.hub.get_dir())}) to this machine, then retry "
        "(pass check_weights=False when the files are in place but cannot be verified)"
    )
    return "; ".join(parts)


# -- safe loading ----------------------------------------------------------------------------------


def _reason(error: BaseException) -> str:
    """The informative sentence of a ``torch.load`` failure (torch's text also advises ``weights_only=False``)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    text = text.split("WeightsUnpickler error:", 1)[-1].strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first.split('. ')[0].rstrip('.')}" if first else type(error).__name__


def _unsafe_message(path: Any, error: BaseException) -> str:
    return (
        f"checkpoint should be loadable with torch.load(weights_only=True), but got checkpoint={str(path)!r}, "
        f"which is refused ({_reason(error)}); qualoader never lets pyiqa unpickle a cached file, "
        "because a planted pickle runs arbitrary code when loaded. Delete the file and fetch it again from pyiqa's "
        "release page on a trusted machine, or re-save it as a plain state dict of tensors with torch.save"
    )


def _is_torchscript_archive(path: Path) -> bool:
    """``True`` for a TorchScript zip (CLIP's ``*.pt``), by torch's own test: a top-level ``constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(entry.split("/", 1)[-1] == "constants.pkl" for entry in archive.namelist())


def verify_checkpoint(path: str | os.PathLike[str]) -> None:
    """Check that a weight file can be read without unpickling arbitrary Python objects.

    Tensors, containers and plain values load with ``torch.load(weights_only=True)``. Two kinds
    of file pass without a load because Python's pickle never reads them: TorchScript archives
    (how CLIP ships), which ``torch.load`` hands to the TorchScript loader whose unpickler knows
    only TorchScript types, and ``.mat`` / ``.npy`` / ``.npz`` files, which pyiqa reads with scipy
    and numpy (``allow_pickle=False``).

    Args:
        path: the weight file.

    Raises:
        UnsafeCheckpointError: the file cannot be read this way (it holds other pickled objects or
            is corrupt); the message names the file and what to do.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "weights.pth"
        ...     torch.save({"weight": torch.zeros(2)}, path)
        ...     verify_checkpoint(path)
    """
    path = Path(path)
    if path.suffix.lower() in _NON_PICKLE_SUFFIXES or _is_torchscript_archive(path):
        return
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols > 2 before it accepts or refuses: the verdict is what counts.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (any failure means the file cannot be proven safe)
        raise UnsafeCheckpointError(_unsafe_message(path, error)) from None


def verify_cached_checkpoints(requirement: WeightRequirement, extra: tuple[str | os.PathLike[str], ...] = ()) -> None:
    """:func:`verify_checkpoint` every cached file ``requirement`` may load, and every path in ``extra``."""
    for path in (*requirement.cached(), *extra):
        if Path(path).is_file():
            verify_checkpoint(path)


class _LoadGuard:
    """Counts the open :func:`weights_only_loads` blocks, so overlapping ones (threads) restore correctly.

    The replacement goes in when the first block opens and the real ``torch.load`` comes back when
    the last one closes, whatever the order in which they close.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.original: Any = None

    def enter(self) -> None:
        with self.lock:
            if self.depth == 0:
                self.original = torch.load
                torch.load = _weights_only(self.original)  # type: ignore[assignment]
            self.depth += 1

    def exit(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                torch.load = self.original
                self.original = None


_GUARD = _LoadGuard()


def _weights_only(original: Any) -> Any:
    @functools.wraps(original)
    def load_weights_only(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        try:
            return original(f, *args, **kwargs)
        except pickle.UnpicklingError as error:
            where = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, "name", repr(f))  # a path or an open file
            raise UnsafeCheckpointError(_unsafe_message(where, error)) from None

    return load_weights_only


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """Force ``weights_only=True`` on every ``torch.load`` made inside the block.

    pyiqa, timm and ``torch.hub`` call ``torch.load`` by attribute, so replacing it covers the
    files :func:`verify_cached_checkpoints` could not name in advance (backbones, or a scan that
    missed a file). The replacement is process-wide while any block is open, which only makes a
    concurrent load in another thread stricter, never looser.

    Raises:
        UnsafeCheckpointError: (inside the block) a load would have unpickled other objects.
    """
    _GUARD.enter()
    try:
        yield
    finally:
        _GUARD.exit()
