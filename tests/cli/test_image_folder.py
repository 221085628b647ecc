"""The ``precompute`` folder reader: the file list and the resize of torchvision's ImageFolder, without importing torchvision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets import ImageFolder

from qualoader.cli._image_folder import ImageFiles, Resize
from qualoader.decoding import load_image
from tests.helpers import save_photo_crops


def test_same_files_and_order_as_image_folder(tmp_path: Path, photos: torch.Tensor) -> None:
    save_photo_crops(tmp_path / "b" / "deeper", photos, count=2, side=12)
    save_photo_crops(tmp_path / "a", photos, count=3, side=12)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    Image.new("RGB", (5, 5)).save(tmp_path / "a" / "UPPER.PNG")
    ours = ImageFiles(tmp_path, loader=load_image)
    theirs = ImageFolder(str(tmp_path), loader=load_image)
    assert ours.samples == theirs.samples and ours.classes == theirs.classes
    image, target = ours[4]
    assert target == 1 and torch.equal(image, theirs[4][0])


def test_flat_folder_is_one_class_and_an_empty_one_is_refused(tmp_path: Path, photos: torch.Tensor) -> None:
    paths = save_photo_crops(tmp_path / "flat", photos, count=3, side=12)
    save_photo_crops(tmp_path / "flat" / "sub", photos, count=1, side=12)  # images directly in the root: flat, walked whole
    files = ImageFiles(tmp_path / "flat", loader=load_image)
    assert [path for path, _ in files.samples] == [*map(str, paths), str(tmp_path / "flat" / "sub" / "0.png")]
    assert set(files.targets) == {0}
    (tmp_path / "empty" / "class").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="SOURCE should be a folder with images"):
        ImageFiles(tmp_path / "empty", loader=load_image)


@pytest.mark.parametrize("size", [7, 40])
def test_resize_equals_torchvision(photos: torch.Tensor, size: int) -> None:
    image = (photos[0, :, :33, :29] * 255).round().to(torch.uint8)
    assert torch.equal(Resize(size)(image), transforms.Resize((size, size))(image))
    as_float = image.float() / 255
    torch.testing.assert_close(Resize(size)(as_float), transforms.Resize((size, size))(as_float))
