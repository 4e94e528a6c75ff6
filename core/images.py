"""Encoded image → the bytes a model's TensorFlow decoder receives: the one normalisation ingest and the server share.

TensorFlow decodes JPEG, PNG, GIF and BMP, but GIF and BMP only as RGB, CMYK JPEGs not as
grayscale, neither WebP nor TIFF, and it ignores EXIF orientation; Pillow reads all of them.
So PNG and grayscale or RGB JPEG pass through untouched and every other image Pillow decodes
is re-encoded losslessly as PNG (its first frame), as is a JPEG whose EXIF orientation says the
camera was turned, so that the pixels a model sees stand upright. ImageExampleGen stores what
this makes and the model server hands the model the same, so a phone photo is served as it
was trained. Whether an image needs it is read from its header alone: plain JPEG and PNG cost
a header parse, never a decode.

Pure Pillow (no TensorFlow), so every layer may use it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PASS_THROUGH_FORMATS = frozenset({"PNG", "JPEG", "MPO"})  # MPO: a camera's multi-picture JPEG; its first is a JPEG
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I"})
_EXIF_ORIENTATION = 0x0112
DEFAULT_MAX_PIXELS = 64_000_000

# Pillow refuses huge images with its own error; twinflow applies its own, configurable limits first.
Image.MAX_IMAGE_PIXELS = None


class UnusableImage(ValueError):
    """The bytes cannot become a model's input; the message says why in plain words."""


class UnknownFormat(UnusableImage):
    """No decoder tried recognises the bytes as an image."""


@dataclass(frozen=True)
class Header:
    """What an image's header says, read before any pixel is decoded."""

    format: str  # Pillow's format name: PNG, JPEG, GIF …
    width: int  # as stored, before turning upright
    height: int
    mode: str  # Pillow's mode: L, RGB, CMYK, I;16 …
    orientation: int  # EXIF orientation of a JPEG (1: as stored); 1 for other formats

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def turned(self) -> bool:
        """A JPEG whose EXIF orientation says the camera was turned: its pixels must be turned upright."""
        return self.format in _JPEG_FORMATS and self.orientation != 1

    @property
    def needs_conversion(self) -> bool:
        """Whether TensorFlow must receive a re-encoded PNG instead of these bytes."""
        # TensorFlow's JPEG decoder cannot turn CMYK into grayscale: only L and RGB JPEGs pass through.
        cmyk = self.format in _JPEG_FORMATS and self.mode not in ("L", "RGB")
        return self.format not in PASS_THROUGH_FORMATS or self.turned or cmyk


@contextlib.contextmanager
def opened(data: bytes, formats: Sequence[str] | None = None) -> Iterator[Image.Image]:
    """Pillow's lazy image over ``data`` (``formats``: the only decoders tried); Pillow's failures, inside the
    block too, become UnusableImage in plain words."""
    if not data:
        raise UnusableImage("the file is empty")
    try:
        with Image.open(io.BytesIO(data), formats=formats) as image:
            yield image
    except UnusableImage:
        raise
    except UnidentifiedImageError:
        raise UnknownFormat("not an image Pillow can read (unknown format, or not an image at all)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise UnusableImage(f"the image data is corrupt or truncated ({_plain(err)})") from None


def header_of(image: Image.Image) -> Header:
    """An opened image's header; the EXIF orientation is read from a JPEG's APP1 segment, no pixels decoded."""
    source_format = image.format or "unknown"
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1) if source_format in _JPEG_FORMATS else 1
    return Header(source_format, image.width, image.height, image.mode, orientation)


def read_header(data: bytes, formats: Sequence[str] | None = None) -> Header:
    with opened(data, formats) as image:
        return header_of(image)


def upright_png(image: Image.Image, header: Header, compress_level: int | None = None) -> tuple[bytes, Image.Image]:
    """A lossless PNG of the image as it should be seen (first frame, turned upright), and that upright image.

    ``compress_level`` (zlib's 0-9) changes the file's size, never its pixels; None is Pillow's default,
    which ingest stores (its bytes decide each example's split).
    """
    upright = ImageOps.exif_transpose(image) if header.turned else image
    return _as_png(upright, compress_level), upright


def normalised(
    data: bytes, header: Header, formats: Sequence[str] | None = None, compress_level: int | None = None
) -> bytes:
    """``data`` itself when TensorFlow reads it as it should be seen, else the PNG ingest would store (the same
    pixels; ``compress_level`` as in ``upright_png``).

    ``header`` is ``read_header(data)``'s; raises UnusableImage when the pixels cannot be decoded.
    """
    if not header.needs_conversion:
        return data
    with opened(data, formats) as image:
        image.load()
        return upright_png(image, header, compress_level)[0]


def decoding_failure(data: bytes, formats: Sequence[str] | None = None) -> str | None:
    """Why Pillow cannot decode every pixel of ``data`` (truncated, corrupt…), or None when it can."""
    try:
        with opened(data, formats) as image:
            image.load()
    except UnusableImage as err:
        return str(err)
    return None


def stretched_to_8_bits(image: Image.Image) -> Image.Image:
    """A floating-point image stretched from its own range to 8-bit grayscale (Pillow cannot autocontrast it)."""
    pixels = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) / (high - low) * 255.0 if high > low else np.zeros_like(pixels)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def _as_png(image: Image.Image, compress_level: int | None) -> bytes:
    if image.mode not in _PNG_MODES:
        if image.mode == "F":  # floating-point TIFF: stretch to 8 bits
            image = stretched_to_8_bits(image)
        elif image.mode.startswith("I;16"):
            image = image.convert("I")
        else:  # CMYK, YCbCr, LAB, HSV, PA …
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    out = io.BytesIO()
    image.save(out, "PNG", **({} if compress_level is None else {"compress_level": compress_level}))
    return out.getvalue()


def _plain(err: BaseException) -> str:
    """Pillow's message without object reprs such as <_io.BytesIO object at 0x…>."""
    text = str(err)
    start = text.find(" <_io.")
    return (text[:start] if start >= 0 else text).strip() or type(err).__name__
