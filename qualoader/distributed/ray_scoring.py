"""Score a webdataset shard set with Ray Data, one task per shard (extra ``ray``).

Each Ray task runs :func:`qualoader.webdataset.score_shard` on one shard (creating the metric from
its registered name in the worker) and returns the sidecar index as JSON text; the driver
collects them in shard order. Results equal single-process scoring because every task runs the
very same code on the same batches. Shards must be readable from the workers (local files on a
local instance, a shared file system or ``pipe:``/``http`` urls on a cluster); sidecars are
returned to the driver, so the output folder only needs to exist there.

Ray is imported lazily: importing this module does not need Ray.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from qualoader._validation import check_choice, check_positive_int, check_type
from qualoader.webdataset._common import (
    DEFAULT_IMAGE_KEYS,
    ERROR_POLICIES,
    check_image_keys,
)
from qualoader.webdataset.tagging import SidecarIndex, expand_shards, score_shard

__all__ = ["CONNECT_TIMEOUT_S", "score_shards_ray"]

#: Seconds to wait for a Ray cluster's address to answer before giving up (Ray itself retries for minutes).
CONNECT_TIMEOUT_S = 10.0


def _score_row(
    row: dict[str, Any], *, metrics: list[str], batch_size: int, device: str, image_keys: list[str], on_error: str
) -> dict[str, Any]:
    """Ray Data ``map`` function: score the shard named in ``row["url"]``; returns its sidecar JSON."""
    index = score_shard(row["url"], metrics, batch_size=batch_size, device=device, image_keys=image_keys, handler=on_error)
    return {"order": row["order"], "url": row["url"], "sidecar": index.to_json()}


def _check_reachable(address: str, timeout: float) -> None:
    """Raise ``ConnectionError`` unless something accepts a TCP connection at ``address`` within ``timeout`` seconds.

    ``"auto"`` and addresses without a port are left to Ray, which finds them in its own files.
    """
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConnectionError(
            f"address should be a reachable Ray cluster, but got address={address!r}: {reason} (gave up after at most {timeout:g} s)"
        ) from error


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("score_shards_ray needs Ray Data: pip install 'qualoader[ray]'") from error
    return ray


def score_shards_ray(
    urls: str | Sequence[str],
    metrics: str | Sequence[str],
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    on_error: str = "raise",
    progress: bool = True,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> list[SidecarIndex]:
    """Score every shard with Ray Data and return one :class:`SidecarIndex` per shard (input order).

    When Ray is not initialised yet, this starts a local instance
    (``ray.init(num_cpus=num_cpus, include_dashboard=False)``) or connects to ``address``, and
    shuts it down at the end; an already initialised Ray is used as it is.

    Args:
        urls: shard paths/urls or brace patterns.
        metrics: registered no-reference metric name(s), ``"a,b,c"`` or a suite such as
            ``"classical"`` (see :func:`qualoader.engine.parse_metric_spec`); created inside each worker.
        address: Ray cluster address (``"auto"``, ``"ray://host:10001"``, ...); ``None`` starts a
            local instance.
        num_cpus: CPUs of the local instance (``None``: all); ignored with ``address``.
        batch_size: images per metric call.
        device: scoring device inside the workers.
        image_keys: member extensions tried to find the image.
        on_error: ``"raise"`` or ``"skip"`` (corrupt shard, missing/undecodable image).
        progress: show Ray Data's progress bars (on stderr).
        connect_timeout: seconds to wait for ``address`` to accept a connection (default
            :data:`CONNECT_TIMEOUT_S`); Ray alone would retry an unreachable address for minutes.

    Returns:
        The sidecar indexes, in the order of the expanded ``urls``.

    Raises:
        ConnectionError: nothing answers at ``address`` within ``connect_timeout`` seconds.

    Example:
        >>> from qualoader.datasets import load_fashion_mnist
        >>> from qualoader.webdataset import write_image_shards
        >>> shards = write_image_shards(load_fashion_mnist("test")[0][:40], "data-%06d.tar", maxcount=20)
        >>> indexes = score_shards_ray("data-{000000..000001}.tar", "sharpness", num_cpus=1, progress=False)
        >>> indexes[0].scores("sharpness").shape
        torch.Size([20])
    """
    shards = [os.path.abspath(u) if os.path.exists(u) else u for u in expand_shards(urls)]
    from qualoader.engine import parse_metric_spec, resolve_metrics

    names = parse_metric_spec(metrics)  # "a,b,c", suites such as "classical", or a list
    resolve_metrics(names)  # fail fast, in the driver, on unknown or full-reference names (the engine's one check)
    if address is not None:
        check_type(address, "address", str, "a Ray address (str)")
    if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float)) or not 0 < connect_timeout < float("inf"):
        raise ValueError(f"connect_timeout should be a positive number of seconds, but got connect_timeout={connect_timeout!r}")
    if num_cpus is not None:
        check_positive_int(num_cpus, "num_cpus")
    check_positive_int(batch_size, "batch_size")
    check_type(device, "device", str, "a device name (str)")
    check_choice(on_error, "on_error", ERROR_POLICIES)
    keys = list(check_image_keys(image_keys))
    if address is not None:  # before importing Ray (seconds): an unreachable cluster fails at once
        _check_reachable(address, float(connect_timeout))

    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        if address is not None:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        with warnings.catch_warnings():  # Ray's own deprecation notices about its context fields
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = bool(progress)
        items = [{"order": i, "url": url} for i, url in enumerate(shards)]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map(
            _score_row,
            fn_kwargs={"metrics": names, "batch_size": batch_size, "device": device, "image_keys": keys, "on_error": on_error},
            num_cpus=1,
        )
        rows = sorted(dataset.take_all(), key=itemgetter("order"))
    finally:
        if started:
            ray.shutdown()
    return [SidecarIndex.from_json(row["sidecar"]) for row in rows]
