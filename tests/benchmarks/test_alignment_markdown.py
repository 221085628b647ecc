"""The alignment report rendered from committed results: LOFO figures beside the unchanged in-family tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.alignment import generalisation, main, parse_args, render_markdown
from benchmarks.alignment.markdown import LOFO_CANDIDATES, reproduce_command

_ROOT = Path(__file__).resolve().parents[2]
_RESULTS = _ROOT / "benchmarks" / "alignment_results" / "results.json"
_LOFO = _ROOT / "benchmarks" / "generalisation_results.json"
_LOFO_HEADING = "## In-family vs leave-one-family-out (LOFO) Spearman"


def _without_lofo(text: str) -> str:
    """``text`` with the LOFO section (from its heading to the next ``## ``) removed."""
    start = text.index(_LOFO_HEADING)
    end = text.index("\n## ", start + 1)
    return text[: start - 1] + text[end:]


def test_render_only_adds_the_lofo_section_and_keeps_every_other_line(tmp_path: Path) -> None:
    assert main(["--from-results", str(_RESULTS), "--out", str(tmp_path), "--lofo-results", str(_LOFO)]) == 0
    text = (tmp_path / "results.md").read_text()
    results, lofo = json.loads(_RESULTS.read_text()), json.loads(_LOFO.read_text())
    assert _without_lofo(text) == render_markdown(results)
    section = text[text.index(_LOFO_HEADING) :]
    summary = {row["metric"]: row for row in results["summary"]}
    for metric, candidate in LOFO_CANDIDATES.items():
        lofo_summary = lofo["candidates"][candidate]["summary"]
        row = next(line for line in section.splitlines() if line.startswith(f"| `{metric}` | `{candidate}` |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[2] == f"{summary[metric]['mean_spearman']:+.3f}"
        assert cells[4] == f"**{lofo_summary['leave_one_family_out']:+.3f}**"
        assert cells[5:] == [f"{lofo_summary[f]:+.3f}" for f in generalisation.FAMILIES]


def test_committed_reports_are_the_render_of_the_committed_results(tmp_path: Path) -> None:
    main(["--from-results", str(_RESULTS), "--out", str(tmp_path)])
    assert (tmp_path / "results.md").read_text() == (_RESULTS.parent / "results.md").read_text()


def test_missing_lofo_results_are_named_not_fatal(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    main(["--from-results", str(_RESULTS), "--out", str(tmp_path), "--lofo-results", str(missing)])
    text = (tmp_path / "results.md").read_text()
    assert f"No LOFO results at `{missing}`" in text
    assert _without_lofo(text) == render_markdown(json.loads(_RESULTS.read_text()))


@pytest.mark.parametrize(
    ("program", "results", "parse"),
    [("benchmarks.alignment", _RESULTS, parse_args), ("benchmarks.generalisation", _LOFO, generalisation.parse_args)],
)
def test_reproduce_command_parses_back_to_the_run_config(program: str, results: Path, parse) -> None:
    config = json.loads(results.read_text())["config"]
    command = reproduce_command(program, config, parse)
    assert command.startswith(f"python -m {program}")
    parsed = vars(parse(command.split()[3:]))
    for key, value in config.items():
        if key in {"out", "lofo_results", "from_results"}:
            continue
        expected = [list(v) for v in parsed[key]] if key == "hidden" else parsed[key]
        assert expected == value, key


@pytest.mark.parametrize("module", ["benchmarks.alignment", "benchmarks.generalisation"])
def test_documented_commands_start(module: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout


def test_shim_is_the_package_module() -> None:
    from benchmarks import generalisation as shim

    assert shim.main is generalisation.main and shim.FAMILIES == generalisation.FAMILIES


def test_results_page_shows_the_rendered_lofo_table(tmp_path: Path) -> None:
    main(["--from-results", str(_RESULTS), "--out", str(tmp_path)])
    rendered = (tmp_path / "results.md").read_text()
    page = (_ROOT / "benchmarks" / "ALIGNMENT_RESULTS.md").read_text()
    for metric, candidate in LOFO_CANDIDATES.items():
        row = next(line for line in rendered.splitlines() if line.startswith(f"| `{metric}` | `{candidate}` |"))
        assert row in page, metric
