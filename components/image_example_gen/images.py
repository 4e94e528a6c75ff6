"""One image file → bytes TensorFlow's decoders read, or a plain-words reason why it cannot be used.

TensorFlow decodes JPEG, PNG, GIF and BMP, but GIF and BMP only as RGB, CMYK JPEGs not as
grayscale, and neither WebP nor TIFF; Pillow reads all of them. So PNG and grayscale or RGB
JPEG pass through untouched and every other image Pillow decodes is re-encoded losslessly as
PNG (its first frame), as is a JPEG whose EXIF orientation says the camera was turned, so
that the pixels a model sees stand upright.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

PASS_THROUGH_FORMATS = {"PNG", "JPEG", "MPO"}  # MPO: a camera's multi-picture JPEG; its first picture is a JPEG
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I"}
_EXIF_ORIENTATION = 0x0112
DEFAULT_MAX_PIXELS = 64_000_000

# Pillow refuses huge images with its own error; twinflow applies its own, configurable limit first.
Image.MAX_IMAGE_PIXELS = None


class UnusableImage(ValueError):
    """The bytes cannot become an example; the message says why in plain words."""


@dataclass(frozen=True)
class IngestedImage:
    data: bytes  # what the Example stores: the original bytes, or a lossless PNG
    source_format: str
    width: int
    height: int
    channels: int
    converted: bool


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
            turned = source_format in ("JPEG", "MPO") and image.getexif().get(_EXIF_ORIENTATION, 1) != 1
            # TensorFlow's JPEG decoder cannot turn CMYK into grayscale: only L and RGB JPEGs pass through.
            cmyk = source_format in ("JPEG", "MPO") and image.mode not in ("L", "RGB")
            if source_format in PASS_THROUGH_FORMATS and not turned and not cmyk:
                return IngestedImage(data, source_format, width, height, len(image.getbands()), converted=False)
            upright = ImageOps.exif_transpose(image) if turned else image
            png = _as_png(upright)
            return IngestedImage(png, source_format, upright.width, upright.height, _channels(upright), converted=True)
    except UnusableImage:
        raise
    except UnidentifiedImageError:
        raise UnusableImage("not an image Pillow can read (unknown format, or not an image at all)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise UnusableImage(f"the image data is corrupt or truncated ({_plain(err)})") from None


def _channels(image: Image.Image) -> int:
    return len(image.getbands())


def _as_png(image: Image.Image) -> bytes:
    if image.mode not in _PNG_MODES:
        if image.mode == "F":  # floating-point TIFF: stretch to 8 bits
            image = ImageOps.autocontrast(image.convert("I")).convert("L")
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
