"""The one EvalConfig: same metrics, slices and accuracy floor for every framework."""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from twinflow.core.config import EvaluationConfig
from twinflow.core.contract import LABEL_KEY, PROBABILITIES_KEY
from twinflow.core.registry import FrameworkPlugin

ACCURACY_METRIC = "SparseCategoricalAccuracy"


def build_eval_config(evaluation: EvaluationConfig, plugin: FrameworkPlugin) -> tfma.EvalConfig:
    """Accuracy, loss and the confusion matrix (per-class precision and recall are read from it:
    ``twinflow.components.tfma_results``); overall and per label.

    TFMA judges the floor alone (a value threshold on overall accuracy). Whether the model is
    worse than the served one is judged after TFMA, on the same test examples, by the
    Evaluator's promotion rule (twinflow.components.finite_evaluator.promotion): one rule, not two.
    """
    model_spec = tfma.ModelSpec(label_key=LABEL_KEY, prediction_key=PROBABILITIES_KEY)
    if plugin.signature_name:
        model_spec.signature_name = plugin.signature_name
    return tfma.EvalConfig(
        model_specs=[model_spec],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[LABEL_KEY])],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name="SparseCategoricalCrossentropy"),
                    tfma.MetricConfig(
                        class_name=ACCURACY_METRIC,
                        # The floor judges the overall slice; per-label slices are reported, not gated.
                        per_slice_thresholds=[
                            tfma.PerSliceMetricThreshold(
                                slicing_specs=[tfma.SlicingSpec()],
                                threshold=tfma.MetricThreshold(
                                    value_threshold=tfma.GenericValueThreshold(
                                        lower_bound={"value": evaluation.accuracy_floor}
                                    ),
                                ),
                            )
                        ],
                    ),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ]
            ),
        ],
    )
