"""Collects and sets up the docstring examples of ``qualoader/``, so a plain ``pytest`` runs them.

Only the package's modules are collected as doctests (not ``tests/``, ``benchmarks/``,
``examples/`` or ``tools/``, whose scripts are not meant to be imported for their docstrings).
Each example runs in a fresh temporary working folder, so one that writes ``runs/scores`` or a
shard leaves nothing in the checkout, and sees ``torch`` without importing it, as the examples
are written for readers who already have it imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _pytest.doctest import DoctestItem, DoctestModule

_PACKAGE = Path(__file__).resolve().parent / "qualoader"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> DoctestModule | None:
    if parent.config.option.doctestmodules:  # pytest's own doctest plugin collects them then
        return None
    # __main__ modules run the CLI on import, so they hold no examples and must not be imported.
    if file_path.suffix == ".py" and file_path.name != "__main__.py" and _PACKAGE in file_path.parents:
        return DoctestModule.from_parent(parent, path=file_path)
    return None


@pytest.fixture(autouse=True)
def _doctest_setup(request: pytest.FixtureRequest) -> Iterator[None]:
    if not isinstance(request.node, DoctestItem):  # fixtures are fetched lazily: ordinary tests pay nothing
        yield
        return
    request.getfixturevalue("monkeypatch").chdir(request.getfixturevalue("tmp_path"))
    request.getfixturevalue("doctest_namespace")["torch"] = torch
    # Seeded, so an example that shows random-derived values shows the same ones on every run;
    # the global generator is restored afterwards so no other test depends on doctest order.
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(state)
