"""MobileNetV2 as tf_keras.applications builds it, written once for both twins (no framework imported).

The Keras twin *is* ``tf_keras.applications.MobileNetV2``; the torch twin is built from the
table and rules below, which mirror ``tf_keras/src/applications/mobilenet_v2.py`` (and
``imagenet_utils.correct_pad``) line by line, so that both compute the same function:
channel counts rounded by ``make_divisible``, stride-2 convolutions padded asymmetrically
(TensorFlow's 'same' rule), batch norm with epsilon 1e-3 and momentum 0.999, ReLU6.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Batch norm as Keras applications configure it. torch's momentum weighs the new batch, Keras's
# the running value: torch momentum = 1 - Keras momentum.
BN_EPSILON = 1e-3
KERAS_BN_MOMENTUM = 0.999
TORCH_BN_MOMENTUM = 1 - KERAS_BN_MOMENTUM
# From a seeded start every batch norm trains, and its running statistics start at mean 0, variance 1: at 0.999
# they would still be mostly those after a thousand steps, and evaluation (which uses them) would answer near
# chance for the first epochs. The same network trained from scratch uses Keras's layer default, 0.99.
FROM_SCRATCH_BN_MOMENTUM = 0.99

# The fixed input normalisation of the published weights (mobilenet_v2.preprocess_input, mode "tf"):
# uint8-range pixels 0..255 → [-1, 1]. It is the twins' first layer, so it travels with every export.
INPUT_SCALE = 1 / 127.5
INPUT_OFFSET = -1.0

# The layer names the twins add around tf_keras's backbone (the torch twin's modules carry the same).
INPUT_SCALING_LAYER = "input_scaling"
GREY_TO_RGB_LAYER = "grey_to_rgb"
POOL_LAYER = "avg_pool"
DROPOUT_LAYER = "head_dropout"
HEAD_LAYER = "logits"

MIN_INPUT_SIZE = 32  # Keras applications refuse smaller inputs
FIRST_BLOCK_FILTERS = 32
LAST_CONV_FILTERS = 1280


@dataclass(frozen=True)
class Block:
    """One inverted residual block as MobileNetV2's builder calls ``_inverted_res_block``."""

    filters: int
    stride: int
    expansion: int


BLOCKS: tuple[Block, ...] = (
    Block(16, 1, 1),
    Block(24, 2, 6),
    Block(24, 1, 6),
    Block(32, 2, 6),
    Block(32, 1, 6),
    Block(32, 1, 6),
    Block(64, 2, 6),
    Block(64, 1, 6),
    Block(64, 1, 6),
    Block(64, 1, 6),
    Block(96, 1, 6),
    Block(96, 1, 6),
    Block(96, 1, 6),
    Block(160, 2, 6),
    Block(160, 1, 6),
    Block(160, 1, 6),
    Block(320, 1, 6),
)

# Units for freezing, numbered alike in both twins: 0 the stem (Conv1), 1..17 the inverted residual
# blocks 0..16, 18 the last 1x1 convolution (Conv_1). "Unfreeze the top N" trains units 19-N..18.
STEM_UNIT = 0
TOP_UNIT = len(BLOCKS) + 1
NUM_UNITS = len(BLOCKS) + 2

# Published Keras applications weights exist for these widths and square sizes.
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
IMAGENET_SIZES = (96, 128, 160, 192, 224)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Keras applications' ``_make_divisible``: round to a multiple of ``divisor``, never down by over 10%."""
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def first_block_filters(alpha: float) -> int:
    return make_divisible(FIRST_BLOCK_FILTERS * alpha, 8)


def block_output_filters(block: Block, alpha: float) -> int:
    return make_divisible(int(block.filters * alpha), 8)


def last_conv_filters(alpha: float) -> int:
    """1280, widened above alpha 1.0 only (Keras does not narrow the last convolution)."""
    return make_divisible(LAST_CONV_FILTERS * alpha, 8) if alpha > 1.0 else LAST_CONV_FILTERS


def block_prefix(block_id: int) -> str:
    """The Keras layer-name prefix of an inverted residual block (block 0 has no expansion layer)."""
    return f"block_{block_id}_" if block_id else "expanded_conv_"


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's padding='same' as (before, after): the extra pixel, if any, goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def correct_pad(size: int, kernel: int) -> tuple[int, int]:
    """``imagenet_utils.correct_pad`` for one axis of a known size: (before, after) for ZeroPadding2D."""
    adjust = 1 - size % 2
    return kernel // 2 - adjust, kernel // 2


def conv_output_size(padded_size: int, kernel: int, stride: int) -> int:
    return (padded_size - kernel) // stride + 1


_BLOCK_NAME = re.compile(r"block_(\d+)_")


def unit_of_layer(name: str, seen_blocks: bool) -> int:
    """The freezing unit of a backbone layer from its Keras name; ``seen_blocks``: a block came before it."""
    if name.startswith("expanded_conv_"):
        return 1
    match = _BLOCK_NAME.match(name)
    if match:
        return int(match.group(1)) + 1
    return TOP_UNIT if seen_blocks else STEM_UNIT


def trainable_units(top: int) -> range:
    """The units trained when the top ``top`` are unfrozen (0: none; NUM_UNITS or more: all)."""
    return range(max(NUM_UNITS - max(top, 0), 0), NUM_UNITS)


def imagenet_rows(image_size: tuple[int, int]) -> int:
    """The size whose published weights Keras loads: the input's if square and published, else 224."""
    rows, cols = image_size
    return rows if rows == cols and rows in IMAGENET_SIZES else 224
