"""A third framework for the tests: softmax regression in Keras, registered by one registry entry.

It shows that a framework is one trainer module plus one entry in ``twinflow.core.registry``: this
module reads the same Transform output and writes the same model card and serving export.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from twinflow.core.contract import CLASS_VOCAB_NAME
from twinflow.core.model_card import ModelCard, TrainingSummary, artifact_size, write_model_card
from twinflow.core.registry import FrameworkPlugin
from twinflow.trainers.common import Stopwatch, input_contract, parse_class_vocabulary, split_metrics, training_config
from twinflow.trainers.keras_trainer import SERVING_EXAMPLES_SIGNATURE, export_serving_model, input_fn

PLUGIN = FrameworkPlugin(name="dummy", run_fn="tests.dummy_framework.run_fn", signature_name=SERVING_EXAMPLES_SIGNATURE)


def run_fn(fn_args: FnArgs) -> None:
    config = training_config(fn_args.custom_config)
    tf.keras.utils.set_random_seed(config.seed)
    transform_output = tft.TFTransformOutput(fn_args.transform_output)
    class_names = parse_class_vocabulary(transform_output.vocabulary_by_name(CLASS_VOCAB_NAME))
    train = input_fn(fn_args.train_files, fn_args.data_accessor, transform_output, config, training=True)
    evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, transform_output, config, training=False)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(config.image_size, config.image_size, config.channels), name="image_xf"),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(len(class_names)),
        ]
    )
    model.compile(
        optimizer=tf.keras.optimizers.Adam(config.learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    stopwatch = Stopwatch()
    history = model.fit(train, epochs=config.epochs, verbose=0)
    stopwatch.end_epoch()
    train_loss, train_accuracy = model.evaluate(train, verbose=0)
    eval_loss, eval_accuracy = model.evaluate(evaluation, verbose=0)
    export_serving_model(model, transform_output, class_names, fn_args.serving_model_dir)
    card = ModelCard(
        framework=PLUGIN.name,
        format="saved_model",
        artifact=".",
        signatures=[SERVING_EXAMPLES_SIGNATURE],
        class_names=class_names,
        input_contract=input_contract(config),
        architecture="softmax_regression",
        parameters=int(model.count_params()),
        training=TrainingSummary(
            config=config,
            device="CPU",
            epochs_run=len(history.history["loss"]),
            **stopwatch.summary(),
            train=split_metrics(train_loss, train_accuracy),
            eval=split_metrics(eval_loss, eval_accuracy),
        ),
        size_bytes=artifact_size(fn_args.serving_model_dir, "."),
    )
    write_model_card(fn_args.serving_model_dir, card)
