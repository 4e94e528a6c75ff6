"""Read TFMA evaluation results into plain dicts for model cards and reports.

An evaluation's ``metrics-*.tfrecord`` and ``plots-*.tfrecord`` hold TFMA's ``MetricsForSlice`` and
``PlotsForSlice`` protos, which need only protobuf. They are read here directly: TFMA's own readers
come with its package, whose import loads TensorFlow and Beam (about 5 s), which ``twinflow history``
would spend on reading a few records.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from twinflow.core import fs

# EvalConfig metric names → the names twinflow reports.
REPORTED_METRICS = {
    "sparse_categorical_accuracy": "accuracy",
    "sparse_categorical_crossentropy": "loss",
    "example_count": "example_count",
}
BASELINE_MODEL_NAME = "baseline"
CONFUSION_MATRIX_FIELD = "multi_class_confusion_matrix_at_thresholds"
# What blessing and pushing judge a model by. Per-class precision is NaN for a class the model
# never predicts (0/0), which a good model may do on a small test split: it is left out of those checks.
HEADLINE_METRICS = ("accuracy", "loss")


@functools.cache
def _protos() -> ModuleType:
    """TFMA's ``metrics_for_slice_pb2`` run from its file under a private name, without TFMA's package.

    Its message classes are the ones TFMA's own import makes (protobuf keeps one class per
    descriptor in its default pool), so both readers' records compare and merge alike.
    """
    package = importlib.util.find_spec("tensorflow_model_analysis")
    assert package is not None and package.submodule_search_locations, "tensorflow-model-analysis is not installed"
    source = Path(package.submodule_search_locations[0]) / "proto" / "metrics_for_slice_pb2.py"
    spec = importlib.util.spec_from_file_location("twinflow_tfma_metrics_for_slice_pb2", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(eval_uri: str, kind: str) -> Iterator[bytes]:
    """The records of TFMA's ``<kind>*.tfrecord`` files in an evaluation (``kind``: metrics or plots).

    As ``tfma.load_metrics`` finds them: files without the suffix where none has it.
    """
    remote = fs.is_remote(eval_uri)
    find = fs.gfile().glob if remote else glob.glob
    paths = sorted(find(fs.join(eval_uri, f"{kind}*.tfrecord"))) or sorted(find(fs.join(eval_uri, f"{kind}*")))
    for path in paths:
        if remote:
            with fs.gfile().GFile(path, "rb") as handle:
                data = handle.read()
        else:
            data = Path(path).read_bytes()
        yield from _tfrecord_payloads(data, path)


def _tfrecord_payloads(data: bytes, path: str) -> Iterator[bytes]:
    """TFRecord framing: payload length (uint64, little-endian) and its CRC, the payload, the payload's CRC.

    The CRCs are not checked (TFMA wrote these files in the same pipeline); a truncated file is an error.
    """
    offset = 0
    while offset < len(data):
        if offset + 12 > len(data):
            raise ValueError(f"{path}: truncated TFRecord file (a record header is cut off at byte {offset})")
        (length,) = struct.unpack_from("<Q", data, offset)
        start = offset + 12
        if start + length + 4 > len(data):
            raise ValueError(f"{path}: truncated TFRecord file (a record of {length} bytes at byte {offset})")
        yield data[start : start + length]
        offset = start + length + 4


def load_metrics(eval_uri: str) -> Iterator[Any]:
    """The ``MetricsForSlice`` records of an evaluation, as ``tfma.load_metrics`` gives them."""
    message = _protos().MetricsForSlice
    return (message.FromString(record) for record in _records(eval_uri, "metrics"))


def load_plots(eval_uri: str) -> Iterator[Any]:
    """The ``PlotsForSlice`` records of an evaluation, as ``tfma.load_plots`` gives them."""
    message = _protos().PlotsForSlice
    return (message.FromString(record) for record in _records(eval_uri, "plots"))


def _value(metric_value: Any) -> float | None:
    if metric_value.HasField("double_value"):
        return metric_value.double_value.value
    return None


def _slice_value(single_slice_key: Any) -> str:
    kind = single_slice_key.WhichOneof("kind")
    value = getattr(single_slice_key, kind) if kind else ""
    return value.decode() if isinstance(value, bytes) else str(value)


def load_sliced_metrics(eval_uri: str) -> dict[str, dict[str, float]]:
    """Slice name ('overall' or 'label=3') → reported metrics of the candidate model."""
    result: dict[str, dict[str, float]] = {}
    for metrics_for_slice in load_metrics(eval_uri):
        parts = [f"{sk.column}={_slice_value(sk)}" for sk in metrics_for_slice.slice_key.single_slice_keys]
        name = ",".join(parts) or "overall"
        values = result.setdefault(name, {})
        for kv in metrics_for_slice.metric_keys_and_values:
            key = kv.key
            if key.model_name == BASELINE_MODEL_NAME or key.is_diff:
                continue
            reported = REPORTED_METRICS.get(key.name)
            value = _value(kv.value)
            if reported and value is not None:
                values[reported] = value
    result.setdefault("overall", {}).update(per_class_precision_recall(eval_uri))
    return result


def per_class_precision_recall(eval_uri: str) -> dict[str, float]:
    """``precision_class_<id>`` and ``recall_class_<id>`` of the candidate's top-1 predictions, overall.

    Read from the multi-class confusion matrix the Evaluator computes anyway. TFMA's binarized
    Precision and Recall would compute ten confusion matrices per example and slice in Python,
    most of an Evaluator's time, for the same counts. A class never predicted has precision
    0/0: NaN, left out of cards by ``finite_only``.
    """
    counts: dict[tuple[int, int], float] = {}
    for plots_for_slice in load_plots(eval_uri):
        if plots_for_slice.slice_key.single_slice_keys:
            continue  # the overall slice only: a per-label slice holds one actual class
        for kv in plots_for_slice.plot_keys_and_values:
            if kv.key.model_name == BASELINE_MODEL_NAME or not kv.value.HasField(CONFUSION_MATRIX_FIELD):
                continue
            (matrix,) = getattr(kv.value, CONFUSION_MATRIX_FIELD).matrices  # one threshold: top-1
            for entry in matrix.entries:
                counts[entry.actual_class_id, entry.predicted_class_id] = entry.num_weighted_examples
    classes = sorted({class_id for pair in counts for class_id in pair if class_id >= 0})  # -1: no prediction
    metrics: dict[str, float] = {}
    for class_id in classes:
        right = counts.get((class_id, class_id), 0.0)
        predicted = sum(n for (_, p), n in counts.items() if p == class_id)
        actual = sum(n for (a, _), n in counts.items() if a == class_id)
        metrics[f"precision_class_{class_id}"] = right / predicted if predicted else math.nan
        metrics[f"recall_class_{class_id}"] = right / actual if actual else math.nan
    return metrics


def load_overall_metrics(eval_uri: str) -> dict[str, float]:
    return load_sliced_metrics(eval_uri).get("overall", {})


def non_finite_headline(metrics: dict[str, float]) -> list[str]:
    """The headline metrics that are NaN or infinite: such a model is never blessed or pushed."""
    return [name for name in HEADLINE_METRICS if name in metrics and not math.isfinite(metrics[name])]


def finite_only(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics that have a value (strict JSON has no NaN); undefined ones are left out."""
    return {name: value for name, value in metrics.items() if math.isfinite(value)}
