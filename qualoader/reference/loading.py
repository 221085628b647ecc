"""Build a :class:`ReferenceNetwork` from a name, a module or the embedded default, strictly offline.

Nothing here downloads: torchvision and timm models are constructed without weights and then
filled from a local file; when the file is missing, the error names the exact file expected.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qualoader._json import read_json
from qualoader._validation import check_type
from qualoader.reference.architectures import FashionCNN
from qualoader.reference.network import ReferenceNetwork

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_RECORD",
    "default_reference",
    "load_reference",
    "load_state_dict_file",
]

_ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: The embedded default reference network (float32 ``state_dict`` of :class:`FashionCNN`).
DEFAULT_CHECKPOINT: Path = _ASSETS / "default_reference.pt"
#: Its training recipe, seed, clean test accuracy, input convention and sha256.
DEFAULT_RECORD: Path = _ASSETS / "default_reference.json"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CONVENTION_KEYS = frozenset({"input_size", "in_channels", "mean", "std", "feature_layer", "name"})


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a ``state_dict`` from a local ``.pt``/``.pth``/``.bin`` (``torch.save``) or ``.safetensors`` file.

    Wrappers ``{"state_dict": ...}``, ``{"model": ...}`` and the ``"module."`` prefix of
    ``DataParallel`` are unwrapped. Only tensors are loaded (``weights_only=True``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be read, or does not hold a mapping of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights should be an existing local file, but got weights={str(path)!r}, which does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            # weights_only: a weights file is untrusted input and a full unpickle can run code. map_location: a
            # checkpoint saved on a GPU must still load on a CPU-only machine.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises pickle, zip and runtime errors alike for a damaged file
        raise ValueError(
            f"weights should be a readable state_dict file (torch.save or safetensors), but got weights={str(path)!r} that cannot be read "
            f"({type(error).__name__}: {error})"
        ) from error
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"weights should be a file holding a state_dict of tensors, but got weights={str(path)!r} holding {type(state).__name__}"
        )
    # Only when every key has it: that is DataParallel's wrapping, while a model with a real submodule
    # called "module" has other keys too and must keep its names.
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


@functools.lru_cache(maxsize=1)
def _default_checkpoint() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The default's JSON record and verified state_dict, read once per process."""
    if not DEFAULT_CHECKPOINT.is_file() or not DEFAULT_RECORD.is_file():
        raise FileNotFoundError(
            f"the embedded default reference should ship as {DEFAULT_CHECKPOINT} and {DEFAULT_RECORD}, "
            "but got a qualoader install without them; reinstall qualoader or regenerate them with "
            "'python tools/train_default.py' (in the qualoader repository)"
        )
    record = read_json(DEFAULT_RECORD, what=f"the default reference's record {str(DEFAULT_RECORD)!r}")
    # A checkpoint out of step with its record would shift every default-reference score silently.
    digest = hashlib.sha256(DEFAULT_CHECKPOINT.read_bytes()).hexdigest()
    if digest != record["sha256"]:
        raise RuntimeError(
            f"{DEFAULT_CHECKPOINT} should have sha256 {record['sha256']} (from {DEFAULT_RECORD.name}), but got sha256 {digest}; "
            "the checkpoint is corrupt or out of date: regenerate it with 'python tools/train_default.py' (in the qualoader repository)"
        )
    return record, load_state_dict_file(DEFAULT_CHECKPOINT)


def default_reference() -> ReferenceNetwork:
    """The embedded default: a BatchNorm CNN trained on real Fashion-MNIST (no download needed).

    The checkpoint is read and checked against its recorded sha256 once per process; each call
    returns a new module (so moving or modifying one never affects another). The recipe, seed and
    clean test accuracy are in :data:`DEFAULT_RECORD`.

    Returns:
        A :class:`ReferenceNetwork` with input :math:`(B, 1, 28, 28)` (any input size or channel
        count is converted), 10 logits and a 128-d embedding.

    Example:
        >>> import torch
        >>> default_reference()(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    record, state = _default_checkpoint()
    model = FashionCNN(num_classes=record["num_classes"])
    # load_state_dict copies into the new module's parameters, so the cached tensors are never shared.
    model.load_state_dict(state)
    model.eval()
    return ReferenceNetwork(
        model,
        input_size=tuple(record["input_size"]),
        in_channels=record["in_channels"],
        mean=tuple(record["mean"]),
        std=tuple(record["std"]),
        feature_layer=record["feature_layer"],
        name=record["name"],
    )


def _load_fitting(model: nn.Module, weights: str | os.PathLike[str], what: str, num_classes: int | None) -> None:
    """Load ``weights`` into ``model`` strictly; a mismatch is one ValueError that names the way out (``num_classes``)."""
    state = load_state_dict_file(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        shapes = [key for key, value in model.state_dict().items() if key in state and state[key].shape != value.shape]
        hint = (
            f"; the mismatched {shapes[-1]!r} is the head: pass num_classes=N (--num-classes N on the command line) for a network "
            "with N classes"
            if shapes and num_classes is None
            else ""
        )
        first = str(error).strip().splitlines()[1:2] or [str(error)]
        raise ValueError(
            f"weights should fit {what}, but got weights={str(weights)!r} with missing, unexpected or mis-shaped keys "
            f"({first[0].strip()[:300]}){hint}"
        ) from None


def _check_classes(num_classes: int | None) -> None:
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes should be None or a positive int (the network's outputs), but got num_classes={num_classes!r}")


def _torchvision_reference(
    name: str, weights: str | os.PathLike[str] | None, num_classes: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    from torchvision import models

    available = models.list_models(module=models)
    if name not in available:
        import difflib

        close = difflib.get_close_matches(name, available, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; see torchvision.models.list_models()"
        raise ValueError(
            f"source should be 'default', a torchvision classification model name or 'timm:<name>', but got source={name!r}{hint}"
        )
    pretrained = models.get_model_weights(name).DEFAULT
    if weights is None and num_classes is not None:
        raise FileNotFoundError(
            f"weights should be a local file of the torchvision model {name!r} with num_classes={num_classes}, but got weights=None; "
            "pass the state_dict of your own network (weights='net.pt'; --weights on the command line)"
        )
    if weights is None:
        # The very file torchvision's own download writes, so a machine that ever fetched it is ready.
        expected = Path(torch.hub.get_dir()) / "checkpoints" / Path(pretrained.url).name
        if not expected.is_file():
            raise FileNotFoundError(
                f"weights should be a local file for the torchvision model {name!r}, but got weights=None and no file at "
                f"{expected}; download {pretrained.url} to that path on a machine with internet, "
                "or pass weights='/path/to/file.pth' (qualoader never downloads)"
            )
        weights = expected
    extra = {} if num_classes is None else {"num_classes": num_classes}
    model = models.get_model(name, weights=None, **extra)
    _load_fitting(model, weights, f"torchvision {name}({'' if num_classes is None else f'num_classes={num_classes}'})", num_classes)
    transform = pretrained.transforms()
    # The network sees the eval crop (e.g. 224 for ResNet), not the size it is first resized to (256).
    crop = transform.crop_size[0]
    return model, {"input_size": (crop, crop), "in_channels": 3, "mean": tuple(transform.mean), "std": tuple(transform.std), "name": name}


def _timm_reference(name: str, weights: str | os.PathLike[str] | None, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    import timm

    if not timm.is_model(name):
        raise ValueError(f"source should be 'timm:<a timm model name>', but got source={'timm:' + name!r}; see timm.list_models()")
    # pretrained=False builds the architecture offline; pretrained_cfg still describes the weights' input
    # convention (size, mean, std).
    model = timm.create_model(name, pretrained=False, **({} if num_classes is None else {"num_classes": num_classes}))
    cfg = dict(model.pretrained_cfg)
    if weights is None:
        origin = cfg.get("hf_hub_id") or cfg.get("url") or "the timm model hub"
        raise FileNotFoundError(
            f"weights should be a local file for the timm model {name!r}, but got weights=None; download its "
            f"weights (from {origin}, e.g. model.safetensors or pytorch_model.bin) on a machine with internet and pass "
            "weights='/path/to/that/file' (qualoader never downloads)"
        )
    _load_fitting(model, weights, f"timm {name}({'' if num_classes is None else f'num_classes={num_classes}'})", num_classes)
    _, height, width = cfg.get("input_size", (3, 224, 224))
    return model, {
        "input_size": (height, width),
        "in_channels": 3,
        "mean": tuple(cfg.get("mean", _IMAGENET_MEAN)),
        "std": tuple(cfg.get("std", _IMAGENET_STD)),
        "name": f"timm:{name}",
    }


def load_reference(
    source: str | nn.Module = "default",
    *,
    weights: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    **kwargs: Any,
) -> ReferenceNetwork:
    """Load a reference network, offline.

    Args:
        source: ``"default"`` (the embedded Fashion-MNIST CNN, see :func:`default_reference`);
            a torchvision classification model name such as ``"resnet18"``; ``"timm:<name>"``;
            a :class:`ReferenceNetwork` (returned as is); or any classifier ``nn.Module``
            (wrapped; ImageNet input convention unless overridden).
        weights: local weights file (``state_dict`` in ``.pt``/``.pth``/``.bin``/``.safetensors``).
            Required for timm; for torchvision, ``None`` looks for the file torchvision itself
            would cache (``<torch hub dir>/checkpoints/<file>``); for a module, optional.
        num_classes: for a torchvision or timm name, the number of outputs of the network's head
            when it is not the pretrained one (your own fine-tuned network; ``weights`` required).
        **kwargs: overrides of the input convention: ``input_size``, ``in_channels``, ``mean``,
            ``std``, ``feature_layer``, ``name`` (see :class:`ReferenceNetwork`).

    Returns:
        A :class:`ReferenceNetwork` in eval mode.

    Raises:
        FileNotFoundError: the weights file is missing (the message names the expected file).
        TypeError: ``source`` is neither a str nor an ``nn.Module``.
        ValueError: unknown model name or convention keyword.

    Example:
        >>> load_reference().name
        'fashion-mnist-cnn'
    """
    check_type(source, "source", (str, nn.Module), "'default', a model name or an nn.Module")
    _check_classes(num_classes)
    if num_classes is not None and not (isinstance(source, str) and source != "default"):
        raise ValueError(
            f"num_classes should be given only with a torchvision or timm model name (it sizes their head), but got "
            f"num_classes={num_classes} with source={source if isinstance(source, str) else type(source).__name__!r}"
        )
    unknown = set(kwargs) - _CONVENTION_KEYS
    if unknown:
        raise ValueError(f"kwargs should be among {sorted(_CONVENTION_KEYS)}, but got unexpected {sorted(unknown)}")
    # Before the generic nn.Module branch: a ReferenceNetwork is an nn.Module and must not be wrapped twice.
    if isinstance(source, ReferenceNetwork):
        if weights is not None or kwargs:
            raise ValueError("weights and kwargs should be omitted for a ReferenceNetwork source, but got some")
        return source
    if isinstance(source, str) and source == "default":
        if weights is not None or kwargs:
            raise ValueError("weights and kwargs should be omitted for source='default', but got some; load a FashionCNN module instead")
        return default_reference()
    if isinstance(source, str):
        if source.startswith("timm:"):
            model, convention = _timm_reference(source[len("timm:"):], weights, num_classes)
        else:
            model, convention = _torchvision_reference(source, weights, num_classes)
    else:
        model = source
        if weights is not None:
            model.load_state_dict(load_state_dict_file(weights))
        convention = {
            "input_size": (224, 224),
            "in_channels": 3,
            "mean": _IMAGENET_MEAN,
            "std": _IMAGENET_STD,
            "name": type(source).__name__,
        }
    convention.setdefault("feature_layer", None)
    # After the defaults, so the caller's overrides win.
    convention.update(kwargs)
    return ReferenceNetwork(model, **convention)
