"""ImageNet-C names (``jpeg_compression``, ``elastic_transform``) are aliases of ours wherever corruptions are named."""

from __future__ import annotations

import pytest
import torch

from qualoader.corruptions import CORRUPTION_ALIASES, CORRUPTIONS, corrupt, resolve_corruption


@pytest.mark.parametrize(("alias", "name"), sorted(CORRUPTION_ALIASES.items()))
def test_alias_gives_the_same_images_as_our_name(alias: str, name: str, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    images = fashion_mnist_test[0][:8]
    by_alias = corrupt(images, alias, 3, generator=torch.Generator().manual_seed(5))
    by_name = corrupt(images, name, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(by_alias, by_name)
    assert not torch.equal(by_name, images.float() / 255)  # the corruption did change the images


def test_aliases_point_to_registered_corruptions_and_do_not_shadow_them() -> None:
    assert set(CORRUPTION_ALIASES.values()) <= set(CORRUPTIONS)
    assert not set(CORRUPTION_ALIASES) & set(CORRUPTIONS)
    assert all(resolve_corruption(name) == name for name in CORRUPTIONS)


def test_unknown_name_lists_names_and_aliases() -> None:
    with pytest.raises(
        ValueError, match=r"name should be one of \{.*'jpeg'.*\} or an ImageNet-C alias \{.*'jpeg_compression'\}, but got name='jpg'"
    ):
        resolve_corruption("jpg")
    with pytest.raises(ValueError, match="did you mean 'jpeg_compression'"):
        resolve_corruption("jpeg_compresion")
    with pytest.raises(TypeError, match="name should be a corruption name"):
        corrupt(torch.rand(1, 1, 8, 8), 3, 1)  # type: ignore[arg-type]
