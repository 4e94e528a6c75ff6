"""Keras trainer pieces on real Transform output: the twin model and the input function."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from twinflow.core.config import TrainingConfig
from twinflow.trainers.keras.data import input_fn
from twinflow.trainers.keras.model import augment, build_model


def test_twin_cnn_has_the_reference_parameter_count() -> None:
    assert build_model("twin_cnn", 28, 1, 10).count_params() == 421_642


def _collect(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def test_input_fn_reads_transform_output_only(transform_outputs: dict) -> None:
    tf_transform_output = tft.TFTransformOutput(transform_outputs["transform_graph"])
    config = TrainingConfig(batch_size=16, augment=())
    files, accessor = transform_outputs["files"]["train"], transform_outputs["data_accessor"]
    dataset = input_fn(files, accessor, tf_transform_output, config, training=False)
    first_images, first_labels = next(iter(dataset))
    assert first_images.shape[1:] == (28, 28, 1) and first_images.dtype == tf.float32
    assert first_labels.dtype == tf.int64 and first_labels.shape == (16,)
    images, labels = _collect(dataset)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert abs(images.mean()) < 0.1 and abs(images.std() - 1) < 0.1  # tft normalization, train split
    again_images, again_labels = _collect(input_fn(files, accessor, tf_transform_output, config, training=False))
    np.testing.assert_array_equal(labels, again_labels)  # evaluation order is stable
    np.testing.assert_array_equal(images, again_images)


def test_training_input_is_shuffled_and_augmented_with_labels_kept(transform_outputs: dict) -> None:
    tf_transform_output = tft.TFTransformOutput(transform_outputs["transform_graph"])
    files, accessor = transform_outputs["files"]["train"], transform_outputs["data_accessor"]
    clean_images, clean_labels = _collect(
        input_fn(files, accessor, tf_transform_output, TrainingConfig(augment=()), training=False)
    )
    train_images, train_labels = _collect(
        input_fn(files, accessor, tf_transform_output, TrainingConfig(), training=True)
    )
    assert sorted(train_labels.tolist()) == sorted(clean_labels.tolist())
    assert train_labels.tolist() != clean_labels.tolist()  # shuffled
    assert not np.allclose(np.sort(train_images.ravel()), np.sort(clean_images.ravel()))  # augmented


def test_augment_flips_or_shifts_each_image_within_bounds() -> None:
    images = tf.random.stateless_normal([64, 5, 5, 1], seed=[1, 2])
    out = augment(images, seed=3).numpy()
    source = images.numpy()
    for original, changed in zip(source, out, strict=True):
        shift_plain = (changed - original).mean()
        shift_flip = (changed - original[:, ::-1]).mean()
        residual = min(
            np.abs(changed - original - shift_plain).max(), np.abs(changed - original[:, ::-1] - shift_flip).max()
        )
        assert residual < 1e-5  # a pure shift of the image or of its mirror
        assert abs(shift_plain if np.abs(changed - original - shift_plain).max() < 1e-5 else shift_flip) <= 0.2 + 1e-6


def test_augmentations_are_a_list_each_doing_only_its_part() -> None:
    images = tf.random.stateless_normal([64, 5, 5, 1], seed=[1, 2])
    source = images.numpy()
    flipped = augment(images, seed=3, augmentations=("flip",)).numpy()
    for original, changed in zip(source, flipped, strict=True):  # identical or mirrored, never shifted
        assert np.array_equal(changed, original) or np.array_equal(changed, original[:, ::-1])
    assert any(not np.array_equal(c, o) for o, c in zip(source, flipped, strict=True))
    shifted = augment(images, seed=3, augmentations=("brightness",)).numpy()
    deltas = (shifted - source).reshape(64, -1)
    assert np.allclose(deltas, deltas[:, :1], atol=1e-6) and np.abs(deltas).max() <= 0.2 + 1e-6  # a shift only
    np.testing.assert_array_equal(augment(images, seed=3, augmentations=()).numpy(), source)


def test_a_diverging_loss_stops_training_and_writes_no_model(transform_outputs: dict, tmp_path) -> None:
    from tests.helpers import trainer_fn_args
    from twinflow.core.errors import TrainingDivergedError
    from twinflow.trainers.keras.train import run_fn

    fn_args = trainer_fn_args(transform_outputs, tmp_path, learning_rate=1e12, optimizer="sgd", epochs=2)
    with pytest.raises(TrainingDivergedError, match=r"keras training diverged: the loss is (nan|inf) in epoch 1"):
        run_fn(fn_args)
    assert not tf.io.gfile.exists(f"{fn_args.serving_model_dir}/model.json")


def test_autograph_leaves_tf_keras_internals_alone_as_it_does_keras() -> None:
    """Without the rule AutoGraph rewrote tf-keras's train step source by source (~30 s per Trainer here)."""
    import tf_keras
    from tensorflow.python.autograph.core import config as autograph_config
    from tensorflow.python.autograph.impl import conversion

    from twinflow.trainers.keras.train import skip_autograph_for_tf_keras

    skip_autograph_for_tf_keras()  # what run_fn and make_variant do first (importing them changes nothing)
    assert conversion.is_allowlisted(tf_keras.Model.train_step)
    assert conversion.is_allowlisted(tf_keras.layers.Conv2D.call)
    assert not conversion.is_allowlisted(augment)  # the project's own graph code is still converted
    rules = autograph_config.CONVERSION_RULES
    skip_autograph_for_tf_keras()
    assert rules == autograph_config.CONVERSION_RULES  # once only
