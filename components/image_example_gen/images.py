"""One image file → bytes TensorFlow's decoders read, or a plain-words reason why it cannot be used.

TensorFlow decodes JPEG, PNG, GIF and BMP, but GIF and BMP only as RGB, CMYK JPEGs not as
grayscale, and neither WebP nor TIFF; Pillow reads all of them. So PNG and grayscale or RGB
JPEG pass through untouched and every other image Pillow decodes is re-encoded losslessly as
PNG (its first frame), as is a JPEG whose EXIF orientation says the camera was turned, so
that the pixels a model sees stand upright.

Each image's properties as Pillow decoded the source file (size, bands, format, mean
intensity) are recorded too: they are extra features of the Example, so statistics and the
drift gate see a change in what arrives (a new camera, brighter pictures) even when the
label distribution holds.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, ImageStat, UnidentifiedImageError

from core.contract import IMAGE_CHANNELS_KEY, IMAGE_FORMAT_KEY, IMAGE_HEIGHT_KEY, IMAGE_MEAN_KEY, IMAGE_WIDTH_KEY

PASS_THROUGH_FORMATS = {"PNG", "JPEG", "MPO"}  # MPO: a camera's multi-picture JPEG; its first picture is a JPEG
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I"}
_EXIF_ORIENTATION = 0x0112
_GRAY_MODES = {"1", "L", "LA", "La"}
DEFAULT_MAX_PIXELS = 64_000_000

# Pillow refuses huge images with its own error; twinflow applies its own, configurable limit first.
Image.MAX_IMAGE_PIXELS = None


class UnusableImage(ValueError):
    """The bytes cannot become an example; the message says why in plain words."""


@dataclass(frozen=True)
class ImageProperties:
    """The source file as Pillow decoded it, before any re-encoding or turning upright."""

    height: int
    width: int
    channels: int  # Pillow's band count: 1 for L and P, 2 for LA, 3 for RGB, 4 for RGBA and CMYK
    format: str  # Pillow's format name: PNG, JPEG, GIF …
    mean: float  # mean intensity in [0, 255] over every pixel and colour channel (alpha left out)

    def features(self) -> dict[str, int | float | bytes]:
        """Example feature name → value, under the names core.contract gives them."""
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
    if not data:
        raise UnusableImage("the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            source_format = image.format or "unknown"
            width, height = image.size
            if width * height > max_pixels:
                raise UnusableImage(
                    f"{width}×{height} pixels ({width * height / 1e6:.0f} megapixels) is above the limit of "
                    f"{max_pixels / 1e6:.0f} megapixels (raise it with --max-image-pixels)"
                )
            image.load()  # decode every byte: a truncated file fails here, not in Transform
            properties = ImageProperties(height, width, _channels(image), source_format, _mean_intensity(image))
            turned = source_format in ("JPEG", "MPO") and image.getexif().get(_EXIF_ORIENTATION, 1) != 1
            # TensorFlow's JPEG decoder cannot turn CMYK into grayscale: only L and RGB JPEGs pass through.
            cmyk = source_format in ("JPEG", "MPO") and image.mode not in ("L", "RGB")
            if source_format in PASS_THROUGH_FORMATS and not turned and not cmyk:
                return IngestedImage(
                    data, source_format, width, height, _channels(image), converted=False, properties=properties
                )
            upright = ImageOps.exif_transpose(image) if turned else image
            png = _as_png(upright)
            return IngestedImage(
                png,
                source_format,
                upright.width,
                upright.height,
                _channels(upright),
                converted=True,
                properties=properties,
            )
    except UnusableImage:
        raise
    except UnidentifiedImageError:
        raise UnusableImage("not an image Pillow can read (unknown format, or not an image at all)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise UnusableImage(f"the image data is corrupt or truncated ({_plain(err)})") from None


def _channels(image: Image.Image) -> int:
    return len(image.getbands())


def _mean_intensity(image: Image.Image) -> float:
    """Mean brightness on the 0..255 scale a model's 8-bit decode sees, whatever the mode.

    Palette, CMYK, YCbCr and the like are measured as RGB, grayscale with alpha as L (alpha
    is not brightness); 16-bit (and 32-bit integer) pixels are scaled from 0..65535 and
    floating-point ones stretched from their own range, as ``_as_png`` stores them.
    """
    mode = image.mode
    if mode.startswith("I"):
        return min(255.0, max(0.0, float(np.asarray(image).mean(dtype=np.float64)) / 257.0))
    if mode == "F":
        image, mode = _stretched(image), "L"
    target = "L" if mode in _GRAY_MODES else "RGB"
    means = ImageStat.Stat(image if mode == target else image.convert(target)).mean
    return float(sum(means) / len(means))


def _stretched(image: Image.Image) -> Image.Image:
    """A floating-point image stretched from its own range to 8-bit grayscale (Pillow cannot autocontrast it)."""
    pixels = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) / (high - low) * 255.0 if high > low else np.zeros_like(pixels)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def _as_png(image: Image.Image) -> bytes:
    if image.mode not in _PNG_MODES:
        if image.mode == "F":  # floating-point TIFF: stretch to 8 bits
            image = _stretched(image)
        elif image.mode.startswith("I;16"):
            image = image.convert("I")
        else:  # CMYK, YCbCr, LAB, HSV, PA …
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _plain(err: BaseException) -> str:
    """Pillow's message without object reprs such as <_io.BytesIO object at 0x…>."""
    text = str(err)
    start = text.find(" <_io.")
    return (text[:start] if start >= 0 else text).strip() or type(err).__name__
