"""Reads ExampleValidator's per-split anomalies and raises when any is present."""

from __future__ import annotations

import os
from typing import Any

from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact
from tfx.utils import io_utils

from twinflow.core.errors import DataAnomaliesError


def describe_anomalies(split: str, anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One readable line per anomaly: split, feature, short and long description."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        kinds = ", ".join(anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason) or "UNKNOWN"
        lines.append(f"split '{split}', feature '{feature}' [{kinds}]: {info.short_description}. {info.description}")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append(f"split '{split}', whole dataset: {info.short_description}. {info.description}")
    return lines


def read_anomalies(artifact: Artifact) -> dict[str, anomalies_pb2.Anomalies]:
    """Split name → Anomalies proto, as written by ExampleValidator."""
    result = {}
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), DEFAULT_FILE_NAME)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(io_utils.read_bytes_file(path))
        result[split] = anomalies
    return result


LABEL_FEATURES = ("label", "label_name")
SCHEMA_HINT = (
    "The classes do not match the schema. For your own images, draft a schema from the folders, review it, "
    "and pass it: twinflow draft-schema --data-dir DATA --out schemas/NAME/schema.pbtxt, then --schema that file"
)


def check(anomalies_by_split: dict[str, anomalies_pb2.Anomalies]) -> None:
    lines = [line for split, a in sorted(anomalies_by_split.items()) for line in describe_anomalies(split, a)]
    if lines:
        labels_off = any(f in a.anomaly_info for a in anomalies_by_split.values() for f in LABEL_FEATURES)
        raise DataAnomaliesError(
            f"data validation found {len(lines)} anomal{'y' if len(lines) == 1 else 'ies'}; "
            "the run stops before Transform:\n  - " + "\n  - ".join(lines) + (f"\n{SCHEMA_HINT}" if labels_off else "")
        )


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        anomalies = read_anomalies(artifact_utils.get_single_instance(input_dict["anomalies"]))
        check(anomalies)
        logging.info("DataGate: no anomalies in splits %s", sorted(anomalies))
