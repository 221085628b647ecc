"""End-to-end reports: every file the HTML references exists, every PNG opens; CLI and bad input."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qualoader.calibration import DifficultyCalibration
from qualoader.cli import main
from qualoader.metrics import create_metric
from qualoader.report import build_report, load_source, score_source


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tables += tag == "table"
        for key, value in attrs:
            if key in ("src", "href") and value:
                self.links.append(value)


def _check_page(index: Path) -> _Links:
    parser = _Links()
    parser.feed(index.read_text(encoding="utf-8"))
    assert parser.links, "the report should reference its figures"
    for link in parser.links:
        assert not link.startswith(("/", "http:", "https:")), f"links should be relative, got {link}"
        target = index.parent / link
        assert target.is_file(), f"{link} is referenced but missing"
        if target.suffix == ".png":
            with Image.open(target) as image:
                image.verify()
                assert image.format == "PNG"
    return parser


def test_folder_report(tmp_path: Path, image_folder: Path) -> None:
    out = tmp_path / "report"
    index = build_report(image_folder, ["sharpness", "noise"], out, examples=3)
    parser = _check_page(index)
    summary = json.loads((out / "report.json").read_text())
    assert summary["scored"] == 26 and summary["kind"] == "folder"
    names = [metric["name"] for metric in summary["metrics"]]
    assert names == ["sharpness", "noise"]
    assert sum(link.startswith("thumbs/") and not link.startswith("thumbs/flag_") for link in parser.links) == 2 * 2 * 3
    sharpness = summary["metrics"][0]
    # The lowest-sharpness thumbnail really has the minimum score, and both sides are sorted.
    lowest = [example["score"] for example in sharpness["lowest"]]
    highest = [example["score"] for example in sharpness["highest"]]
    assert lowest == sorted(lowest) and highest == sorted(highest, reverse=True)
    assert lowest[0] == pytest.approx(sharpness["min"]) and highest[0] == pytest.approx(sharpness["max"])
    noise = summary["metrics"][1]  # lower is better: its "lowest quality" examples have the largest scores
    assert noise["lowest"][0]["score"] == pytest.approx(noise["max"])


def test_shard_report_uses_tags_and_summarises_shards(tmp_path: Path, shards: list[Path]) -> None:
    out = tmp_path / "report"
    index = build_report(shards, ["sharpness", "contrast"], out, examples=2)
    parser = _check_page(index)
    summary = json.loads((out / "report.json").read_text())
    sharpness, contrast = summary["metrics"]
    assert sharpness["from_tags"] == 40 and contrast["from_tags"] == 0
    assert [row["samples"] for row in summary["shards"]] == [20, 20, 20]
    assert [row["tagged"] for row in summary["shards"]] == [20, 20, 0]
    assert summary["shards"][0]["mean"]["sharpness"] == pytest.approx(np.mean(np.arange(20)))  # the tags, not recomputed
    assert all((out / metric["shard_plot"]).is_file() for metric in summary["metrics"])
    assert parser.tables >= 2


def test_computed_scores_equal_the_metric(shards: list[Path], fashion_images: tuple[torch.Tensor, torch.Tensor]) -> None:
    metric = create_metric("contrast")
    table = score_source(load_source(shards[2]), {"contrast": metric}, batch_size=7)
    expected = metric(fashion_images[0][40:60]).double().numpy()
    np.testing.assert_allclose(table.scores["contrast"], expected, rtol=1e-6)


def test_difficulty_buckets_for_calibrated_metric(tmp_path: Path, fashion_images: tuple[torch.Tensor, torch.Tensor]) -> None:
    metric = create_metric("sharpness")
    scores = metric(fashion_images[0]).double()
    errors = (scores < scores.median()).double()  # blurrier half = "errors", a real monotone fit
    metric.calibration = DifficultyCalibration.fit(scores, errors, higher_is_better=True)
    out = tmp_path / "report"
    index = build_report("fashion-mnist:test", [metric], out, max_images=200, examples=2)
    _check_page(index)
    summary = json.loads((out / "report.json").read_text())
    buckets = summary["metrics"][0]["difficulty_buckets"]
    assert sum(buckets["counts"]) == 200 and len(buckets["labels"]) == 5
    assert "difficulty_" in index.read_text()


def test_undecodable_images_are_dropped_and_listed(tmp_path: Path, image_folder: Path) -> None:
    (image_folder / "fashion" / "broken.png").write_bytes(b"not an image")
    index = build_report(image_folder, ["contrast"], tmp_path / "report", examples=1)
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["scored"] == 26 and summary["total"] == 27
    assert any("broken" in problem for problem in summary["problems"])
    assert "broken" in index.read_text()


def test_cli_report(tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["report", str(image_folder), "--metric", "sharpness", "--metric", "entropy", "--out", str(out), "--examples", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [str(out / "index.html"), "problems: none"]
    _check_page(out / "index.html")
    assert main(["report", str(image_folder), "--out", str(out)]) == 2  # no --metric (nor --profile): a one-line user error
    assert "--metric or --profile should name at least one metric" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"metrics": []}, ValueError),
        ({"metrics": "sharpness"}, TypeError),
        ({"metrics": ["sharpness", "sharpness"]}, ValueError),
        ({"metrics": ["psnr"]}, ValueError),
        ({"metrics": ["no-such-metric"]}, KeyError),
        ({"metrics": [3]}, TypeError),
        ({"metrics": ["sharpness"], "examples": 0}, ValueError),
        ({"metrics": ["sharpness"], "batch_size": 0}, ValueError),
        ({"metrics": ["sharpness"], "out": 5}, TypeError),
    ],
)
def test_bad_input(tmp_path: Path, image_folder: Path, kwargs: dict, error: type[Exception]) -> None:
    kwargs.setdefault("out", tmp_path / "bad")
    with pytest.raises(error):
        build_report(image_folder, **kwargs)


def test_score_source_bad_input(image_folder: Path) -> None:
    source = load_source(image_folder, max_images=2)
    with pytest.raises(ValueError):
        score_source(source, {})
    with pytest.raises(TypeError):
        score_source(source, {"x": object()})


def _photo_folder(root: Path, photos: torch.Tensor) -> Path:
    """``root/photos/*.png``: real RGB photos written at their size (224 px)."""
    (root / "photos").mkdir(parents=True)
    for index, photo in enumerate((photos * 255).round().to(torch.uint8)):
        Image.fromarray(photo.permute(1, 2, 0).numpy()).save(root / "photos" / f"photo{index}.png")
    return root


def test_report_shows_out_of_domain_share(tmp_path: Path, image_folder: Path, photos_224: torch.Tensor) -> None:
    from qualoader.profiles import DomainWarning

    # 224 px RGB photos into the 28 px grey default: all of them out of its domain, and the page says so
    out = tmp_path / "photos_report"
    with pytest.warns(DomainWarning):
        index = build_report(_photo_folder(tmp_path / "photos", photos_224), ["bn-shift", "sharpness"], out, examples=1)
    summary = json.loads((out / "report.json").read_text())
    aligned, classical = summary["metrics"]
    assert classical["domain"] is None
    domain = aligned["domain"]
    assert domain["n_images"] == 5 and domain["out_of_domain"] == 1.0 and domain["size"] == 1.0
    assert domain["reference_domain"].startswith("1x28x28 grey")
    page = index.read_text()
    assert 'class="warning"' in page and "100.0% of 5 images are out of it" in page
    # the mixed folder: 20 Fashion-MNIST images (in domain) and 6 photos at 64 px (more than 2x the native 28 px)
    with pytest.warns(DomainWarning):
        build_report(image_folder, ["bn-shift"], tmp_path / "mixed", examples=1)
    mixed = json.loads((tmp_path / "mixed" / "report.json").read_text())["metrics"][0]["domain"]
    assert mixed["n_images"] == 26 and mixed["out_of_domain"] == pytest.approx(6 / 26) and mixed["size"] == pytest.approx(6 / 26)


def test_report_in_domain_has_no_warning(tmp_path: Path) -> None:
    import warnings

    from qualoader.profiles import DomainWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", DomainWarning)
        index = build_report("fashion-mnist:test", ["bn-shift"], tmp_path / "fmnist", max_images=60, examples=1)
    domain = json.loads((tmp_path / "fmnist" / "report.json").read_text())["metrics"][0]["domain"]
    assert domain["out_of_domain"] == 0.0 and domain["n_images"] == 60
    page = index.read_text()
    assert 'class="warning"' not in page and "0.0% of 60 images are out of it" in page



_FULL_DISK = """
import resource, signal, sys
from qualoader.report import build_report
import matplotlib.pyplot  # imported (and its cache written) before the limit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # a disk that fills after 4 KB per file
for out in sys.argv[2:]:
    try:
        build_report(sys.argv[1], ["sharpness"], out, max_images=6)
    except OSError as error:
        print(type(error).__name__, error.errno)
"""


@pytest.mark.slow  # a subprocess that imports torch and builds two reports
def test_full_disk_leaves_no_partial_report(tmp_path: Path, image_folder: Path) -> None:
    import subprocess
    import sys

    new, existing = tmp_path / "new" / "report", tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")  # a folder the user already had: it keeps exactly what it held
    command = [sys.executable, "-c", _FULL_DISK, str(image_folder), str(new), str(existing)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.stdout.split("\n")[:2] == ["OSError 27"] * 2, result.stderr  # EFBIG: the size limit, as a full disk fails a write
    assert not new.parent.exists()  # the folders it made are gone
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_cli_prints_the_problem_count(tmp_path: Path, image_folder: Path, shards: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Truncated shards and undecodable images are counted in one terminal line, not only on the page."""
    (image_folder / "fashion" / "broken.png").write_bytes(b"not an image")
    (image_folder / "fashion" / "tiny.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a PNG header and nothing after it
    argv = ["--metric", "contrast", "--examples", "1", "--no-progress"]
    assert main(["report", str(image_folder), "--out", str(tmp_path / "a"), *argv]) == 0
    index = tmp_path / "a" / "index.html"
    assert capsys.readouterr().out.splitlines() == [
        str(index),
        f"problems: 2 (0 reading the source: truncated or unreadable shards, samples without an image; 2 with images: undecodable or "
        f"too small), listed under Skipped in {index}",
    ]
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(shards[2].read_bytes()[:5000])  # cut inside the third sample
    assert main(["report", str(shards[0]), str(truncated), "--out", str(tmp_path / "b"), *argv]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("problems: 1 (1 reading the source:") and "0 with images" in line
    assert len(json.loads((tmp_path / "b" / "report.json").read_text())["problems"]) == 1


def test_a_weak_profile_is_noted_beside_its_metric(tmp_path: Path, image_folder: Path, copied_default: Path) -> None:
    from dataclasses import replace

    from qualoader.profiles import WeakProfileWarning, load_profile, save_profile

    strong = load_profile(copied_default)
    held_out = {**strong.provenance["held_out"], "auroc": 0.51, "auroc_ci": None}
    weak = save_profile(replace(strong, name="weak <b>", provenance={**strong.provenance, "held_out": held_out}, path=None),
                        tmp_path / "weak.json")
    with pytest.warns(WeakProfileWarning):
        metric = create_metric("bn-shift", profile=weak)
    index = build_report(image_folder / "fashion", [metric, "sharpness"], tmp_path / "report", examples=1)
    entries = {entry["name"]: entry for entry in json.loads((tmp_path / "report" / "report.json").read_text())["metrics"]}
    reason = "held-out AUROC 0.510 does not clear chance (0.5) by 0.05"
    assert entries["bn-shift"]["weak"] == reason and entries["sharpness"]["weak"] is None
    page = index.read_text()
    section = page[page.index('<h2 id="bn-shift">') : page.index('<h2 id="sharpness">')]  # beside its own metric
    assert f'<p class="warning">The profile of bn-shift is weak ({reason}): its difficulty may rank images' in section
    assert page.count("is weak (") == 1
    build_report(image_folder / "fashion", [create_metric("bn-shift", profile=copied_default)], tmp_path / "strong", examples=1)
    assert "is weak (" not in (tmp_path / "strong" / "index.html").read_text()


def test_out_of_domain_note_suggests_a_profile_only_when_none_is_in_use(
    tmp_path: Path, photos_224: torch.Tensor, copied_default: Path
) -> None:
    from qualoader.profiles import DomainWarning

    folder = _photo_folder(tmp_path / "photos", photos_224)
    with pytest.warns(DomainWarning):
        build_report(folder, ["bn-shift"], tmp_path / "default", examples=1)
    with pytest.warns(DomainWarning):
        build_report(folder, [create_metric("bn-shift", profile=copied_default)], tmp_path / "own", examples=1)
    default_page, own_page = ((tmp_path / name / "index.html").read_text() for name in ("default", "own"))
    assert "build a quality profile for your network" in default_page and "rebuild the profile" not in default_page
    assert "rebuild the profile on data like these" in own_page and "build a quality profile for your network" not in own_page
