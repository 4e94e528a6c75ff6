"""The model architectures both frameworks build, by name: one spec, two implementations.

Two kinds: the twin CNNs (trained from scratch on normalised images) and pretrained backbones
(trainers/backbones/: fine-tuned, fed raw pixels 0..255 that their first layer scales, as their
published weights expect).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CnnSpec:
    """A conv-pool stack then dense layers; both frameworks build it from this one spec."""

    conv_filters: tuple[int, ...]
    kernel_size: int
    dense_units: tuple[int, ...]
    dropout: float = 0.0  # rate of the dropout after the flatten and after each hidden dense layer (0: none)


ARCHITECTURES: dict[str, CnnSpec] = {
    # The reference article's twin CNN: conv32-pool-conv64-pool-dense128-dense<classes>,
    # 'same' padding; 421,642 parameters at 28x28x1 with 10 classes.
    "twin_cnn": CnnSpec(conv_filters=(32, 64), kernel_size=3, dense_units=(128,)),
    # The same network with dropout before each dense layer: regularized, it keeps improving
    # over more epochs where twin_cnn starts to overfit.
    "twin_cnn_dropout": CnnSpec(conv_filters=(32, 64), kernel_size=3, dense_units=(128,), dropout=0.3),
    # The default: the same convolutions under a four-times wider dense layer (512), with
    # dropout 0.4 against the overfitting that width brings; 1,630,090 parameters at 28x28x1
    # with 10 classes. Ten cosine epochs take it from ~92.2% (twin_cnn_dropout) to ~92.8% on
    # Fashion-MNIST for about a fifth more time per image (README, Recipes).
    "twin_cnn_wide": CnnSpec(conv_filters=(32, 64), kernel_size=3, dense_units=(512,), dropout=0.4),
    # A smaller twin for quick runs and tests.
    "tiny_cnn": CnnSpec(conv_filters=(8, 16), kernel_size=3, dense_units=(32,)),
}


def architecture(name: str) -> CnnSpec:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}") from None


@dataclass(frozen=True)
class BackboneSpec:
    """A pretrained family built as an exact twin in both frameworks (trainers/backbones/)."""

    min_image_size: int  # the smallest input its strided convolutions take
    published_sizes: tuple[int, ...]  # input sizes with published ImageNet weights
    head_dropout: float = 0.2


BACKBONES: dict[str, BackboneSpec] = {
    # Keras applications' MobileNetV2 (alpha = --width-multiplier), mirrored exactly in torch.
    "mobilenet_v2": BackboneSpec(min_image_size=32, published_sizes=(96, 128, 160, 192, 224)),
}


def architecture_names() -> list[str]:
    return [*ARCHITECTURES, *BACKBONES]


def is_backbone(name: str) -> bool:
    return name in BACKBONES
