"""What the server hands a model is what training stored (``core.images``), within its pixel limits, and a model's
decode failure is named. Without a server: tests/test_model_server.py checks the same through real sockets."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from twinflow.components.image_example_gen.images import ingest
from twinflow.core.images import read_header
from twinflow.serving.errors import ServingError
from twinflow.serving.inputs import PixelLimits, decode_failure, prepare_inputs
from twinflow.trainers.preprocessing import decode_and_resize

LIMITS = PixelLimits(per_image=1_000_000, per_request=4_000_000)
ROTATE_TO_VIEW = 6  # EXIF orientation: turn 90° clockwise to view


def _encode(pixels: np.ndarray, mode: str, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    source = "RGB" if mode == "CMYK" else "L" if pixels.ndim == 2 and mode != "I;16" else None
    image = Image.fromarray(pixels, mode=source) if source else Image.fromarray(pixels)
    (image.convert(mode) if mode not in ("I;16",) and image.mode != mode else image).save(out, fmt, **options)
    return out.getvalue()


def _pixels(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def _turned_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = ROTATE_TO_VIEW
    return _encode(_pixels((20, 40, 3)), "RGB", "JPEG", exif=exif.tobytes())


CONVERTED = {
    "turned camera JPEG": _turned_jpeg,
    "GIF": lambda: _encode(_pixels((9, 12)), "L", "GIF"),
    "BMP": lambda: _encode(_pixels((9, 12, 3)), "RGB", "BMP"),
    "WebP": lambda: _encode(_pixels((9, 12, 3)), "RGB", "WEBP", lossless=True),
    "TIFF": lambda: _encode(_pixels((9, 12, 3)), "RGB", "TIFF"),
    "16-bit TIFF": lambda: _encode(_pixels((9, 12)).astype(np.uint16) * 257, "I;16", "TIFF"),
    "CMYK JPEG": lambda: _encode(_pixels((9, 12, 3)), "CMYK", "JPEG"),
}


def _model_view(encoded: bytes, channels: int) -> np.ndarray:
    """The pixels the one preprocessing decode gives a model."""
    return decode_and_resize(tf.constant([encoded]), 16, channels).numpy()


@pytest.mark.parametrize("kind", sorted(CONVERTED))
def test_the_server_gives_the_model_the_pixels_ingest_stored(kind: str) -> None:
    raw = CONVERTED[kind]()
    stored = ingest(raw).data  # what the pipeline trained on
    assert stored != raw
    (served,), pixels = prepare_inputs("serving_image_bytes", [raw], LIMITS)
    header = read_header(raw)
    assert pixels == header.pixels and Image.open(io.BytesIO(served)).format == "PNG"
    for channels in (1, 3):
        np.testing.assert_array_equal(_model_view(served, channels), _model_view(stored, channels))


def test_a_turned_jpeg_reaches_the_model_upright_not_sideways() -> None:
    raw = _turned_jpeg()
    (served,), _ = prepare_inputs("serving_image_bytes", [raw], LIMITS)
    assert Image.open(io.BytesIO(raw)).size == (40, 20) and Image.open(io.BytesIO(served)).size == (20, 40)


def test_plain_jpeg_and_png_pass_through_untouched() -> None:
    exif = Image.Exif()
    exif[0x0112] = 1  # upright as stored
    values = [
        _encode(_pixels((8, 8)), "L", "PNG"),
        _encode(_pixels((8, 8, 3)), "RGB", "JPEG"),
        _encode(_pixels((8, 8)), "L", "JPEG", exif=exif.tobytes()),
        _encode(_pixels((8, 8)).astype(np.uint16) * 257, "I;16", "PNG"),  # TensorFlow reads 16-bit PNG
    ]
    prepared, pixels = prepare_inputs("serving_image_bytes", values, LIMITS)
    assert prepared is values and pixels == 4 * 64  # nothing decoded, nothing copied


def test_an_example_keeps_its_other_features_and_gets_the_normalised_image() -> None:
    raw = CONVERTED["WebP"]()
    example = tf.train.Example()
    example.features.feature["image"].bytes_list.value.append(raw)
    example.features.feature["filename"].bytes_list.value.append(b"phone/1.webp")
    (served,), _ = prepare_inputs("serving_default", [example.SerializeToString()], LIMITS)
    features = tf.train.Example.FromString(served).features.feature
    assert features["filename"].bytes_list.value == [b"phone/1.webp"]
    np.testing.assert_array_equal(
        _model_view(features["image"].bytes_list.value[0], 3), _model_view(ingest(raw).data, 3)
    )


def _error(*args: object) -> ServingError:
    with pytest.raises(ServingError) as caught:
        prepare_inputs(*args)
    return caught.value


def test_the_request_pixel_budget_is_read_from_headers_before_anything_is_decoded() -> None:
    big = io.BytesIO()
    Image.new("1", (1500, 1000)).save(big, "PNG")
    cut = big.getvalue()[:60]  # the header survives, the pixels do not: decoding would fail
    error = _error("serving_image_bytes", [cut] * 3, PixelLimits(per_image=2_000_000, per_request=4_000_000))
    assert error.http_status == 413
    assert error.message == (
        "the request's 3 images hold 4500000 pixels, over the limit of 4000000 per request "
        "(--max-request-pixels); send them in smaller requests"
    )
    single = _error("serving_image_bytes", [cut], PixelLimits(per_image=1_000_000, per_request=4_000_000))
    assert single.http_status == 400 and "1500x1000 = 1500000 pixels is over the limit of 1000000" in single.message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "instance 0: the file is empty"),
        (b"plain text", "instance 0: not a decodable image (10 bytes; expected JPEG, PNG, GIF, BMP, WebP or TIFF)"),
        (b"P5\n4 4\n255\n" + bytes(16), "instance 0: not a decodable image"),  # PPM: Pillow reads it, the server not
    ],
)
def test_what_no_served_decoder_reads_is_refused(value: bytes, message: str) -> None:
    error = _error("serving_image_bytes", [value], LIMITS)
    assert error.http_status == 400 and error.message.startswith(message), error.message


def test_a_converted_image_that_cannot_be_decoded_names_its_instance() -> None:
    webp = CONVERTED["WebP"]()
    error = _error("serving_image_bytes", [webp, webp[: len(webp) - 20]], LIMITS)
    assert error.http_status == 400 and error.message.startswith("instance 1: the image data is corrupt or truncated")


def test_a_truncated_jpeg_the_model_cannot_decode_is_named_not_graph_execution_error() -> None:
    jpeg = _encode(_pixels((64, 64, 3)), "RGB", "JPEG")
    truncated = jpeg[: len(jpeg) // 2]
    prepared, _ = prepare_inputs("serving_image_bytes", [jpeg, truncated], LIMITS)  # its header is fine
    served_decode = tf.function(lambda images: decode_and_resize(images, 8, 3))  # as in a served signature
    with pytest.raises(tf.errors.InvalidArgumentError) as failed:
        served_decode(tf.constant(prepared))
    error = decode_failure("serving_image_bytes", prepared, failed.value.message)
    assert error.http_status == 400
    assert error.message.startswith("instance 1: the image data is corrupt or truncated (image file is truncated")
    # Where Pillow decodes every image, the decoder's own line stands in for TensorFlow's wrapper.
    fallback = decode_failure("serving_image_bytes", [jpeg], failed.value.message)
    assert fallback.message == (
        "the model refused the input: jpeg::Uncompress failed. Invalid JPEG data or crop window."
    )
