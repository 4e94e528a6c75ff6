"""The one preprocessing_fn: decode, channels, resize, scale, dataset-wide normalization."""

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from twinflow.core.config import TrainingConfig
from twinflow.core.contract import CLASS_VOCAB_NAME, IMAGE_XF_KEY, LABEL_XF_KEY, TRAINING_CONFIG_KEY
from twinflow.trainers.base import parse_class_vocabulary
from twinflow.trainers.preprocessing import decode_and_resize, preprocessing_fn


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def test_decode_resize_scale_grayscale_png() -> None:
    constant = np.full((40, 30), 204, dtype=np.uint8)  # non-square, not 28x28
    images = decode_and_resize(tf.constant([_encode(constant, "PNG")]), image_size=28, channels=1).numpy()
    assert images.shape == (1, 28, 28, 1) and images.dtype == np.float32
    np.testing.assert_allclose(images, 204 / 255, atol=1e-5)


def test_rgb_jpeg_to_one_channel_and_gray_png_to_three() -> None:
    red = np.zeros((20, 20, 3), dtype=np.uint8)
    red[..., 0] = 255
    gray = decode_and_resize(tf.constant([_encode(red, "JPEG")]), image_size=10, channels=1).numpy()
    assert gray.shape == (1, 10, 10, 1)
    np.testing.assert_allclose(gray, 0.299, atol=0.02)  # ITU-R 601 luma of pure red
    rgb = decode_and_resize(tf.constant([_encode(np.full((8, 8), 51, np.uint8), "PNG")]), 8, channels=3).numpy()
    assert rgb.shape == (1, 8, 8, 3)
    np.testing.assert_allclose(rgb, 0.2, atol=1e-5)


def test_corrupt_bytes_fail_decoding() -> None:
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_and_resize(tf.constant([b"not an image"]), 8, 1)


@pytest.mark.slow  # a real tft_beam analysis: about 12 s
def test_preprocessing_fn_normalizes_with_dataset_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = []
    for i in range(40):
        pixels = rng.integers(0, 100, (28, 28), dtype=np.uint8) + (i % 2) * 120
        raw.append(
            {"image": _encode(pixels.astype(np.uint8), "PNG"), "label": i % 2, "label_name": [b"dark", b"light"][i % 2]}
        )
    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "label_name": tf.io.FixedLenFeature([], tf.string),
    }
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    custom_config = {TRAINING_CONFIG_KEY: TrainingConfig(image_size=28, channels=1).to_dict()}
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp"), force_tf_compat_v1=False):
        (transformed, _), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, custom_config), output_record_batches=False
        )
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / "out"))
    images = np.stack([np.asarray(r[IMAGE_XF_KEY]).reshape(28, 28, 1) for r in transformed])
    assert abs(images.mean()) < 1e-3 and abs(images.std() - 1) < 1e-2
    assert [int(r[LABEL_XF_KEY]) for r in transformed] == [i % 2 for i in range(40)]
    output = tft.TFTransformOutput(str(tmp_path / "out"))
    assert parse_class_vocabulary(output.vocabulary_by_name(CLASS_VOCAB_NAME)) == ["dark", "light"]


def test_class_vocabulary_must_be_contiguous_and_consistent() -> None:
    assert parse_class_vocabulary([b"1:b", b"0:a", "2:c"]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="every class present"):
        parse_class_vocabulary(["0:a", "2:c"])
    with pytest.raises(ValueError, match="two names"):
        parse_class_vocabulary(["0:a", "0:b"])
