"""``create_metric("pyiqa:<name>")``: any pyiqa metric behind the :class:`QualityMetric` protocol.

Importing this module is cheap: pyiqa (extra ``iqa``) is imported only when a ``"pyiqa:"`` metric
is created. Before pyiqa builds a network, the metric's architecture source is inspected (without
running it) for the weight files it would download; when they are not in pyiqa's local cache, a
:class:`FileNotFoundError` names the files and the folder instead of letting a download start on
a machine without internet access. No cached file is ever unpickled: each is read with
``torch.load(weights_only=True)`` first, and an :class:`UnsafeCheckpointError` names a file that
fails (see :mod:`qualoader.metrics._pyiqa_weights`).

Example:
    >>> from qualoader.metrics import create_metric
    >>> metric = create_metric("pyiqa:fsim", device="cpu")
    >>> metric(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)).shape
    torch.Size([2])
"""

from __future__ import annotations

import difflib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qualoader._validation import check_type
from qualoader.metrics._pyiqa_weights import (
    UnsafeCheckpointError,
    WeightRequirement,
    missing_weights_message,
    scan_weight_requirement,
    verify_cached_checkpoints,
    weights_only_loads,
)
from qualoader.metrics.base import QualityMetric
from qualoader.metrics.registry import register_metric_prefix

__all__ = [
    "PyiqaMetric",
    "UnsafeCheckpointError",
    "WeightRequirement",
    "create_pyiqa_metric",
    "pyiqa_configs",
    "pyiqa_weight_requirement",
]

_INSTALL_HINT = "pip install 'qualoader[iqa]'"
#: Seconds any socket may block while a weight-based pyiqa network is built (a last-resort guard).
_BUILD_SOCKET_TIMEOUT = 10.0
#: Smallest side the weight-free pyiqa metrics accept with their default options (their largest
#: unpadded window or pyramid; measured on pyiqa 0.1.16, each checked by a test). Others: 1.
_PYIQA_MIN_SIZES = {"fsim": 2, "gmsd": 4, "mad": 16, "ms_ssim": 161, "piqe": 8, "ssim": 11, "vif": 33}


def _import_pyiqa() -> Any:
    try:
        import pyiqa
    except ImportError as error:
        raise ImportError(f"'pyiqa:' metrics need the optional dependency pyiqa, which is not installed: {_INSTALL_HINT}") from error
    return pyiqa


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
    configs = pyiqa_configs()
    _check_pyiqa_name(name, configs)
    pyiqa = _import_pyiqa()
    from pyiqa.utils import download_util

    arch_dir = Path(pyiqa.__file__).resolve().parent / "archs"
    return scan_weight_requirement(arch_dir, configs[name]["metric_opts"], Path(download_util.DEFAULT_CACHE_DIR))


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

    def __init__(
        self, pyiqa_name: str, network: torch.nn.Module, options: dict[str, Any], *, needs_weights: bool, check_values: bool = True
    ) -> None:
        super().__init__(check_values=check_values)
        self.pyiqa_name = pyiqa_name
        self.name = f"pyiqa:{pyiqa_name}"  # type: ignore[misc]
        self.higher_is_better = not bool(getattr(network, "lower_better", False))  # type: ignore[misc]
        self.requires_reference = getattr(network, "metric_mode", "NR") == "FR"  # type: ignore[misc]
        self.requires_weights = needs_weights  # type: ignore[misc]
        self.min_size = _PYIQA_MIN_SIZES.get(pyiqa_name, 1)
        self.options = dict(options)
        self.network = network

    def get_config(self) -> dict[str, Any]:
        return {"pyiqa_name": self.pyiqa_name, "options": self.options}

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        # pyiqa's filters are not written for half precision; forward() applies the score dtype policy.
        images = images.float() if images.dtype in (torch.float16, torch.bfloat16) else images
        if self.requires_reference:
            if reference is None:
                raise ValueError(f"reference should be a tensor of clean images for {self.name!r}, but got reference=None")
            reference = reference.to(images.dtype)
            output = self.network(images, reference)
        else:
            output = self.network(images)
        return output.reshape(images.shape[0])


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
        UnsafeCheckpointError: a weight file pyiqa would load cannot be read with
            ``torch.load(weights_only=True)`` (a pickle that could run code, or a corrupt file);
            pyiqa never sees it and the message names the file.
    """
    check_type(check_weights, "check_weights", bool, "a bool")
    configs = pyiqa_configs()
    _check_pyiqa_name(name, configs)
    requirement = pyiqa_weight_requirement(name)
    # Safety comes first and is not optional (check_weights only governs the offline check): pyiqa
    # unpickles with weights_only=False, so every file it may load is read safely here and its own
    # loads are forced to weights_only=True while it builds.
    pinned = options.get("pretrained_model_path")
    verify_cached_checkpoints(requirement, extra=(pinned,) if isinstance(pinned, str) else ())
    if check_weights and requirement.needs_weights and (requirement.backbone or requirement.missing()):
        raise FileNotFoundError(missing_weights_message(name, requirement))
    import pyiqa

    target = torch.device("cpu") if device is None else torch.device(device)
    with weights_only_loads():
        if requirement.needs_weights:
            with _socket_timeout(_BUILD_SOCKET_TIMEOUT):
                network = pyiqa.create_metric(name, device=target, check_input_range=False, **options)
        else:
            network = pyiqa.create_metric(name, device=target, check_input_range=False, **options)
    return PyiqaMetric(name, network, options, needs_weights=requirement.needs_weights, check_values=check_values)


register_metric_prefix("pyiqa", create_pyiqa_metric)
