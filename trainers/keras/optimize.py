"""The Keras model's optimized variants: magnitude pruning (tfmot) and full-integer int8 (TFLite).

``make_variant`` is the optimizer component's entry point for Keras (see twinflow.core.registry). The
pruned variant is a SavedModel with the parent's signatures (transform graph inside); the
int8 variant is a TFLite file reading ``image_xf`` beside a copy of the transform graph,
calibrated on train-split images only.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tensorflow_transform as tft

from twinflow.core import fs
from twinflow.core.config import OptimizationConfig
from twinflow.core.contract import IMAGE_XF_KEY, TFLITE_FILE, TRANSFORM_GRAPH_DIR
from twinflow.core.model_card import ModelCard, VariantInfo, read_model_card
from twinflow.trainers.keras.export import export_serving_model
from twinflow.trainers.keras.model import augment
from twinflow.trainers.keras.train import skip_autograph_for_tf_keras
from twinflow.trainers.transformed_data import SHUFFLE_BUFFER_MAX
from twinflow.trainers.variants import finish_variant, kernel_sparsity, read_transformed_split

FINE_TUNE_LEARNING_RATE_SCALE = 0.1  # fine-tuning starts from a trained model: a tenth of its learning rate
PRUNING_FREQUENCY = 10  # steps between mask updates: the first is at step 0, so even a tiny fine-tune is pruned


def _kernels(model: tf.keras.Model) -> list:
    return [
        layer.kernel.numpy()
        for layer in model.layers
        if isinstance(layer, tf.keras.layers.Conv2D | tf.keras.layers.Dense)
    ]


def prune(model: tf.keras.Model, card: ModelCard, train: tuple, settings: OptimizationConfig) -> tf.keras.Model:
    """Every conv and dense kernel pruned to ``sparsity`` by magnitude, fine-tuned with masks kept, then stripped."""
    config = card.training.config
    schedule = tfmot.sparsity.keras.ConstantSparsity(settings.sparsity, begin_step=0, frequency=PRUNING_FREQUENCY)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(
        optimizer=tf.keras.optimizers.Adam(config.learning_rate * FINE_TUNE_LEARNING_RATE_SCALE),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    images, labels = train
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    dataset = dataset.shuffle(SHUFFLE_BUFFER_MAX, seed=config.seed).batch(config.batch_size)
    if config.augment:
        dataset = dataset.map(lambda x, y: (augment(x, config.seed, config.augment), y))
    pruned.fit(
        dataset.prefetch(tf.data.AUTOTUNE),
        epochs=settings.fine_tune_epochs,
        verbose=2,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    return tfmot.sparsity.keras.strip_pruning(pruned)


def int8_tflite(model: tf.keras.Model, calibration: tf.Tensor) -> bytes:
    """Full-integer TFLite (int8 weights and activations, float input and output) over ``image_xf``."""
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name=IMAGE_XF_KEY)
    probabilities = tf.function(lambda image_xf: tf.nn.softmax(model(image_xf, training=False)), input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([probabilities.get_concrete_function()], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def make_variant(
    variant: str, parent_dir: str, output_dir: str, examples_uri: str, transform_dir: str, settings: OptimizationConfig
) -> ModelCard:
    """Write ``variant`` of the Keras model in ``parent_dir`` to ``output_dir`` (model.json included)."""
    skip_autograph_for_tf_keras()
    card = read_model_card(parent_dir)
    tf.keras.utils.set_random_seed(card.training.config.seed)
    model = tf.keras.models.load_model(parent_dir, compile=False)
    if variant == "prune":
        train = read_transformed_split(examples_uri, "train", transform_dir)
        pruned = prune(model, card, train, settings)
        export_serving_model(pruned, tft.TFTransformOutput(transform_dir), card.class_names, output_dir)
        info = VariantInfo(
            name="prune",
            parent_framework=card.framework,
            parent_model=parent_dir,
            method=f"tfmot magnitude pruning to {settings.sparsity:.0%} per conv/dense kernel, "
            f"{settings.fine_tune_epochs} fine-tuning epoch(s)",
            sparsity=kernel_sparsity(_kernels(pruned)),
            fine_tune_epochs=settings.fine_tune_epochs,
        )
        variant_card = card.model_copy(update={"variant": info})
        timing_images = train[0][:64]
    elif variant == "int8":
        calibration, _ = read_transformed_split(examples_uri, "train", transform_dir, limit=settings.calibration_images)
        fs.gfile().makedirs(output_dir)
        with fs.gfile().GFile(fs.join(output_dir, TFLITE_FILE), "wb") as handle:
            handle.write(int8_tflite(model, tf.constant(calibration)))
        fs.copy_tree(transform_dir, fs.join(output_dir, TRANSFORM_GRAPH_DIR))
        info = VariantInfo(
            name="int8",
            parent_framework=card.framework,
            parent_model=parent_dir,
            method="TFLite full-integer post-training quantization (int8 weights and activations, float I/O)",
            calibration_images=len(calibration),
        )
        variant_card = card.model_copy(
            update={
                "format": "tflite",
                "artifact": TFLITE_FILE,
                "signatures": [],
                "transform_graph": TRANSFORM_GRAPH_DIR,
                "variant": info,
            }
        )
        timing_images = calibration[:64]
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return finish_variant(variant_card, parent_dir, output_dir, timing_images, settings)
