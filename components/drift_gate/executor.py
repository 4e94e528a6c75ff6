"""Compare the new train split with what each served model was trained on; stop the run on drift.

The baseline of a served version is the train-split statistics the pusher copied into it
(``twinflow.model_store.layout.BASELINE_STATISTICS``). TFDV measures each drift comparator of the schema
(L-infinity, Jensen-Shannon, the number of examples); only those measurements count here:
schema anomalies are the DataGate's. Frameworks served from the same training data share
one baseline, so each distinct baseline is compared once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact

from twinflow.core import fs
from twinflow.core.contract import DRIFT_REPORT_FILE, LABEL_NAME_KEY
from twinflow.core.errors import ConfigError, DataDriftError, InputDataError, ModelCardError
from twinflow.core.model_card import read_model_card
from twinflow.model_store.layout import BASELINE_STATISTICS, served_version

STATISTICS_FILE = "FeatureStats.pb"
NEW_DATA_SPLIT = "train"
VERDICT_PROPERTY = "drift_verdict"
NO_BASELINE, NO_DRIFT, DRIFT_ACCEPTED, DRIFT = "no baseline", "no drift", "drift accepted", "drift"
ACCEPT_HINT = "pass --accept-drift to train on it anyway (recorded in the history)"

_Type = anomalies_pb2.AnomalyInfo.Type
_FEATURE_DRIFT = {
    _Type.COMPARATOR_L_INFTY_HIGH,
    _Type.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH,
    _Type.COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH,
}
_DATASET_DRIFT = {_Type.COMPARATOR_LOW_NUM_EXAMPLES, _Type.COMPARATOR_HIGH_NUM_EXAMPLES}
_BASELINE_LACKS = {_Type.COMPARATOR_CONTROL_DATA_MISSING}
_Measurement = anomalies_pb2.DriftSkewInfo.Measurement
# The schema's names for TFDV's measurements (what a reader finds in schema.pbtxt).
COMPARATORS = {
    _Measurement.L_INFTY: "infinity_norm",
    _Measurement.JENSEN_SHANNON_DIVERGENCE: "jensen_shannon_divergence",
    _Measurement.NORMALIZED_ABSOLUTE_DIFFERENCE: "normalized_abs_difference",
}
_MEASURE_NAMES = {
    "infinity_norm": "L-infinity",
    "jensen_shannon_divergence": "Jensen-Shannon",
    "normalized_abs_difference": "normalized difference",
    "num_examples_drift_comparator": "ratio",
}
NUM_EXAMPLES = "num_examples"


@dataclass
class Baseline:
    """One distinct baseline file and every framework served from it."""

    content: bytes
    served: dict[str, int] = field(default_factory=dict)  # framework → served version number
    path: str = ""

    def describe(self) -> str:
        return _versions(self.served)


def load_statistics(path: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A binary DatasetFeatureStatisticsList (what StatisticsGen writes and the pusher copies), any file system."""
    with fs.gfile().GFile(path, "rb") as handle:
        return statistics_pb2.DatasetFeatureStatisticsList.FromString(handle.read())


def load_schema(artifact: Artifact) -> schema_pb2.Schema:
    """The schema text file in a Schema artifact (ImportSchemaGen writes schema.pbtxt)."""
    io = fs.gfile()
    names = [name for name in io.listdir(artifact.uri) if name.endswith(".pbtxt")]
    if len(names) != 1:
        raise InputDataError(f"expected one schema .pbtxt file in {artifact.uri}, found {sorted(names) or 'none'}")
    return text_format.Parse(fs.read_text(fs.join(artifact.uri, names[0])), schema_pb2.Schema())


def schema_classes(schema: schema_pb2.Schema) -> list[str] | None:
    """The label_name domain: the classes the schema accepts (None when it names no domain)."""
    for feature in schema.feature:
        if feature.name != LABEL_NAME_KEY:
            continue
        if feature.HasField("string_domain"):
            return list(feature.string_domain.value)
        for domain in schema.string_domain:
            if domain.name == feature.domain:
                return list(domain.value)
    return None


def find_baselines(
    serving_dir: str, model_names: list[str], classes: list[str] | None, notes: list[str]
) -> list[Baseline]:
    """The served versions' baselines, one per distinct content; why a framework has none goes in ``notes``."""
    io = fs.gfile()
    by_content: dict[str, Baseline] = {}
    for name in model_names:
        version = served_version(fs.join(serving_dir, name)) if serving_dir else None
        if version is None:
            notes.append(f"{name}: no served version, nothing to compare with")
            continue
        try:
            served_classes = read_model_card(version.path).class_names
        except ModelCardError as err:
            notes.append(f"{name} v{version.number}: not compared, its model card is unreadable ({err})")
            continue
        if classes is not None and set(served_classes) != set(classes):
            notes.append(
                f"{name} v{version.number}: not compared, it serves other classes ({', '.join(served_classes)}) "
                f"than the schema's ({', '.join(classes)}): a different task, not drift"
            )
            continue
        path = fs.join(version.path, BASELINE_STATISTICS)
        if not io.exists(path):
            notes.append(f"{name} v{version.number}: no baseline statistics ({BASELINE_STATISTICS}), not compared")
            continue
        with io.GFile(path, "rb") as handle:
            content = handle.read()
        try:
            statistics_pb2.DatasetFeatureStatisticsList.FromString(content)
        except DecodeError:
            notes.append(f"{name} v{version.number}: baseline statistics {path} are unreadable, not compared")
            continue
        baseline = by_content.setdefault(hashlib.sha256(content).hexdigest(), Baseline(content, path=path))
        baseline.served[name] = version.number
    return list(by_content.values())


def measurements(anomalies: anomalies_pb2.Anomalies) -> list[dict[str, Any]]:
    """Every comparator's distance and threshold, drifted or not (what a threshold review needs)."""
    return [
        {
            "feature": ".".join(info.path.step),
            "comparator": COMPARATORS.get(m.type, _Measurement.Type.Name(m.type)),
            "distance": m.value,
            "threshold": m.threshold,
        }
        for info in anomalies.drift_skew_info
        for m in info.drift_measurements
    ]


def drift_of(
    anomalies: anomalies_pb2.Anomalies,
    schema: schema_pb2.Schema,
    new: statistics_pb2.DatasetFeatureStatisticsList,
    baseline: statistics_pb2.DatasetFeatureStatisticsList,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Drift anomalies only, as (drifted features with distance and threshold, features the baseline lacks)."""
    measured = measurements(anomalies)
    drifted: list[dict[str, Any]] = []
    lacking = []
    for name, info in sorted(anomalies.anomaly_info.items()):
        kinds = {reason.type for reason in info.reason}
        if kinds & _BASELINE_LACKS:
            lacking.append(name)
        if kinds & _FEATURE_DRIFT:
            drifted += [m for m in measured if m["feature"] == name and m["distance"] > m["threshold"]]
    kinds = {reason.type for reason in anomalies.dataset_anomaly_info.reason}
    if kinds & _DATASET_DRIFT:
        bounds = schema.dataset_constraints.num_examples_drift_comparator
        now, before = new.datasets[0].num_examples, baseline.datasets[0].num_examples
        low = _Type.COMPARATOR_LOW_NUM_EXAMPLES in kinds
        drifted.append(
            {
                "feature": NUM_EXAMPLES,
                "comparator": "num_examples_drift_comparator",
                "distance": now / before if before else float(now),
                "threshold": bounds.min_fraction_threshold if low else bounds.max_fraction_threshold,
                "examples": now,
                "baseline_examples": before,
            }
        )
    return drifted, lacking


def describe(drift: dict[str, Any]) -> str:
    """``image_mean: Jensen-Shannon 0.310 > threshold 0.07``, in the direction that was crossed."""
    measure = _MEASURE_NAMES.get(drift["comparator"], drift["comparator"])
    crossed = "<" if drift["feature"] == NUM_EXAMPLES and drift["distance"] < drift["threshold"] else ">"
    text = f"{drift['feature']}: {measure} {drift['distance']:.3f} {crossed} threshold {drift['threshold']:g}"
    if drift["feature"] == NUM_EXAMPLES:
        text += f" ({drift['examples']:,} train examples, the baseline had {drift['baseline_examples']:,})"
    return text


def compare(
    new: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    serving_dir: str,
    model_names: list[str],
    accept_drift: bool,
) -> dict[str, Any]:
    """The drift report (what drift.json holds); the verdict is "drift" when drift is not accepted."""
    import tensorflow_data_validation as tfdv  # heavy: only where statistics are compared

    notes: list[str] = []
    baselines = find_baselines(serving_dir, model_names, schema_classes(schema), notes)
    drifted: list[dict[str, Any]] = []
    measured: list[dict[str, Any]] = []
    for baseline in baselines:
        previous = statistics_pb2.DatasetFeatureStatisticsList.FromString(baseline.content)
        anomalies = tfdv.validate_statistics(new, schema, previous_statistics=previous)
        found, lacking = drift_of(anomalies, schema, new, previous)
        if lacking:
            notes.append(
                f"{baseline.describe()}: the baseline has no statistics for {', '.join(lacking)}, not compared"
            )
        drifted += [{**d, "compared_with": dict(baseline.served)} for d in found]
        measured += [{**m, "compared_with": dict(baseline.served)} for m in measurements(anomalies)]
    if not baselines:
        verdict = NO_BASELINE
    elif not drifted:
        verdict = NO_DRIFT
    else:
        verdict = DRIFT_ACCEPTED if accept_drift else DRIFT
    return {
        "verdict": verdict,
        "accepted": bool(drifted) and accept_drift,
        "baselines": [
            {
                "frameworks": list(b.served),
                "version": next(iter(b.served.values())),
                "versions": dict(b.served),
                "path": b.path,
            }
            for b in baselines
        ],
        "drifted": drifted,
        "measured": measured,
        "notes": notes,
    }


def drift_message(report: dict[str, Any]) -> str:
    """Every drifted feature with distance and threshold, listed per baseline compared, and the way past.

    Features are counted once however many served models they were compared with (one line each).
    """
    features = drifted_features(report)
    lines = [f"{describe(d)} (compared with {_versions(d['compared_with'])})" for d in report["drifted"]]
    compared = "; ".join(f"{_versions(b['versions'])} at {b['path']}" for b in report["baselines"])
    return (
        f"the new data drifted from what the served model was trained on ({len(features)} feature"
        f"{'' if len(features) == 1 else 's'} past the schema's thresholds: {', '.join(features)}); "
        "the run stops before Transform:\n  - "
        + "\n  - ".join(lines)
        + f"\nBaseline statistics: {compared}.\nReview the new data; {ACCEPT_HINT}."
    )


def drifted_features(report: dict[str, Any]) -> list[str]:
    """The drifted features, each once, in the order first reported (one feature can drift from several baselines)."""
    return list(dict.fromkeys(d["feature"] for d in report["drifted"]))


def _versions(served: dict[str, int]) -> str:
    return ", ".join(f"{name} v{number}" for name, number in served.items())


def summary_line(report: dict[str, Any]) -> str:
    """One line for the run log."""
    verdict = report["verdict"]
    if verdict == NO_BASELINE:
        return f"[drift] {verdict}: " + ("; ".join(report["notes"]) or "no framework to compare with")
    compared = "; ".join(_versions(b["versions"]) for b in report["baselines"])
    if verdict == NO_DRIFT:
        return f"[drift] {verdict} against {compared}"
    per_baseline = "; ".join(f"{_versions(d['compared_with'])} {describe(d)}" for d in report["drifted"])
    return f"[drift] {verdict} against {compared}: {', '.join(drifted_features(report))} ({per_baseline})"


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        statistics = artifact_utils.get_single_instance(input_dict["statistics"])
        schema = load_schema(artifact_utils.get_single_instance(input_dict["schema"]))
        output = artifact_utils.get_single_instance(output_dict["drift"])
        try:
            model_names = json.loads(exec_properties.get("model_names") or "[]")
        except json.JSONDecodeError:
            model_names = None
        if not isinstance(model_names, list) or not all(isinstance(n, str) for n in model_names):
            raise ConfigError(
                f"DriftGate model_names must be a JSON list of names, got {exec_properties.get('model_names')!r}"
            )
        path = fs.join(artifact_utils.get_split_uri([statistics], NEW_DATA_SPLIT), STATISTICS_FILE)
        if not fs.gfile().exists(path):
            raise InputDataError(f"no statistics of the {NEW_DATA_SPLIT} split at {path}: nothing to check for drift")
        report = compare(
            load_statistics(path),
            schema,
            str(exec_properties.get("serving_dir") or ""),
            model_names,
            bool(int(exec_properties.get("accept_drift") or 0)),
        )
        fs.gfile().makedirs(output.uri)
        fs.write_text(fs.join(output.uri, DRIFT_REPORT_FILE), json.dumps(report, indent=1) + "\n")
        output.split_names = artifact_utils.encode_split_names([])
        output.set_string_custom_property(VERDICT_PROPERTY, report["verdict"])
        print(summary_line(report), flush=True)
        if report["verdict"] == DRIFT:
            raise DataDriftError(drift_message(report), report)
