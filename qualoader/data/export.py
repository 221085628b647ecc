"""Export scores as a table: one row per sample, to columns, pandas, Arrow, CSV, Parquet or JSON lines.

Two sources: a score store (:func:`store_columns`) and tagged webdataset shards, read from their
sidecar indexes (:func:`shard_columns`). Store columns (in this order):

* ``index``: the sample index (int64).
* ``path`` for folder datasets (the file path relative to the dataset root) or ``key`` otherwise
  (the user's keys; null when the store records none).
* per metric configuration, ``<metric>`` (the score, float64, NaN/null where not scored or skipped)
  and ``<metric>_difficulty`` (the calibrated expected error in [0, 1]; NaN/null without a
  calibration). ``<metric>`` is the registry name; when the store holds several configurations of
  one metric, each is ``<name>-<profile>`` with the name of the quality profile that scored it (the
  name ``qualoader profile show`` prints), or ``<name>-<fingerprint>`` for a table without a profile
  (see :func:`column_labels`).

Difficulty is mapped from the stored scores at read time, by the rule the readers given a metric follow
(:func:`table_calibration`, which :func:`~qualoader.data.describe` uses too): an explicit
``calibrations[name]``, else the *current* calibration of the metric (or quality profile's metric)
given in ``metrics`` whose fingerprint is the table's, else the one saved in the table's header
when the table was created. A table's fingerprint leaves the calibration out, so re-calibrating a
metric or refitting its profile changes the exported difficulties without rescoring anything.

Shard columns: ``index`` (running over the shards in order), ``shard`` (the shard path as given),
``key``, then the same per-metric score and difficulty columns (NaN/null where a sample has none).

Files are written atomically: to a temporary file in the output's folder, fsynced, then renamed.
Text cells are written so that no reader is surprised: a CSV cell (header included) that begins with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with ``'`` so a spreadsheet shows it as
text instead of running it as a formula (numbers are written as numbers); a file name that is not
UTF-8 is written in every format with each undecodable byte as ``\\xNN`` (Python's ``backslashreplace``).

Example:
    >>> import tempfile
    >>> from qualoader.data import ScoreStore
    >>> from qualoader.metrics import create_metric
    >>> store = ScoreStore(tempfile.mkdtemp(), length=3)
    >>> store.table(create_metric("brightness"), create=True).write([0, 2], [0.25, 0.5])
    >>> list(store_columns(store))
    ['index', 'key', 'brightness', 'brightness_difficulty']
    >>> store_columns(store)["brightness"]
    array([0.25,  nan, 0.5 ])
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from qualoader._atomic import write_bytes_atomic
from qualoader._validation import check_choice, check_type
from qualoader.metrics.base import QualityMetric

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import pyarrow

    from qualoader.data.store import ScoreStore, ScoreTable

__all__ = [
    "EXPORT_FORMATS",
    "column_labels",
    "columns_to_arrow",
    "columns_to_pandas",
    "shard_columns",
    "store_columns",
    "store_to_arrow",
    "store_to_pandas",
    "table_calibration",
    "write_columns",
]

#: Output formats of :func:`write_columns` (and ``qualoader export --format``).
EXPORT_FORMATS = frozenset({"csv", "jsonl", "parquet"})


def _require(module: str) -> Any:
    """Import an optional dependency, or say in one line how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"this export needs {module}, but got no {module} installed; pip install 'qualoader[export]' (or pip install {module})"
        ) from error


#: A calibration as the store readers use it: scores :math:`(N,)` -> expected error :math:`(N,)`.
Calibration = Callable[[Tensor], Tensor]


def _check_sources(metrics: Sequence[QualityMetric] | None, calibrations: Mapping[str, Calibration] | None) -> None:
    if calibrations is not None:
        check_type(calibrations, "calibrations", Mapping, "a mapping of metric name to calibration, or None")
    if metrics is not None:
        check_type(metrics, "metrics", (list, tuple), "a list of QualityMetric, or None")
        for metric in metrics:
            check_type(metric, "metrics[i]", QualityMetric, "a QualityMetric")


def table_calibration(
    table: ScoreTable,
    metrics: Sequence[QualityMetric] | None = None,
    calibrations: Mapping[str, Calibration] | None = None,
) -> tuple[Calibration | None, str | None]:
    """The calibration that maps a table's stored scores to difficulty, and where it came from.

    The first of: ``calibrations[table.metric_name]`` (``"override"``); the current
    ``calibration`` of the metric in ``metrics`` whose fingerprint is the table's (``"metric"``: a
    re-calibrated metric or a refitted profile maps the same stored scores anew); the calibration
    saved in the table's header when it was created (``"table"``). ``(None, None)`` when none has one.

    Args:
        table: a :class:`~qualoader.data.ScoreTable`.
        metrics: the metrics that scored the store (matched by fingerprint), or ``None``.
        calibrations: ``{metric name: scores (N,) -> expected error (N,)}`` overrides, or ``None``.
    """
    _check_sources(metrics, calibrations)
    override = (calibrations or {}).get(table.metric_name)
    if override is not None:
        return override, "override"
    for metric in metrics or ():
        if metric.calibration is not None and metric.fingerprint() == table.fingerprint:
            return metric.calibration, "metric"
    state = table.calibration_state
    if state is None:
        return None, None
    from qualoader.calibration import DifficultyCalibration

    return DifficultyCalibration.from_state_dict(state), "table"


def _difficulty(calibration: Calibration | None, scores: np.ndarray) -> np.ndarray:
    out = np.full(scores.shape, np.nan)
    finite = np.isfinite(scores)
    if calibration is not None and finite.any():  # NaN marks unscored and skipped samples: they keep a NaN difficulty
        out[finite] = calibration(torch.from_numpy(scores[finite])).double().cpu().numpy()
    return out


def column_labels(tables: Sequence[ScoreTable]) -> list[str]:
    """The column name of each table: its metric's name, made unique by profile name (else fingerprint) when the name repeats.

    Example:
        >>> import tempfile
        >>> from qualoader.data import ScoreStore
        >>> from qualoader.metrics import create_metric
        >>> store = ScoreStore(tempfile.mkdtemp(), length=2)
        >>> column_labels([store.table(create_metric("sharpness"), create=True)])
        ['sharpness']
    """
    names = [table.metric_name for table in tables]
    labels = []
    for table in tables:
        if names.count(table.metric_name) == 1:
            labels.append(table.metric_name)
        else:
            same = [t.profile_name for t in tables if t.metric_name == table.metric_name]
            unique = table.profile_name is not None and same.count(table.profile_name) == 1
            labels.append(f"{table.metric_name}-{table.profile_name if unique else table.fingerprint}")
    return labels


def store_columns(
    store: ScoreStore,
    *,
    metrics: Sequence[QualityMetric] | None = None,
    calibrations: Mapping[str, Calibration] | None = None,
    select: bool = False,
) -> dict[str, Any]:
    """The store as ordered columns (see the module docs): numpy arrays, and a list of str/None for keys.

    Args:
        store: a :class:`~qualoader.data.ScoreStore`.
        metrics: the metrics (e.g. built from a quality profile) whose current calibrations map
            their tables' scores to difficulty (see :func:`table_calibration`).
        calibrations: ``{metric name: calibration}`` overrides.
        select: only the tables of ``metrics`` (matched by fingerprint), instead of every table.

    Returns:
        ``{column: values}``, every column of length ``store.length``.

    Raises:
        TypeError: ``metrics`` or ``calibrations`` of the wrong type.
    """
    _check_sources(metrics, calibrations)
    identity = store.identity
    columns: dict[str, Any] = {"index": np.arange(store.length, dtype=np.int64)}
    if identity is not None and identity.kind == "files":
        columns["path"] = list(identity.keys or ())
    else:
        keys = identity.keys if identity is not None else None
        columns["key"] = list(keys) if keys is not None else [None] * store.length
    tables = store.tables()
    # labelled among all tables, then selected: a column keeps its name whichever columns are asked for
    labelled = list(zip(column_labels(tables), tables))
    if select:
        wanted = {metric.fingerprint() for metric in metrics or ()}
        labelled = [(label, table) for label, table in labelled if table.fingerprint in wanted]
    for label, table in labelled:
        scores = table.scores()
        columns[label] = scores
        columns[f"{label}_difficulty"] = _difficulty(table_calibration(table, metrics, calibrations)[0], scores)
    return columns


def shard_columns(shards: str | Sequence[str]) -> dict[str, Any]:
    """Columns of tagged shards, read from their sidecar indexes (no image is read).

    Args:
        shards: shard paths or brace patterns (``"data-{000..009}.tar"``), each with the
            ``<shard>.quality.json`` sidecar that ``qualoader tag`` / ``qualoader score`` write.

    Returns:
        ``{column: values}``: ``index``, ``shard``, ``key``, then ``<metric>`` and ``<metric>_difficulty`` per metric.

    Raises:
        FileNotFoundError: a shard has no sidecar (tag or score it first).
        ValueError: a damaged sidecar.
    """
    from qualoader.webdataset import expand_shards, read_sidecar, sidecar_path

    indexes = []
    for shard in expand_shards(shards):
        path = sidecar_path(shard)
        if not path.exists():
            raise FileNotFoundError(
                f"shards should have their sidecar index, but got {shard!r} without {str(path)!r}; run qualoader tag or qualoader score on "
                "it first"
            )
        indexes.append((shard, read_sidecar(path)))
    metrics = sorted({name for _, index in indexes for name in index.metrics})
    shard_names: list[str] = []
    keys: list[str] = []
    values: dict[str, list[float]] = {column: [] for name in metrics for column in (name, f"{name}_difficulty")}
    for shard, index in indexes:
        shard_names.extend([shard] * len(index.keys))
        keys.extend(index.keys)
        for name in metrics:
            for field, column in (("quality", name), ("difficulty", f"{name}_difficulty")):
                table = index.quality if field == "quality" else index.difficulty
                values[column].extend(float(table.get(key, {}).get(name, math.nan)) for key in index.keys)
    columns: dict[str, Any] = {"index": np.arange(len(keys), dtype=np.int64), "shard": shard_names, "key": keys}
    columns.update({column: np.asarray(column_values, dtype=np.float64) for column, column_values in values.items()})
    return columns


def columns_to_pandas(columns: Mapping[str, Any]) -> pandas.DataFrame:
    """Columns (as from :func:`store_columns` / :func:`shard_columns`) as a pandas DataFrame."""
    pd = _require("pandas")
    return pd.DataFrame(dict(columns))


def columns_to_arrow(columns: Mapping[str, Any]) -> pyarrow.Table:
    """Columns as a pyarrow Table (NaN scores become nulls)."""
    return _arrow_table(columns, _require("pyarrow"))


def store_to_pandas(
    store: ScoreStore, *, metrics: Sequence[QualityMetric] | None = None, calibrations: Mapping[str, Calibration] | None = None
) -> pandas.DataFrame:
    """:func:`store_columns` as a pandas DataFrame (``path``/``key`` as an object column, NaN where not scored)."""
    return columns_to_pandas(store_columns(store, metrics=metrics, calibrations=calibrations))


def store_to_arrow(
    store: ScoreStore, *, metrics: Sequence[QualityMetric] | None = None, calibrations: Mapping[str, Calibration] | None = None
) -> pyarrow.Table:
    """:func:`store_columns` as a pyarrow Table (NaN scores become nulls)."""
    return columns_to_arrow(store_columns(store, metrics=metrics, calibrations=calibrations))


def _text(value: str) -> str:
    """``value``, with the bytes of a non-UTF-8 file name (lone surrogates from ``os.listdir``) as ``\\xNN``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(value).decode("utf-8", "backslashreplace")
    return value


def _csv_text(value: str) -> str:
    """A text cell a spreadsheet shows as text: a leading ``=``, ``+``, ``-``, ``@``, tab or CR gets a ``'`` before it."""
    value = _text(value)
    return "'" + value if value[:1] in _FORMULA_STARTS else value


def _csv_cell(value: Any) -> Any:
    return _csv_text(value) if isinstance(value, str) else value


#: First characters that make a spreadsheet read a cell as a formula (or a command, through DDE).
_FORMULA_STARTS = frozenset("=+-@\t\r")


def _arrow_table(columns: Mapping[str, Any], pa: Any) -> Any:
    arrays = {}
    for name, values in columns.items():
        name = _text(name)
        if isinstance(values, np.ndarray) and values.dtype.kind == "f":
            arrays[name] = pa.array(values, mask=np.isnan(values))  # NaN means "no value": a null in Arrow
        elif isinstance(values, np.ndarray):
            arrays[name] = pa.array(values)
        else:
            arrays[name] = pa.array([v if v is None else _text(str(v)) for v in values], type=pa.string())
    return pa.table(arrays)


def _cell(value: Any) -> Any:
    """A JSON/CSV value: None for NaN, Python int/float/str otherwise."""
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):  # flag columns: JSON has no numpy bool
        return bool(value)
    return _text(value) if isinstance(value, str) else value


def _rows(columns: Mapping[str, Any]) -> Iterator[list[Any]]:
    values = list(columns.values())
    length = len(values[0]) if values else 0
    for row in range(length):
        yield [_cell(column[row]) for column in values]


def write_columns(columns: Mapping[str, Any], output: str | os.PathLike[str], output_format: str) -> Path:
    """Write columns (equal lengths) to ``output`` as CSV, JSON lines or Parquet, atomically.

    CSV writes empty cells and JSON lines ``null`` for missing values (NaN, None); floats are
    written with Python's shortest round-trip repr, so reading them back gives the same float64.

    Args:
        columns: ``{name: values}``, as from :func:`store_columns`.
        output: the file to write (its folder must exist); replaced atomically when it exists.
        output_format: one of :data:`EXPORT_FORMATS`.

    Returns:
        ``output`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: an unknown format or columns of different lengths.
        ImportError: ``parquet`` without pyarrow.
    """
    check_choice(output_format, "output_format", EXPORT_FORMATS)
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns should all have the same length, but got lengths {lengths}")
    # built in memory, then written by the project's one atomic writer: a reader never sees half a table
    if output_format == "parquet":
        pa, pq = _require("pyarrow"), _require("pyarrow.parquet")
        buffer = io.BytesIO()
        pq.write_table(_arrow_table(columns, pa), buffer)
        return write_bytes_atomic(output, buffer.getvalue())
    text = io.StringIO(newline="")
    if output_format == "csv":
        writer = csv.writer(text)
        writer.writerow([_csv_text(name) for name in columns])
        for row in _rows(columns):
            writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else _csv_cell(v) for v in row])
    else:
        names = [_text(name) for name in columns]
        for row in _rows(columns):
            text.write(json.dumps(dict(zip(names, row)), allow_nan=False) + "\n")
    return write_bytes_atomic(output, text.getvalue().encode())
