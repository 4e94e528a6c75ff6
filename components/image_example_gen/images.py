"""One image file → the bytes an Example stores (``twinflow.core.images``' normalisation), and its properties.

The normalisation (what passes through, what is re-encoded as PNG and turned upright) lives in
``twinflow.core.images``, so the model server hands a model exactly what training stored.

Each image's properties as Pillow decoded the source file (size, bands, format, mean
intensity) are recorded too: they are extra features of the Example, so statistics and the
drift gate see a change in what arrives (a new camera, brighter pictures) even when the
label distribution holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageStat

from twinflow.core.contract import (
    IMAGE_CHANNELS_KEY,
    IMAGE_FORMAT_KEY,
    IMAGE_HEIGHT_KEY,
    IMAGE_MEAN_KEY,
    IMAGE_WIDTH_KEY,
)
from twinflow.core.images import DEFAULT_MAX_PIXELS, UnusableImage, header_of, opened, stretched_to_8_bits, upright_png

__all__ = ["DEFAULT_MAX_PIXELS", "ImageProperties", "IngestedImage", "UnusableImage", "ingest"]
_GRAY_MODES = {"1", "L", "LA", "La"}


@dataclass(frozen=True)
class ImageProperties:
    """The source file as Pillow decoded it, before any re-encoding or turning upright."""

    height: int
    width: int
    channels: int  # Pillow's band count: 1 for L and P, 2 for LA, 3 for RGB, 4 for RGBA and CMYK
    format: str  # Pillow's format name: PNG, JPEG, GIF …
    mean: float  # mean intensity in [0, 255] over every pixel and colour channel (alpha left out)

    def features(self) -> dict[str, int | float | bytes]:
        """Example feature name → value, under the names twinflow.core.contract gives them."""
        return {
            IMAGE_HEIGHT_KEY: self.height,
            IMAGE_WIDTH_KEY: self.width,
            IMAGE_CHANNELS_KEY: self.channels,
            IMAGE_FORMAT_KEY: self.format.encode(),
            IMAGE_MEAN_KEY: self.mean,
        }


@dataclass(frozen=True)
class IngestedImage:
    data: bytes  # what the Example stores: the original bytes, or a lossless PNG
    source_format: str
    width: int  # of what is stored (upright)
    height: int
    channels: int
    converted: bool
    properties: ImageProperties


def ingest(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> IngestedImage:
    """Check and, where TensorFlow needs it, re-encode one image; raises UnusableImage."""
    with opened(data) as image:
        header = header_of(image)
        width, height = header.width, header.height
        if header.pixels > max_pixels:
            raise UnusableImage(
                f"{width}×{height} pixels ({header.pixels / 1e6:.0f} megapixels) is above the limit of "
                f"{max_pixels / 1e6:.0f} megapixels (raise it with --max-image-pixels)"
            )
        image.load()  # decode every byte: a truncated file fails here, not in Transform
        properties = ImageProperties(height, width, _channels(image), header.format, _mean_intensity(image))
        if not header.needs_conversion:
            return IngestedImage(
                data, header.format, width, height, _channels(image), converted=False, properties=properties
            )
        png, upright = upright_png(image, header)
        return IngestedImage(
            png,
            header.format,
            upright.width,
            upright.height,
            _channels(upright),
            converted=True,
            properties=properties,
        )


def _channels(image: Image.Image) -> int:
    return len(image.getbands())


def _mean_intensity(image: Image.Image) -> float:
    """Mean brightness on the 0..255 scale a model's 8-bit decode sees, whatever the mode.

    Palette, CMYK, YCbCr and the like are measured as RGB, grayscale with alpha as L (alpha
    is not brightness); 16-bit (and 32-bit integer) pixels are scaled from 0..65535 and
    floating-point ones stretched from their own range, as ``twinflow.core.images`` stores them.
    """
    mode = image.mode
    if mode.startswith("I"):
        return min(255.0, max(0.0, float(np.asarray(image).mean(dtype=np.float64)) / 257.0))
    if mode == "F":
        image, mode = stretched_to_8_bits(image), "L"
    target = "L" if mode in _GRAY_MODES else "RGB"
    means = ImageStat.Stat(image if mode == target else image.convert(target)).mean
    return float(sum(means) / len(means))
