"""Sample-structure helpers: finding, converting, annotating and grouping images."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from qualoader.data._samples import (
    SampleLoadError,
    add_fields,
    batch_image,
    group_by_size,
    image_to_tensor,
    load_image_tensor,
    load_sample,
    pop_index,
    sample_image,
)


@pytest.fixture
def rgb_array(photos: torch.Tensor) -> np.ndarray:
    """A real photo as numpy ``(H, W, 3)`` uint8."""
    return (photos[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def test_image_to_tensor_pil_numpy_tensor_agree(rgb_array: np.ndarray) -> None:
    expected = torch.from_numpy(rgb_array).permute(2, 0, 1)
    assert torch.equal(image_to_tensor(Image.fromarray(rgb_array)), expected)
    assert torch.equal(image_to_tensor(rgb_array), expected)
    assert torch.equal(image_to_tensor(expected), expected)


def test_image_to_tensor_grey_and_other_modes(rgb_array: np.ndarray) -> None:
    grey = rgb_array[..., 0]
    assert image_to_tensor(Image.fromarray(grey)).shape == (1, *grey.shape)
    assert image_to_tensor(grey).shape == (1, *grey.shape)
    assert image_to_tensor(torch.from_numpy(grey)).shape == (1, *grey.shape)
    rgba = Image.fromarray(rgb_array).convert("RGBA")
    assert torch.equal(image_to_tensor(rgba), torch.from_numpy(rgb_array).permute(2, 0, 1))
    assert image_to_tensor(Image.fromarray(rgb_array).convert("P")).shape == (3, *grey.shape)


@pytest.mark.parametrize("bad", [torch.zeros(4, 8, 8), torch.zeros(1, 1, 8, 8), torch.zeros(8)])
def test_image_to_tensor_bad_tensor_shape(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"image should be a tensor of shape \(C, H, W\)"):
        image_to_tensor(bad)


def test_image_to_tensor_bad_array_and_type() -> None:
    with pytest.raises(ValueError, match=r"numpy array of shape \(H, W\) or \(H, W, C\)"):
        image_to_tensor(np.zeros((8, 8, 4), dtype=np.uint8))
    with pytest.raises(TypeError, match="image should be a PIL.Image"):
        image_to_tensor("cat.png")


def test_sample_image_structures() -> None:
    image = torch.zeros(3, 4, 4)
    assert sample_image((image, 1), None) is image
    assert sample_image([0, image], 1) is image
    assert sample_image({"image": image}, None) is image
    assert sample_image({"img": image}, "img") is image
    assert sample_image(image, None) is image


@pytest.mark.parametrize("sample", [3, "a", {1, 2}, None])
def test_sample_image_unsupported_structure(sample: object) -> None:
    with pytest.raises(TypeError, match=r"sample should be a tuple/list .* a dict .* or an image"):
        sample_image(sample, None)


def test_sample_image_bad_keys() -> None:
    image = torch.zeros(3, 4, 4)
    with pytest.raises(TypeError, match="image_key should be an int for tuple/list samples"):
        sample_image((image,), "image")
    with pytest.raises(TypeError, match="image_key should be a str for dict samples"):
        sample_image({"image": image}, 0)
    with pytest.raises(ValueError, match="image_key should index a sample of length 2"):
        sample_image((image, 1), 2)
    with pytest.raises(ValueError, match=r"image_key should be a key of the dict samples \['label', 'x'\]"):
        sample_image({"x": image, "label": 1}, None)


def test_add_fields_keeps_structure() -> None:
    image = torch.zeros(1, 2, 2)
    fields = [("quality", 0.5), ("index", 3)]
    assert add_fields((image, 7), fields, "auto")[1:] == (7, 0.5, 3)
    assert add_fields([image, 7], fields, "tuple")[1:] == (7, 0.5, 3)
    assert add_fields({"image": image, "y": 1}, fields, "auto").keys() == {"image", "y", "quality", "index"}
    assert add_fields(image, fields, "auto")[1:] == (0.5, 3)


def test_add_fields_dict_output() -> None:
    image = torch.zeros(1, 2, 2)
    out = add_fields((image, 7), [("quality", 0.5)], "dict")
    assert out["image"] is image and out["target"] == 7 and out["quality"] == 0.5
    assert add_fields((image, 7, 8), [], "dict")["target"] == (7, 8)
    assert set(add_fields((image,), [], "dict")) == {"image"}
    swapped = add_fields((7, image), [], "dict", image_key=1)
    assert swapped["image"] is image and swapped["target"] == 7
    assert set(add_fields(image, [("quality", 1.0)], "dict")) == {"image", "quality"}


def test_add_fields_bad() -> None:
    with pytest.raises(ValueError, match="output should be 'auto' or 'dict' for dict samples"):
        add_fields({"image": 0}, [("quality", 1.0)], "tuple")
    with pytest.raises(ValueError, match="sample should not already have the key 'quality'"):
        add_fields({"image": 0, "quality": 2}, [("quality", 1.0)], "auto")


def test_group_by_size_reassembles(photos: torch.Tensor) -> None:
    images = [photos[0], photos[1, :, :64, :64], photos[2], photos[3, :1, :64, :64]]
    groups = group_by_size(images)
    assert sorted(len(rows) for rows, _ in groups) == [1, 1, 2]
    for rows, stack in groups:
        for row, image in zip(rows.tolist(), stack):
            assert torch.equal(image, images[row])
    whole = group_by_size(photos[:3])
    assert len(whole) == 1 and torch.equal(whole[0][0], torch.arange(3))


def test_batch_image_shapes() -> None:
    assert batch_image(torch.zeros(2, 5, 5)).shape == (2, 1, 5, 5)
    assert batch_image(torch.zeros(2, 3, 5, 5)).shape == (2, 3, 5, 5)
    assert [t.shape for t in batch_image([np.zeros((5, 6), np.uint8), torch.zeros(3, 2, 2)])] == [(1, 5, 6), (3, 2, 2)]
    with pytest.raises(ValueError, match=r"images should be a tensor of shape \(B, C, H, W\)"):
        batch_image(torch.zeros(2, 4, 5, 5))
    with pytest.raises(TypeError, match="images should be a tensor"):
        batch_image(3)


def test_pop_index() -> None:
    rest, index = pop_index((torch.zeros(2, 1, 3, 3), torch.tensor([4, 5])))
    assert len(rest) == 1 and index.tolist() == [4, 5]
    rest, index = pop_index({"image": torch.zeros(2), "index": torch.tensor([1, 2])})
    assert set(rest) == {"image"}
    with pytest.raises(TypeError, match="batch should carry the sample indices"):
        pop_index(torch.zeros(2, 1, 3, 3))
    with pytest.raises(TypeError, match="as an int64 tensor"):
        pop_index((torch.zeros(2, 1, 3, 3), torch.tensor([0.5, 1.5])))


def test_lazy_pil_images_that_fail_to_decode_name_their_file(tmp_path: Path) -> None:
    """A dataset returning an undecoded ``Image.open`` fails only on conversion: still a SampleLoadError naming the file."""
    path = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(path)
    path.write_bytes(path.read_bytes()[:-40])

    class Lazy(Dataset[Any]):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> Any:
            return Image.open(path), 0  # not loaded: PIL decodes on first pixel access

    with pytest.raises(
        SampleLoadError, match=rf"dataset\[0\] \(file '{re.escape(str(path))}'\) should be a readable sample, but got OSError"
    ):
        load_image_tensor(Lazy(), 0, None)
    assert load_sample(Lazy(), 0)[1] == 0  # loading the sample itself succeeds


def test_other_errors_keep_their_type_and_gain_a_note() -> None:
    class Buggy(Dataset[Any]):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> Any:
            raise KeyError("label")

    with pytest.raises(KeyError) as raised:
        load_sample(Buggy(), 0)
    assert raised.value.__notes__ == ["while loading dataset[0]"]
