"""Day one of a new user, end to end through the command line: their own RGB photos and their own network.

A 4-class folder of real photos (crops of 48-96 px of four scikit-image photos, half of them degraded
with qualoader's corruptions), a torchvision ``resnet18(num_classes=4)`` trained for a few steps on it
and saved as a ``state_dict`` (nothing downloaded), then the README's "Your own network" flow: ONE
``calibrate`` for confidence, task-guided and bn-shift, ``profile show``, ``precompute`` with the three
profiles, ``export --flags`` and ``report``. On such tiny data a fit can be genuinely weak (bn-shift tends
to rank the photo a crop comes from, not the network's errors, issue 22): then the first ``calibrate``
refuses with one line and writes nothing, the user's second run adds ``--allow-weak``, and every weak
profile, and only those, is marked weak by ``profile show`` and warned about whenever it is loaded. Each
profile's held-out AUROC and CI are printed (``pytest -s``).
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models import resnet18

from qualoader.calibration.strength import weak_fit_reason
from qualoader.cli import main
from qualoader.corruptions import corrupt
from qualoader.datasets import load_photos
from qualoader.profiles import WeakProfileWarning, load_profile

#: One class per photo (all four are colour photos, so the folder is genuinely RGB).
CLASSES = ("astronaut", "chelsea", "coffee", "rocket")
#: Degradations of the folder's odd crops; the sweep's corruptions are others and the same, as on a real day one.
DEGRADATIONS = ("gaussian_noise", "gaussian_blur", "jpeg", "contrast")
PER_CLASS = 10
#: A 64 px input: 12x cheaper than ResNet's 224 px on two shared cores, and bn-shift still has 15 of 20 layers of 4x4 or more.
INPUT_SIZE = 64
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
METRICS = ("confidence", "task-guided", "bn-shift")


def _crops(photos: torch.Tensor, seed: int) -> list[tuple[int, torch.Tensor]]:
    """``PER_CLASS`` seeded crops of 48-96 px per photo: ``(class, image (3, S, S))``, every odd one degraded."""
    generator = torch.Generator().manual_seed(seed)
    crops = []
    side_max = photos.shape[-1]
    for label in range(len(CLASSES)):
        for i in range(PER_CLASS):
            side = int(torch.randint(48, 97, (1,), generator=generator))
            top, left = (int(torch.randint(0, side_max - side + 1, (1,), generator=generator)) for _ in range(2))
            image = photos[label, :, top : top + side, left : left + side][None]
            if i % 2:
                name = DEGRADATIONS[int(torch.randint(0, len(DEGRADATIONS), (1,), generator=generator))]
                image = corrupt(image, name, int(torch.randint(2, 5, (1,), generator=generator)), generator=generator)
            crops.append((label, image[0]))
    return crops


def _write_folder(root: Path, crops: list[tuple[int, torch.Tensor]]) -> list[Path]:
    files = []
    for i, (label, image) in enumerate(crops):
        path = root / CLASSES[label] / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
        files.append(path)
    return files


def _network_input(files: list[Path]) -> torch.Tensor:
    """The PNGs as the profile's transform sees them (bilinear antialiased resize, ImageNet normalisation): (N, 3, 64, 64)."""
    images = []
    for path in files:
        image = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float().div(255.0)
        images.append(F.interpolate(image[None], size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)[0])
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (torch.stack(images) - mean) / std


def _auroc(scores: list[float], positives: list[bool]) -> float:
    """Probability that a positive outscores a negative (ties count half)."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _shown(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """``print`` past capsys, so that ``pytest -s`` shows the figures (capsys would swallow them)."""

    def show(line: str) -> None:
        with capsys.disabled():
            print(line)

    return show


@pytest.mark.slow  # trains a ResNet-18 for 8 steps and runs five commands on it: about 60-80 s on two shared cores
def test_day_one_own_photos_and_network_through_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 1. the folder: 40 RGB crops of 48-96 px, half of them degraded
    photos = load_photos(160, CLASSES)
    folder = tmp_path / "photos"
    files = _write_folder(folder, _crops(photos, seed=0))
    labels = torch.tensor([CLASSES.index(path.parent.name) for path in files])
    sizes = {Image.open(path).size for path in files}
    assert len(files) == 40 and len({w for w, _ in sizes}) > 5 and all(48 <= w <= 96 and w == h for w, h in sizes)

    # 2. the user's network: resnet18 with its own 4-class head, trained a few steps, better than chance on unseen crops
    torch.manual_seed(0)
    network = resnet18(num_classes=len(CLASSES))
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
    inputs = _network_input(files)
    network.train()
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(0))
    for step in range(10):  # minibatches of 20, a seeded shuffle's two halves in turn: 5 epochs at half a full batch's cost
        half = order[:20] if step % 2 == 0 else order[20:]
        loss = F.cross_entropy(network(inputs[half]), labels[half])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    network.eval()
    unseen = tmp_path / "unseen"
    unseen_files = _write_folder(unseen, _crops(photos, seed=1))
    unseen_labels = torch.tensor([CLASSES.index(path.parent.name) for path in unseen_files])
    with torch.no_grad():
        accuracy = float((network(_network_input(unseen_files)).argmax(1) == unseen_labels).float().mean())
        errors = (network(inputs).argmax(1) != labels).tolist()  # the network's own errors on the folder
    assert accuracy >= 0.4, f"accuracy on unseen crops {accuracy:.3f} (chance 0.25)"
    weights = tmp_path / "net.pt"
    torch.save(network.state_dict(), weights)

    # 3. one calibrate for three metrics, first without --allow-weak, as the README shows it
    profiles = tmp_path / "profiles"
    calibrate = ["calibrate", "--reference", "resnet18", "--num-classes", "4", "--weights", str(weights), "--data", str(folder),
                 "--metric", ",".join(METRICS), "--out", str(profiles), "--input-size", str(INPUT_SIZE),
                 "--corruptions", "gaussian_noise", "gaussian_blur", "--severities", "0", "3", "5", "--steps", "200", "--no-progress"]
    code, out, err = _run(calibrate, capsys)
    # bn-shift's warning about the layers it leaves out (2x2 maps at 64 px), then at most one error line
    assert "left out 5 of 20 BatchNorm layers" in err, err
    refused = ""
    if code != 0:  # a weak fit (the expected case on 40 images): one error line, nothing written; the user adds --allow-weak
        refused = err.splitlines()[-1]
        assert code == 2 and refused.startswith("qualoader calibrate: error: the held-out fit should rank"), err
        assert "--allow-weak" in refused and sum(line.startswith("qualoader calibrate: error:") for line in err.splitlines()) == 1, err
        assert not any(profiles.glob("*.json"))
        code, out, err = _run([*calibrate, "--allow-weak"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert sorted(summary) == sorted(METRICS)
    written = sorted(path.name for path in profiles.iterdir())
    assert written == ["bn-shift.json", "confidence.json", "task-guided.head.pt", "task-guided.json"]

    figures = {}
    for metric in METRICS:
        path = profiles / f"{metric}.json"
        held_out = json.loads(path.read_text())["provenance"]["held_out"]
        figures[metric] = held_out
        reason = weak_fit_reason(held_out)
        # the refusal named exactly the weak metrics, and --allow-weak said which it wrote anyway
        assert (f"{metric}: held-out AUROC" in refused) == (reason is not None), refused
        assert (f"the {metric} profile is weak" in err) == (reason is not None), err
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            profile = load_profile(path)  # a torchvision reference runs no code of the profile's: no trust needed
        assert profile.metric.name == metric and profile.reference.labels == CLASSES
        assert profile.reference.transform.input_size == (INPUT_SIZE, INPUT_SIZE)
        weak_warnings = [w for w in caught if issubclass(w.category, WeakProfileWarning)]
        assert len(weak_warnings) == (reason is not None), [str(w.message) for w in caught]
        code, shown, err_show = _run(["profile", "show", str(path)], capsys)
        assert code == 0, err_show
        strength = [line for line in shown.splitlines() if line.strip().startswith("strength")]
        expected = f"  strength   WEAK: {reason}; its difficulty may rank images no better than chance" if reason else "  strength   ok"
        assert strength == [expected], shown
    # 5. the figures a user reads first: each profile's held-out AUROC and its 95% CI
    show = _shown(capsys)
    show(f"\nday one: resnet18(num_classes=4), {len(files)} photos, accuracy on unseen crops {accuracy:.2f}")
    for metric, held_out in figures.items():
        low, high = held_out["auroc_ci"]
        assert 0.0 <= low <= held_out["auroc"] <= high <= 1.0
        show(f"  {metric:12s} held-out AUROC {held_out['auroc']:.3f} [{low:.3f}, {high:.3f}] on {held_out['rows']} rows, "
              f"error rate {held_out['error_rate']:.3f}{'  (weak)' if weak_fit_reason(held_out) else ''}")
    # --allow-weak was used only because a fit was genuinely weak, and task-guided ranks the network's own errors
    assert bool(refused) == any(weak_fit_reason(held_out) for held_out in figures.values())
    assert weak_fit_reason(figures["task-guided"]) is None

    # 4. precompute with the three profiles, one store; export with flags; the report
    store = tmp_path / "scores"
    argv_profiles = [arg for metric in METRICS for arg in ("--profile", str(profiles / f"{metric}.json"))]
    code, out, err = _run(["precompute", str(folder), *argv_profiles, "--store", str(store), "--no-progress"], capsys)
    assert code == 0, err
    assert out.count("(40/40 scored, 0 skipped)") == 3, out
    for metric, held_out in figures.items():  # the weak profiles, and only they, are warned about once each when loaded
        assert err.count(f"{metric}.json' is weak") == (weak_fit_reason(held_out) is not None), err
    table = tmp_path / "out.csv"
    code, out, err = _run(["export", str(store), "-o", str(table), "--flags"], capsys)
    assert code == 0, err
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(files)
    assert sorted(row["path"] for row in rows) == sorted(str(path.relative_to(folder)) for path in files)
    for metric in METRICS:
        assert {metric, f"{metric}_difficulty", f"flag_hard-{metric}"} <= set(rows[0]), sorted(rows[0])
        for row in rows:
            assert math.isfinite(float(row[metric])) and 0.0 <= float(row[f"{metric}_difficulty"]) <= 1.0, row
            assert row[f"flag_hard-{metric}"] in ("True", "False")
    thresholds = json.loads((tmp_path / "out.csv.flags.json").read_text())
    fitted = {entry["flag"]: entry for entry in thresholds["thresholds"]}
    assert {f"hard-{metric}" for metric in METRICS} <= set(fitted), thresholds
    for metric in METRICS:  # each flag column is its stated threshold applied to the difficulty column
        entry = fitted[f"hard-{metric}"]
        flagged = [row[f"flag_hard-{metric}"] == "True" for row in rows]
        assert flagged == [float(row[f"{metric}_difficulty"]) > entry["threshold"] for row in rows]
        assert sum(flagged) == entry["count"] and entry["finite"] == len(rows)
    # the stored task-guided difficulty ranks this network's own errors on the folder, as its held-out fit says
    order = {str(path.relative_to(folder)): i for i, path in enumerate(files)}
    by_file = sorted(rows, key=lambda row: order[row["path"]])
    folder_auroc = _auroc([float(row["task-guided_difficulty"]) for row in by_file], errors)
    show(f"  task-guided difficulty in the store vs the network's errors on the folder: AUROC {folder_auroc:.3f}")
    assert 0 < sum(errors) < len(errors) and folder_auroc > 0.7, folder_auroc

    report = tmp_path / "report"
    code, _, err = _run(["report", str(folder), *argv_profiles, "--out", str(report), "--no-progress"], capsys)
    assert code == 0, err
    html = (report / "index.html").read_text()
    assert 'id="flags"' in html and all(f'id="{metric}"' in html for metric in METRICS)
    data = json.loads((report / "report.json").read_text())
    assert [entry["name"] for entry in data["metrics"]] == list(METRICS)
    assert data["total"] == data["scored"] == len(files)
    for entry in data["metrics"]:  # a weak profile says so in the report too, in its data and on the page
        reason = weak_fit_reason(figures[entry["name"]])
        assert entry["weak"] == reason
        assert (f"The profile of {entry['name']} is weak (" in html) == (reason is not None)
    assert {f"hard-{metric}" for metric in METRICS} <= {entry["flag"] for entry in data["flags"]["flags"]}

