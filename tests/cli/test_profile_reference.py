"""``calibrate --reference NAME --num-classes N``: any torchvision network with the user's own head, in one line.

A ResNet-18 with a 4-class head (randomly initialised, seeded: its errors are what the profile
measures, so its fit is weak and written only with ``--allow-weak``) is saved as a state_dict in
``tmp_path``; an image folder of four real Fashion-MNIST classes is its data. Without
``--num-classes`` the ImageNet head cannot take the weights, and the error says which option fixes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from qualoader.cli import main
from qualoader.metrics import create_metric
from qualoader.profiles import WeakProfileWarning, load_profile

SWEEP = ["--corruptions", "gaussian_noise", "contrast", "--severities", "0", "5", "--max-images", "24", "--input-size", "32"]


@pytest.mark.slow  # three calibrate runs of a ResNet-18: about 15 s on two shared cores
def test_num_classes_builds_a_torchvision_network_with_the_users_head(tmp_path: Path, write_image_folder, capsys) -> None:
    root = write_image_folder({"Trouser": 1, "Bag": 8, "Sneaker": 7, "Shirt": 6}, per_class=6)
    torch.manual_seed(0)
    weights = tmp_path / "net.pt"
    torch.save(resnet18(num_classes=4).state_dict(), weights)
    out = tmp_path / "profile.json"
    argv = ["calibrate", "--reference", "resnet18", "--weights", str(weights), "--metric", "confidence", "--data", str(root), *SWEEP]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--num-classes N" in err and "profile['reference']" not in err
    assert not out.exists()
    assert main([*argv, "--num-classes", "4", "--out", str(out), "--no-progress", "--allow-weak"]) == 0, capsys.readouterr().err
    with pytest.warns(WeakProfileWarning, match="is weak"):
        profile = load_profile(out)  # a torchvision reference runs no code of the profile's: no trust needed
    assert profile.reference.labels == ("Bag", "Shirt", "Sneaker", "Trouser")  # the data's own class names, one per output
    assert profile.reference.weights.path == weights and out.parent == weights.parent
    # the folder's images are 28 px, resized to the 32 px input: the domain records the sizes it was calibrated on
    assert profile.reference.domain.source_size_range == ((28, 28), (28, 28))
    with pytest.warns(WeakProfileWarning, match="is weak"):
        metric = create_metric("confidence", profile=out)
    assert metric(torch.rand(3, 3, 32, 32)).shape == (3,)
    assert main([*argv, "--num-classes", "5", "--labels", "a,b,c,d", "--out", str(tmp_path / "x.json")]) == 2
    assert "--labels should name --num-classes=5 classes, but got 4 names" in capsys.readouterr().err
