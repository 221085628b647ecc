"""Reference networks: the classifiers whose sensitivity the aligned metrics share.

:func:`load_reference` builds a :class:`ReferenceNetwork` from the embedded default, a torchvision
or timm model name with a local weights file, or any ``nn.Module`` -- never downloading.
"""

from qualoader.reference.architectures import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    FashionCNN,
)
from qualoader.reference.image_text import (
    CLIP_MEAN,
    CLIP_STD,
    ClipTokenizer,
    default_clip_checkpoint,
    load_clip,
)
from qualoader.reference.loading import (
    DEFAULT_CHECKPOINT,
    DEFAULT_RECORD,
    default_reference,
    load_reference,
    load_state_dict_file,
)
from qualoader.reference.network import ForwardTap, ReferenceNetwork, eval_mode, preprocess_images

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_CHECKPOINT",
    "DEFAULT_RECORD",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "ClipTokenizer",
    "FashionCNN",
    "ForwardTap",
    "ReferenceNetwork",
    "default_clip_checkpoint",
    "default_reference",
    "eval_mode",
    "load_clip",
    "load_reference",
    "load_state_dict_file",
    "preprocess_images",
]
