"""The ImageNet-C / CIFAR-10-C corruptions plus degradations outside it, batched on device and seeded.

Every corruption is ``f(images, severity, generator) -> images`` on float images (B, C, H, W) in
[0, 1], C in {1, 3}; :func:`corrupt` validates, dispatches by name and clamps to [0, 1]. Pixel sizes
(blur radii, displacements) are defined for 32 px images as in CIFAR-10-C and scaled to the image's
short side, so 28 px Fashion-MNIST and 224 px photos degrade alike. Randomness comes only from
``generator`` (drawn on the generator's device, then moved to the images' device).

The ``"extra"`` family (:mod:`qualoader.corruptions.extra`: low light, posterize, occlusion, vignette,
over-sharpening, scanline dropout) is not part of ImageNet-C; it tests generalisation to unseen types.

Families follow ImageNet-C (weather: brightness, fog, frost, snow, plus spatter, which ImageNet-C keeps
as an extra); frost and snow are procedural, with no downloaded textures.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
from torch import Tensor

from qualoader._validation import check_choice, check_images, check_severity, check_type
from qualoader.corruptions.blur import (
    defocus_blur,
    gaussian_blur,
    glass_blur,
    motion_blur,
    zoom_blur,
)
from qualoader.corruptions.digital import (
    brightness,
    contrast,
    elastic,
    jpeg,
    pixelate,
    saturate,
)
from qualoader.corruptions.extra import (
    low_light,
    occlusion,
    oversharpen,
    posterize,
    scanline,
    vignette,
)
from qualoader.corruptions.noise import (
    gaussian_noise,
    impulse_noise,
    shot_noise,
    speckle_noise,
)
from qualoader.corruptions.weather import fog, frost, snow, spatter

__all__ = ["CORRUPTIONS", "CORRUPTION_ALIASES", "CORRUPTION_FAMILIES", "corrupt", "list_corruptions", "resolve_corruption"]

Corruption = Callable[[Tensor, int, "torch.Generator | None"], Tensor]

CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise,
    "defocus_blur": defocus_blur,
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "glass_blur": glass_blur,
    "brightness": brightness,
    "contrast": contrast,
    "saturate": saturate,
    "pixelate": pixelate,
    "jpeg": jpeg,
    "elastic": elastic,
    "fog": fog,
    "frost": frost,
    "snow": snow,
    "spatter": spatter,
    "low_light": low_light,
    "posterize": posterize,
    "occlusion": occlusion,
    "vignette": vignette,
    "oversharpen": oversharpen,
    "scanline": scanline,
}

CORRUPTION_FAMILIES: dict[str, str] = {
    **dict.fromkeys(("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"), "noise"),
    **dict.fromkeys(("defocus_blur", "gaussian_blur", "motion_blur", "zoom_blur", "glass_blur"), "blur"),
    **dict.fromkeys(("contrast", "saturate", "pixelate", "jpeg", "elastic"), "digital"),
    # brightness is a weather corruption in ImageNet-C (sunlight), as in its paper's family table
    **dict.fromkeys(("brightness", "fog", "frost", "snow", "spatter"), "weather"),
    # Not in ImageNet-C (qualoader.corruptions.extra): held out to test generalisation to unseen degradations.
    **dict.fromkeys(("low_light", "posterize", "occlusion", "vignette", "oversharpen", "scanline"), "extra"),
}


#: ImageNet-C / CIFAR-10-C names that differ from ours; accepted wherever a corruption is named.
CORRUPTION_ALIASES: dict[str, str] = {"elastic_transform": "elastic", "jpeg_compression": "jpeg"}


def resolve_corruption(name: str) -> str:
    """Our name of a corruption given by its name or by its ImageNet-C name (:data:`CORRUPTION_ALIASES`).

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: an unknown name; the message lists the valid names and aliases, and close matches.

    Example:
        >>> resolve_corruption("jpeg_compression"), resolve_corruption("fog")
        ('jpeg', 'fog')
    """
    check_type(name, "name", str, "a corruption name (str)")
    if name in CORRUPTION_ALIASES:
        return CORRUPTION_ALIASES[name]
    if name not in CORRUPTIONS:
        # Aliases too: a misspelt ImageNet-C name ("jpeg_compresion") should get a suggestion as well.
        close = difflib.get_close_matches(name, [*CORRUPTIONS, *CORRUPTION_ALIASES], n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"name should be one of {{{', '.join(map(repr, sorted(CORRUPTIONS)))}}} or an ImageNet-C alias "
            f"{{{', '.join(map(repr, sorted(CORRUPTION_ALIASES)))}}}, but got name={name!r}{hint}"
        )
    return name


def list_corruptions(family: str | None = None) -> list[str]:
    """Sorted names accepted by :func:`corrupt`; only those of ``family`` (see :data:`CORRUPTION_FAMILIES`) when given.

    Example:
        >>> list_corruptions("weather")
        ['brightness', 'fog', 'frost', 'snow', 'spatter']
    """
    if family is None:
        return sorted(CORRUPTIONS)
    check_choice(family, "family", set(CORRUPTION_FAMILIES.values()))
    return sorted(name for name, group in CORRUPTION_FAMILIES.items() if group == family)


def corrupt(images: Tensor, name: str, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Apply one corruption at one severity.

    Args:
        images: :math:`(B, C, H, W)`, float in [0, 1] or uint8, ``C`` in {1, 3}.
        name: one of :func:`list_corruptions`, or an ImageNet-C name of :data:`CORRUPTION_ALIASES`.
        severity: 1 (mild) to 5 (strong).
        generator: source of every random draw; ``None`` uses torch's global generator.

    Returns:
        Corrupted images :math:`(B, C, H, W)`, floating, clamped to [0, 1], on the input's device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> corrupt(torch.rand(2, 3, 32, 32), "gaussian_noise", 3, generator=g).shape
        torch.Size([2, 3, 32, 32])
    """
    images = check_images(images, "images")
    name = resolve_corruption(name)
    severity = check_severity(severity)
    if generator is not None:
        check_type(generator, "generator", torch.Generator, "a torch.Generator or None")
    # Clamped once here rather than in each corruption: added noise and grey-image brightness leave [0, 1], which every
    # metric's check_images refuses.
    return CORRUPTIONS[name](images, severity, generator).clamp(0.0, 1.0)
