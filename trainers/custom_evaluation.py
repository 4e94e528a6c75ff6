"""TFMA hooks for models TFMA cannot run itself, called by the TFX Evaluator through ``module_path``.

These hooks load a serving directory by its model card (``twinflow.trainers.classifier``: Lightning's
model.onnx, the Keras int8 variant's model.tflite, each behind its transform_graph/; or a
SavedModel, the pruned Keras variant) and predict inside TFMA's Beam pipeline, so torch
models and optimized variants meet exactly the same EvalConfig, metrics, slices and
thresholds as Keras. Every model is fed raw serialized examples and applies the Transform
graph itself: a TFLite model never meets TFMA's own TFLite extractor, which would fill its
missing ``image_xf`` input with -1.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import tensorflow_model_analysis as tfma

from twinflow.trainers.formats.load import load_classifier

PREDICT_STAGE_NAME = "CustomPredict"


def custom_eval_shared_model(
    eval_saved_model_path: str, model_name: str, eval_config: tfma.EvalConfig | None, **kwargs: Any
) -> tfma.types.EvalSharedModel:
    """TFX hook: ``eval_saved_model_path`` is the model's serving directory (Format-Serving).

    The model type is generic: TFMA would take a Keras SavedModel (a TFLite variant's baseline)
    for one it runs itself and ask it for compiled metrics; here it only predicts.
    """
    shared = tfma.default_eval_shared_model(
        eval_saved_model_path=eval_saved_model_path,
        model_name=model_name,
        eval_config=eval_config,
        custom_model_loader=tfma.ModelLoader(construct_fn=functools.partial(load_classifier, eval_saved_model_path)),
        **kwargs,
    )
    return shared._replace(model_type=tfma.constants.TF_GENERIC)


@beam.typehints.with_input_types(tfma.types.Extracts)
@beam.typehints.with_output_types(tfma.types.Extracts)
class CustomPredictDoFn(tfma.utils.DoFnWithModels):
    """Adds each model's class probabilities to a batched extract, computed from its raw examples.

    As in TFMA's own predictions extractor, a single model's prediction is stored directly
    and several models' (candidate and baseline) in a dict keyed by model name; each is a
    dict keyed by its ModelSpec's ``prediction_key`` when the spec names one.
    """

    def __init__(self, eval_shared_models: dict[str, tfma.types.EvalSharedModel], prediction_keys: dict[str, str]):
        super().__init__({name: model.model_loader for name, model in eval_shared_models.items()})
        self._prediction_keys = prediction_keys

    def process(self, element: tfma.types.Extracts) -> Iterator[tfma.types.Extracts]:
        serialized = element[tfma.INPUT_KEY]
        predictions: dict[str, Any] = {}
        for name, model in self._loaded_models.items():
            probabilities = model.predict_examples(serialized)
            key = self._prediction_keys.get(name, "")
            predictions[name] = {key: probabilities} if key else probabilities
        result = copy.copy(element)
        result[tfma.PREDICTIONS_KEY] = predictions[""] if list(predictions) == [""] else predictions
        yield result


def custom_extractors(
    eval_shared_model: tfma.types.MaybeMultipleEvalSharedModels,
    eval_config: tfma.EvalConfig,
    tensor_adapter_config: Any = None,
) -> list[tfma.extractors.Extractor]:
    """TFX hook: TFMA's default extractors with this predictor in place of TensorFlow's."""
    # One model is named '' (TFMA's convention, which its metrics follow when looking predictions up).
    models = {m.model_name: m for m in tfma.utils.verify_and_update_eval_shared_models(eval_shared_model) or []}
    specs = list(eval_config.model_specs)
    keys = {("" if len(specs) == 1 else spec.name): spec.prediction_key for spec in specs}
    predict = tfma.extractors.Extractor(
        stage_name=PREDICT_STAGE_NAME, ptransform=beam.ParDo(CustomPredictDoFn(models, keys))
    )
    return tfma.default_extractors(
        eval_shared_model=eval_shared_model,
        eval_config=eval_config,
        tensor_adapter_config=tensor_adapter_config,
        custom_predict_extractor=predict,
    )
