"""Each request's images made what training saw, within the server's limits, before any model sees them.

Every image is normalised as ImageExampleGen normalised the training data (``core.images``):
plain JPEG and PNG pass through untouched, a JPEG turned by its EXIF orientation, CMYK, and
every other format (GIF, BMP, WebP, TIFF) become the PNG ingest would have stored. Limits are
read from the headers before any pixel is decoded: each image's pixel count
(``--max-image-pixels``, 400: no split helps) and the request's total (``--max-request-pixels``,
413 like the body and instance limits: smaller requests pass), so a small body of
highly compressed huge images cannot buy seconds of decoding. A converted image is handed over
as an uncompressed PNG: the same pixels as ingest's, without the seconds zlib spends on a
large one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from tensorflow.core.example import example_pb2

from twinflow.core.contract import IMAGE_KEY, SERVING_EXAMPLES_SIGNATURE
from twinflow.core.images import Header, UnknownFormat, UnusableImage, decoding_failure, normalised, read_header
from twinflow.serving.errors import ServingError, invalid, too_large

# The decoders a request may reach: the formats ingest is tested with. Pillow reads more (EPS runs
# Ghostscript, for one), and untrusted bytes should not choose among them.
SERVED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")  # JPEG's decoder opens MPO too
_FORMAT_NAMES = "JPEG, PNG, GIF, BMP, WebP or TIFF"


def image_of_example(serialized: bytes, index: int) -> tuple[example_pb2.Example, bytes]:
    """A serialized raw tf.Example (``serving_default``'s input) and the encoded image inside it."""
    try:
        example = example_pb2.Example.FromString(serialized)
    except DecodeError:
        raise invalid(f"instance {index}: not a serialized tf.Example") from None
    feature = example.features.feature.get(IMAGE_KEY)
    if feature is None or len(feature.bytes_list.value) != 1:
        raise invalid(f"instance {index}: the tf.Example needs one bytes value under '{IMAGE_KEY}'")
    return example, feature.bytes_list.value[0]


def image_header(encoded: bytes, index: int, max_pixels: int) -> Header:
    """The image's header, refused when no served decoder reads it or it has more than ``max_pixels``."""
    try:
        header = read_header(encoded, SERVED_FORMATS)
    except UnknownFormat:
        raise invalid(
            f"instance {index}: not a decodable image ({len(encoded)} bytes; expected {_FORMAT_NAMES})"
        ) from None
    except UnusableImage as err:  # empty, or a header cut short
        raise invalid(f"instance {index}: {err}") from None
    if header.pixels > max_pixels:
        raise invalid(
            f"instance {index}: {header.width}x{header.height} = {header.pixels} pixels is over the limit of "
            f"{max_pixels} (--max-image-pixels)"
        )
    return header


@dataclass(frozen=True)
class PixelLimits:
    per_image: int  # --max-image-pixels
    per_request: int  # --max-request-pixels


def prepare_inputs(signature: str, values: list[bytes], limits: PixelLimits) -> tuple[list[bytes], int]:
    """The values the model is given, each checked, then normalised (``values`` itself where nothing changes),
    and the pixels they hold."""
    examples = signature == SERVING_EXAMPLES_SIGNATURE
    parsed = [image_of_example(value, index) if examples else (None, value) for index, value in enumerate(values)]
    headers = [image_header(image, index, limits.per_image) for index, (_, image) in enumerate(parsed)]
    total = sum(header.pixels for header in headers)
    if total > limits.per_request:
        raise too_large(
            f"the request's {len(headers)} images hold {total} pixels, over the limit of {limits.per_request} "
            "per request (--max-request-pixels); send them in smaller requests"
        )
    if not any(header.needs_conversion for header in headers):
        return values, total  # the common case: nothing decoded, nothing copied
    prepared = list(values)
    for index, ((example, image), header) in enumerate(zip(parsed, headers, strict=True)):
        if not header.needs_conversion:
            continue
        try:
            data = normalised(image, header, SERVED_FORMATS, compress_level=0)  # the model alone reads it
        except UnusableImage as err:
            raise invalid(f"instance {index}: {err}") from None
        if example is None:
            prepared[index] = data
        else:
            example.features.feature[IMAGE_KEY].bytes_list.value[0] = data
            prepared[index] = example.SerializeToString()
    return prepared, total


def decode_failure(signature: str, values: Sequence[bytes], model_message: str) -> ServingError:
    """Why a model's decoder refused a request, in plain words: the first instance Pillow cannot decode either
    (a truncated JPEG, say), or else the decoder's own reason rather than TensorFlow's 'Graph execution error:'."""
    for index, value in enumerate(values):
        image = image_of_example(value, index)[1] if signature == SERVING_EXAMPLES_SIGNATURE else value
        reason = decoding_failure(image, SERVED_FORMATS)
        if reason is not None:
            return invalid(f"instance {index}: {reason}")
    return invalid(f"the model refused the input: {_op_reason(model_message)}")


def _op_reason(message: str) -> str:
    """The failing op's own line of a TensorFlow error message, without the node, function and stack lines."""
    noise = ("Graph execution error:", "Detected at node", "<stack traces unavailable>")
    lines = [re.sub(r"\{\{[^}]*\}\}|\s*(\[\[|\[Op:).*$", "", line).strip() for line in message.splitlines()]
    reasons = [line for line in lines if line and not line.startswith(noise)]
    return reasons[-1] if reasons else message.strip()
