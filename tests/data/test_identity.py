"""Dataset identity: folder manifests, user ids, sampled content hashes, and which samples changed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset
from torchvision import transforms
from torchvision.datasets import ImageFolder

from qualoader.data import DatasetIdentity, identify_dataset


class Augmented(Dataset[Any]):
    """Random crops drawn from torch's global generator, like a training transform."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.crop = transforms.RandomCrop(20)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.crop(self.images[index])


def test_folder_manifest(image_folder: Path) -> None:
    identity = identify_dataset(ImageFolder(str(image_folder)))
    assert identity.kind == "files" and identity.length == 12
    assert identity.keys == tuple(sorted(path.relative_to(image_folder).as_posix() for path in image_folder.rglob("*.png")))
    first = image_folder / identity.keys[0]
    assert identity.sizes[0] == first.stat().st_size and identity.mtimes_ns[0] == first.stat().st_mtime_ns
    assert identify_dataset(ImageFolder(str(image_folder))) == identity  # deterministic
    subset = identify_dataset(Subset(Subset(ImageFolder(str(image_folder)), range(2, 10)), [5, 0]))
    assert subset.keys == (identity.keys[7], identity.keys[2])


def test_changed_samples_are_named(image_folder: Path) -> None:
    before = identify_dataset(ImageFolder(str(image_folder)))
    touched = image_folder / before.keys[3]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 1))
    after = identify_dataset(ImageFolder(str(image_folder)))
    assert after.digest != before.digest
    assert before.changed_samples(after).tolist() == [3]
    assert before.changed_samples(before).tolist() == []
    (image_folder / "a" / "999.png").write_bytes(touched.read_bytes())
    grown = identify_dataset(ImageFolder(str(image_folder)))
    assert before.changed_samples(grown) is None  # a new file shifts the indices: not comparable


def test_in_memory_id_and_content(fmnist_small: TensorDataset) -> None:
    by_id = identify_dataset(fmnist_small, dataset_id="fm-v1")
    assert by_id.kind == "id" and by_id == identify_dataset(fmnist_small, dataset_id="fm-v1")
    assert identify_dataset(fmnist_small, dataset_id="fm-v2").digest != by_id.digest
    content = identify_dataset(fmnist_small)
    assert content.kind == "content" and content == identify_dataset(fmnist_small)
    edited = fmnist_small.tensors[0].clone()
    edited[0, 0, 0, 0] ^= 1  # one bit of the first image (always sampled)
    assert identify_dataset(TensorDataset(edited, fmnist_small.tensors[1])).digest != content.digest
    keyed = identify_dataset(fmnist_small, keys=[f"s{i}" for i in range(96)])
    assert keyed.keys[5] == "s5" and keyed.digest == content.digest  # keys label the samples; the data is the same


def test_random_transforms_hash_the_same_and_leave_the_generators_alone(fmnist_small: TensorDataset) -> None:
    data = Augmented(fmnist_small.tensors[0])
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = identify_dataset(data)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's generator state was restored
    assert identify_dataset(data) == first


def test_manifest_roundtrip_and_corruption(image_folder: Path) -> None:
    identity = identify_dataset(ImageFolder(str(image_folder)))
    assert DatasetIdentity.from_manifest(identity.manifest()) == identity
    broken = {**identity.manifest(), "sizes": [s + 1 for s in identity.sizes]}
    with pytest.raises(ValueError, match="the file manifest should hash to its digest"):
        DatasetIdentity.from_manifest(broken)
    with pytest.raises(ValueError, match="the manifest should be a dict with a kind"):
        DatasetIdentity.from_manifest({"kind": "guess"})


def test_bad_arguments(fmnist_small: TensorDataset, image_folder: Path) -> None:
    with pytest.raises(TypeError, match="dataset should be a map-style Dataset"):
        identify_dataset(iter([1]))
    with pytest.raises(ValueError, match="keys should be 96 str"):
        identify_dataset(fmnist_small, keys=["a"])
    with pytest.raises(ValueError, match="keys should be None for a folder dataset"):
        identify_dataset(ImageFolder(str(image_folder)), keys=[str(i) for i in range(12)])
    with pytest.raises(TypeError, match="dataset_id should be a str"):
        identify_dataset(fmnist_small, dataset_id=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dataset should have at least one sample"):
        identify_dataset(TensorDataset(torch.zeros(0, 1, 4, 4)))
    assert identify_dataset(fmnist_small, num_samples=0).digest != identify_dataset(fmnist_small).digest  # another sample drawn
