"""Both trainers' input: held in memory under the budget, streamed above it, with the same results semantics;
the training-step stopwatch; the shared learning-rate schedule; the regularized twin."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import torch

from tests.helpers import trainer_fn_args
from twinflow.core.config import TrainingConfig
from twinflow.core.model_card import read_model_card
from twinflow.trainers import base
from twinflow.trainers import stopwatch as timing
from twinflow.trainers.keras import data as keras_data
from twinflow.trainers.keras import model as keras_twin
from twinflow.trainers.keras import train as keras_train
from twinflow.trainers.lightning import data as lightning_data
from twinflow.trainers.lightning import model as lightning_model
from twinflow.trainers.lightning import train as lightning_train
from twinflow.trainers.lightning.parameters import count_parameters
from twinflow.trainers.transformed_data import shuffle_buffer_size


def _split(transform_outputs: dict, config: TrainingConfig, budget_bytes: float) -> keras_data.TransformedSplit:
    return keras_data.TransformedSplit(
        transform_outputs["files"]["train"],
        transform_outputs["data_accessor"],
        tft.TFTransformOutput(transform_outputs["transform_graph"]),
        config,
        budget_bytes,
    )


def _collect(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def _sorted_rows(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1)
    return flat[np.lexsort(flat.T[::-1])]


def test_keras_streams_over_the_budget_and_yields_the_same_examples(transform_outputs: dict) -> None:
    config = TrainingConfig(batch_size=16, augment=(), memory_budget_mb=0.1)
    held, streamed = _split(transform_outputs, config, float("inf")), _split(transform_outputs, config, 1000)
    assert not held.streamed and held.held_bytes > 1000
    assert streamed.streamed and streamed.held_bytes == 0
    clean_held, clean_streamed = _collect(held.dataset(False)), _collect(streamed.dataset(False))
    np.testing.assert_array_equal(clean_held[1], clean_streamed[1])  # evaluation order is the file order in both
    np.testing.assert_array_equal(clean_held[0], clean_streamed[0])
    counter = tf.Variable(0, dtype=tf.int64)
    training = streamed.dataset(True, images_seen=counter)  # fit iterates one dataset once per epoch
    first, second = _collect(training), _collect(training)
    assert int(counter.numpy()) == 2 * len(clean_held[1])  # counted in the graph, every image once per pass
    assert first[1].tolist() != clean_held[1].tolist() and first[1].tolist() != second[1].tolist()  # reshuffled
    np.testing.assert_array_equal(_sorted_rows(first[0]), _sorted_rows(clean_held[0]))  # the same examples


def test_keras_held_training_data_is_one_iterator_of_whole_reshuffled_epochs(transform_outputs: dict) -> None:
    config = TrainingConfig(batch_size=16, augment=())
    held = _split(transform_outputs, config, float("inf"))
    clean_images, clean_labels = _collect(held.dataset(False))
    steps = held.steps_per_epoch()
    assert steps == -(-len(clean_labels) // 16)
    assert len(list(held.dataset(True))) == steps  # one epoch unless repeated (input_fn's contract)
    batches = iter(held.dataset(True, repeat=True))  # fit keeps this one iterator for every epoch
    epochs = [_collect(itertools.islice(batches, steps)) for _ in range(2)]
    for images, labels in epochs:  # each epoch ends with its own short batch and holds every example once
        assert len(labels) == len(clean_labels)
        np.testing.assert_array_equal(_sorted_rows(images), _sorted_rows(clean_images))
    assert epochs[0][1].tolist() != epochs[1][1].tolist()  # reshuffled
    streamed = _split(transform_outputs, config, 1000)
    assert streamed.streamed and streamed.steps_per_epoch() is None  # streamed: one pass per epoch, fit counts


def test_lightning_streams_over_the_budget_with_the_same_clean_batches(transform_outputs: dict, tmp_path: Path) -> None:
    tft_output = tft.TFTransformOutput(transform_outputs["transform_graph"])
    modules = {}
    for budget in (4096, 0.1):
        fn_args = trainer_fn_args(transform_outputs, tmp_path / str(budget))
        config = transform_outputs["config"].training.model_copy(update={"memory_budget_mb": budget, "augment": ()})
        modules[budget] = lightning_data.TransformedDataModule(fn_args, tft_output, config)
        modules[budget].setup("fit")
    held, streamed = modules[4096], modules[0.1]
    assert held.input_mode == "memory" and streamed.input_mode == "stream" and streamed.train is None
    for split in ("train", "eval"):
        a = [torch.cat(parts) for parts in zip(*held.clean_batches(split), strict=True)]
        b = [torch.cat(parts) for parts in zip(*streamed.clean_batches(split), strict=True)]
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
        torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)
    loader = streamed.train_dataloader()  # Lightning asks once per fit and iterates it every epoch
    epochs = [torch.cat([y for _, y in loader]) for _ in range(2)]
    assert sorted(epochs[0].tolist()) == sorted(held.train[1].tolist())
    assert epochs[0].tolist() != epochs[1].tolist()  # a new shuffle each epoch


@pytest.mark.parametrize("framework", ["keras", "lightning"])
def test_trainer_streams_above_its_budget_and_still_learns(
    framework: str, transform_outputs: dict, tmp_path: Path
) -> None:
    run_fn = keras_train.run_fn if framework == "keras" else lightning_train.run_fn
    fn_args = trainer_fn_args(transform_outputs, tmp_path, epochs=3, memory_budget_mb=0.1)
    run_fn(fn_args)
    training = read_model_card(fn_args.serving_model_dir).training
    assert training.input_mode == "stream"
    assert training.eval.accuracy > 0.5  # 3 easy classes: chance is a third
    assert training.images_per_second > 0 and training.overhead_seconds_per_epoch > 0


def test_shuffle_buffer_stays_within_a_quarter_of_the_budget() -> None:
    assert shuffle_buffer_size(49_160, 4096 * 2**20) == 10_000
    assert shuffle_buffer_size(49_160, 64 * 2**20) == 341  # 64x64x3 float32 examples, 16 MB for the buffer
    assert shuffle_buffer_size(49_160, 2**20) == 256  # never below a useful minimum


def test_stopwatch_counts_training_steps_only(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 1.0, 5.0, 7.0, 7.5, 11.5, 13.0])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    stopwatch = timing.Stopwatch()  # 0.0
    for steps_start in range(2):
        stopwatch.start_epoch()  # 1.0, then 7.5
        stopwatch.end_training_steps()  # 5.0, then 11.5: validation starts
        stopwatch.end_epoch({"loss": 1.0}, images=800 * (steps_start + 1))  # 7.0, then 13.0
    assert stopwatch.epochs == [(800, 7.0, 4.0), (1600, 6.0, 4.0)]
    assert stopwatch.images_per_second == 400  # the second epoch: 1600 images in 4 s of steps
    assert stopwatch.first_epoch_images_per_second == 200
    assert stopwatch.overhead_seconds_per_epoch == 2.0


def test_cosine_schedule_falls_from_the_rate_to_a_tenth() -> None:
    rates = [base.scheduled_learning_rate(1e-3, e, 6, "cosine") for e in range(6)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert all(a > b for a, b in itertools.pairwise(rates))
    assert base.scheduled_learning_rate(1e-3, 3, 6, "constant") == 1e-3


def test_lightning_twin_steps_the_same_rates_as_keras() -> None:
    module = lightning_model.TwinClassifier("tiny_cnn", 8, 1, 3, learning_rate=2e-3, lr_schedule="cosine", epochs=5)
    configured = module.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = [base.scheduled_learning_rate(2e-3, e, 5, "cosine") for e in range(5)]
    assert seen == pytest.approx(expected)


def test_dropout_twin_matches_across_frameworks_and_is_off_at_inference() -> None:
    keras_model = keras_twin.build_model("twin_cnn_dropout", 28, 1, 10)
    torch_model = lightning_model.build_model("twin_cnn_dropout", 28, 1, 10)
    assert keras_model.count_params() == count_parameters(torch_model) == 421_642
    assert [type(m).__name__ for m in torch_model if isinstance(m, torch.nn.Dropout)] == ["Dropout", "Dropout"]
    images = tf.random.stateless_normal([4, 28, 28, 1], seed=[1, 2])
    np.testing.assert_array_equal(keras_model(images, training=False), keras_model(images, training=False))
    torch_model.eval()
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(torch_model(x), torch_model(x), rtol=0, atol=0)
