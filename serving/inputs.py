"""Checks on each image before any model sees it: a readable format, and a pixel count under the limit.

Pillow reads only an image's header to learn its size, so a decompression bomb is refused
before it is decoded. The formats are those the models' TensorFlow decoder reads.
"""

from __future__ import annotations

import io
import warnings

from google.protobuf.message import DecodeError
from PIL import Image
from tensorflow.core.example import example_pb2

from core.contract import IMAGE_KEY, SERVING_EXAMPLES_SIGNATURE
from serving.errors import invalid

MODEL_FORMATS = ("JPEG", "PNG", "GIF", "BMP")  # what tf.io.decode_image reads


def image_of_example(serialized: bytes, index: int) -> bytes:
    """The encoded image inside a serialized raw tf.Example (``serving_default``'s input)."""
    try:
        example = example_pb2.Example.FromString(serialized)
    except DecodeError:
        raise invalid(f"instance {index}: not a serialized tf.Example") from None
    feature = example.features.feature.get(IMAGE_KEY)
    if feature is None or len(feature.bytes_list.value) != 1:
        raise invalid(f"instance {index}: the tf.Example needs one bytes value under '{IMAGE_KEY}'")
    return feature.bytes_list.value[0]


def check_image(encoded: bytes, index: int, max_pixels: int) -> None:
    """Refuse what the model could not decode, or should not: undecodable bytes, other formats, too many pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(encoded)) as image:  # reads the header only
                width, height, kind = image.width, image.height, image.format
    except Image.DecompressionBombError:
        raise invalid(f"instance {index}: the image has too many pixels to decode (over {max_pixels})") from None
    except Exception:  # Pillow raises many kinds for bytes that are no image
        raise invalid(
            f"instance {index}: not a decodable image ({len(encoded)} bytes; expected JPEG, PNG, GIF or BMP)"
        ) from None
    if kind not in MODEL_FORMATS:
        raise invalid(f"instance {index}: {kind} images are not accepted (expected JPEG, PNG, GIF or BMP)")
    if width * height > max_pixels:
        raise invalid(
            f"instance {index}: {width}x{height} = {width * height} pixels is over the limit of {max_pixels} "
            "(--max-image-pixels)"
        )


def check_inputs(signature: str, values: list[bytes], max_pixels: int) -> None:
    """Every value of a request, for either signature; the message names the first bad instance."""
    for index, value in enumerate(values):
        image = image_of_example(value, index) if signature == SERVING_EXAMPLES_SIGNATURE else value
        check_image(image, index, max_pixels)
