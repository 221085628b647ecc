"""``create_metric("pyiqa:<name>")``: any pyiqa metric behind the :class:`QualityMetric` protocol.

Importing this module is cheap: pyiqa (extra ``iqa``) is imported only when a ``"pyiqa:"`` metric
is created. Before pyiqa builds a network, the metric's architecture source is inspected (without
running it) for the weight files it would download; when they are not in pyiqa's local cache, a
:class:`FileNotFoundError` names the files and the folder instead of letting a download start on
a machine without internet access.

Example:
    >>> metric = create_metric("pyiqa:fsim", device="cpu")
    >>> metric(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)).shape
    torch.Size([2])
"""

from __future__ import annotations

import ast
import difflib
import functools
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qualoader._validation import check_type
from qualoader.metrics.base import QualityMetric
from qualoader.metrics.registry import register_metric_prefix

__all__ = ["PyiqaMetric", "WeightRequirement", "create_pyiqa_metric", "pyiqa_configs", "pyiqa_weight_requirement"]

_INSTALL_HINT = "pip install 'qualoader[iqa]'"
#: Calls that fetch pretrained backbones through timm, torchvision, CLIP or Hugging Face.
_BACKBONE_CALLS = ("timm.create_model", "clip.load", "from_pretrained", "hf_hub_download", "load_state_dict_from_url")
#: Helper modules of ``pyiqa.archs`` that define (not use) the download functions.
_HELPER_MODULES = frozenset({"arch_util", "func_util", "constants", "__init__"})
#: Seconds any socket may block while a weight-based pyiqa network is built (a last-resort guard).
_BUILD_SOCKET_TIMEOUT = 10.0


def _import_pyiqa() -> Any:
    try:
        import pyiqa
    except ImportError as error:
        raise ImportError(f"'pyiqa:' metrics need the optional dependency pyiqa, which is not installed: {_INSTALL_HINT}") from error
    return pyiqa


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


def _camel_to_snake(name: str) -> str:
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)).lower()


def _arch_source(arch_dir: Path, network_type: str) -> Path | None:
    """The ``pyiqa/archs/*_arch.py`` file defining ``network_type`` (pyiqa's own naming rules first)."""
    stem = network_type.removesuffix("_arch")
    for candidate in (stem, stem.lower(), _camel_to_snake(stem)):
        path = arch_dir / f"{candidate}_arch.py"
        if path.is_file():
            return path
    pattern = re.compile(rf"^class {re.escape(network_type)}\b", re.MULTILINE)
    for path in sorted(arch_dir.glob("*.py")):
        if pattern.search(path.read_text(encoding="utf-8")):
            return path
    return None


def _docstring_nodes(tree: ast.AST) -> set[int]:
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
            module = node.module or ""
            if node.level == 1 and module:
                scan.siblings.add(module.split(".")[0])
            elif module.startswith("pyiqa.archs."):
                scan.siblings.add(module.split(".")[2])
    return scan


def pyiqa_weight_requirement(name: str) -> WeightRequirement:
    """Read the source of pyiqa metric ``name`` and report the weights it would download.

    Nothing is constructed and no network is used. The architecture module and the sibling
    ``pyiqa.archs`` modules it imports are parsed; weight URLs in docstrings are ignored. The
    cache folder is read at call time (pyiqa's ``DEFAULT_CACHE_DIR``, under ``torch.hub.get_dir()``).

    Args:
        name: a pyiqa metric name, e.g. ``"brisque"``.

    Returns:
        The :class:`WeightRequirement` of the metric's default configuration.

    Raises:
        ImportError: pyiqa is not installed.
        KeyError: ``name`` is not a pyiqa metric (the message suggests close matches).
    """
    _check_pyiqa_name(name, pyiqa_configs())
    from pyiqa.utils import download_util

    files, selected, backbone, sources = _scan_requirement(name)
    return WeightRequirement(files=files, selected=selected, backbone=backbone, cache_dir=Path(download_util.DEFAULT_CACHE_DIR), sources=sources)


@functools.cache
def _scan_requirement(name: str) -> tuple[tuple[str, ...], tuple[str, ...], bool, tuple[str, ...]]:
    """``(files, selected, backbone, sources)`` of a valid pyiqa metric name (sources never change)."""
    pyiqa = _import_pyiqa()
    arch_dir = Path(pyiqa.__file__).resolve().parent / "archs"
    options = pyiqa_configs()[name]["metric_opts"]
    source = _arch_source(arch_dir, options["type"])
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
    option_values = {str(value) for value in options.values() if isinstance(value, (str, int, float))}
    selected = tuple(sorted({keys[key] for key in option_values if key in keys}))
    pretrained_path = options.get("pretrained_model_path")
    if isinstance(pretrained_path, str):
        selected = (os.path.basename(pretrained_path.split("?")[0]),)
    return tuple(sorted(files)), selected, backbone, tuple(sources)


def pyiqa_configs() -> dict[str, Any]:
    """pyiqa's ``DEFAULT_CONFIGS``: metric name -> default options, ``metric_mode``, ``lower_better``.

    Raises:
        ImportError: pyiqa is not installed.
    """
    _import_pyiqa()
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    return DEFAULT_CONFIGS


def _check_pyiqa_name(name: Any, configs: dict[str, Any]) -> None:
    check_type(name, "name", str, "a pyiqa metric name (str)")
    if name not in configs:
        close = difflib.get_close_matches(name, list(configs), n=3)
        hint = f"; did you mean {', '.join(repr(f'pyiqa:{c}') for c in close)}?" if close else "; see pyiqa.list_models()"
        raise KeyError(f"name should be a pyiqa metric, but got name={name!r}{hint}")


def _missing_weights_message(name: str, requirement: WeightRequirement) -> str:
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


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every socket operation while a weight-based network is built (restored afterwards)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


class PyiqaMetric(QualityMetric):
    """A pyiqa metric behind the qualoader protocol (batched, on the metric's device).

    ``name`` is ``"pyiqa:<name>"``; ``higher_is_better`` comes from pyiqa's ``lower_better`` and
    ``requires_reference`` from its ``metric_mode`` (``"FR"``/``"NR"``). Build it with
    :func:`create_pyiqa_metric` or ``create_metric("pyiqa:<name>")``.

    Args:
        pyiqa_name: the pyiqa metric name, e.g. ``"fsim"``.
        network: the pyiqa ``InferenceModel``.
        options: keyword options passed to pyiqa (for :meth:`get_config`).
        check_values: validate input values (see :class:`QualityMetric`).
    """

    requires_weights = False

    def __init__(self, pyiqa_name: str, network: torch.nn.Module, options: dict[str, Any], *, needs_weights: bool, check_values: bool = True) -> None:
        super().__init__(check_values=check_values)
        self.pyiqa_name = pyiqa_name
        self.name = f"pyiqa:{pyiqa_name}"  # type: ignore[misc]
        self.higher_is_better = not bool(getattr(network, "lower_better", False))  # type: ignore[misc]
        self.requires_reference = getattr(network, "metric_mode", "NR") == "FR"  # type: ignore[misc]
        self.requires_weights = needs_weights  # type: ignore[misc]
        self.options = dict(options)
        self.network = network

    def get_config(self) -> dict[str, Any]:
        return {"pyiqa_name": self.pyiqa_name, "options": self.options}

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        dtype = images.dtype
        images = images.float() if dtype in (torch.float16, torch.bfloat16) else images
        if self.requires_reference:
            if reference is None:
                raise ValueError(f"reference should be a tensor of clean images for {self.name!r}, but got reference=None")
            reference = reference.to(images.dtype)
            output = self.network(images, reference)
        else:
            output = self.network(images)
        return output.reshape(images.shape[0]).to(dtype)


def create_pyiqa_metric(
    name: str,
    device: str | torch.device | None = None,
    *,
    check_weights: bool = True,
    check_values: bool = True,
    **options: Any,
) -> PyiqaMetric:
    """Wrap ``pyiqa.create_metric(name)`` in the :class:`QualityMetric` protocol.

    Args:
        name: a pyiqa metric name (``pyiqa.list_models()``), e.g. ``"fsim"``, ``"brisque"``.
        device: where the network lives (``None``: CPU).
        check_weights: refuse to build a metric whose weights are not in the local cache
            (checked from source before any construction). ``False`` skips the check when the
            files are in place in a location that cannot be verified; pyiqa may then try to
            download what is missing (sockets time out after 10 s while building).
        check_values: validate input values on every call.
        **options: metric options forwarded to pyiqa (e.g. ``test_y_channel=False``).

    Returns:
        The wrapped metric, in eval mode, on ``device``.

    Raises:
        ImportError: pyiqa is not installed (``pip install 'qualoader[iqa]'``).
        KeyError: unknown pyiqa metric name (with close matches).
        FileNotFoundError: the metric needs weights that are not in the local cache; the message
            names the files and the folder.
    """
    check_type(check_weights, "check_weights", bool, "a bool")
    configs = pyiqa_configs()
    _check_pyiqa_name(name, configs)
    requirement = pyiqa_weight_requirement(name)
    if check_weights and requirement.needs_weights and (requirement.backbone or requirement.missing()):
        raise FileNotFoundError(_missing_weights_message(name, requirement))
    import pyiqa

    target = torch.device("cpu") if device is None else torch.device(device)
    if requirement.needs_weights:
        with _socket_timeout(_BUILD_SOCKET_TIMEOUT):
            network = pyiqa.create_metric(name, device=target, check_input_range=False, **options)
    else:
        network = pyiqa.create_metric(name, device=target, check_input_range=False, **options)
    return PyiqaMetric(name, network, options, needs_weights=requirement.needs_weights, check_values=check_values)


register_metric_prefix("pyiqa", create_pyiqa_metric)
