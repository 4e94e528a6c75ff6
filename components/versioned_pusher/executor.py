"""Push a blessed model, keep a few versions, record every decision with its reasons and figures.

Champion/challenger is judged by the Evaluator (twinflow.components.finite_evaluator.promotion): it
compared the model with what the serving folder serves on the same test examples, and its
blessing says which version that was. The pusher pushes a blessed model only while that
version is still the one served (else it refuses: run again), and records the judgement's
words and figures in the decision record and the console. No TFX resolver anywhere, so it is
the same on every runner, Kubeflow too. Publishing itself (staging, rename, marker) is in
``publish``, shared with rollbacks.
"""

from __future__ import annotations

import json
from typing import Any

from tfx.components.evaluator import constants as evaluator_constants
from tfx.components.pusher import executor as tfx_pusher
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact
from tfx.utils import path_utils as tfx_path_utils

from twinflow.components.finite_evaluator import promotion
from twinflow.components.tfma_results import finite_only, load_overall_metrics, non_finite_headline
from twinflow.core import fs
from twinflow.core.errors import ModelCardError
from twinflow.core.model_card import TrainingData, VariantInfo, read_model_card
from twinflow.core.repeats import Candidate, choose_best, describe_choice
from twinflow.model_store.decisions import write_decision
from twinflow.model_store.layout import (
    BASELINE_STATISTICS,
    CANARY,
    STABLE,
    Version,
    read_labels,
    served_version,
    write_labels,
)
from twinflow.model_store.publish import (
    STAGING_PREFIX,
    find_pushed,
    next_version,
    publish,
    remove_abandoned,
    remove_oldest,
)

__all__ = ["STAGING_PREFIX", "Executor", "find_pushed", "next_version", "push", "stale_judgement", "training_data"]

DEFAULT_KEEP_VERSIONS = 5
TRAIN_STATISTICS = "Split-train/FeatureStats.pb"
CURRENT_MODEL_ID = evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY


def push(
    source: str,
    model_root: str,
    evaluation: dict[str, float],
    *,
    data: TrainingData | None = None,
    decision: str | None = None,
    baseline_statistics: str | None = None,
    variant: VariantInfo | None = None,
    run_fingerprint: str | None = None,
) -> Version:
    """Push ``source`` as a new, complete version under ``model_root``; returns it.

    ``baseline_statistics``: the train split's FeatureStats.pb, copied in as the version's drift baseline.
    """
    non_finite = non_finite_headline(evaluation)
    if non_finite:
        raise ValueError(f"refusing to push {source}: non-finite evaluation metrics {non_finite}")
    stamp: dict[str, Any] = {"source_model": str(source), "evaluation": finite_only(evaluation)}
    if data is not None:
        stamp["data"] = data.model_dump()
    if decision is not None:
        stamp["decision"] = decision
    if variant is not None:
        stamp["variant"] = variant.model_dump()
    if run_fingerprint:
        stamp["run_fingerprint"] = run_fingerprint
    extra = {BASELINE_STATISTICS: baseline_statistics} if baseline_statistics else {}
    return publish(source, model_root, stamp, extra)


def stale_judgement(judged_against: str, served: Version | None) -> str | None:
    """Why a blessing no longer applies: the Evaluator compared with another served version than the one now
    served (``judged_against``: its number, ``promotion.NOTHING_SERVED``, or "" for a variant's parent)."""
    now = str(served.number) if served is not None else promotion.NOTHING_SERVED
    if not judged_against or judged_against == now:
        return None
    was = "nothing served" if judged_against == promotion.NOTHING_SERVED else f"served version {judged_against}"
    is_now = "nothing is served" if served is None else f"version {served.number} is served"
    return f"not pushed: judged against {was}, but {is_now} now; run again to judge it against that"


def _custom(artifact: Artifact, name: str) -> str | None:
    return artifact.get_string_custom_property(name) if artifact.has_custom_property(name) else None


def training_data(examples: Artifact, run_id: str | None) -> TrainingData:
    """What ImageExampleGen recorded on its output: root, span window, version, listing fingerprint."""
    spans: list[int] = []
    try:
        parsed = json.loads(_custom(examples, "spans") or "[]")
        spans = [int(s) for s in parsed] if isinstance(parsed, list) else []
    except (ValueError, TypeError):
        spans = []
    version: int | None = None
    if "version" in examples.mlmd_artifact.properties:
        version = int(examples.version)
    elif examples.has_custom_property("span_version"):
        version = int(examples.get_custom_property("span_version"))
    return TrainingData(
        input_base=_custom(examples, "input_base") or "",
        spans=spans,
        version=version,
        fingerprint=_custom(examples, "input_fingerprint") or "",
        examples_uri=examples.uri,
        run_id=run_id,
    )


def _single(input_dict: dict[str, list[Artifact]], key: str) -> Artifact | None:
    artifacts = input_dict.get(key) or []
    return artifact_utils.get_single_instance(artifacts) if artifacts else None


def choose_repeat(input_dict: dict[str, list[Artifact]]) -> tuple[dict[str, list[Artifact]], str]:
    """With one model per repeat: the inputs narrowed to the chosen repeat's model, blessing and evaluation.

    Each blessing and evaluation names its model's id (``current_model_id``); the choice is
    twinflow.core.repeats's (blessed, best eval-split accuracy). With no repeat blessed the first stays,
    and is refused as "not blessed" as a single model would be. Returns the inputs and a line
    saying what was chosen (empty for a single model).
    """
    models = input_dict["model"]
    if len(models) < 2:
        return input_dict, ""

    def of(key: str, model: Artifact) -> Artifact:
        matches = [a for a in input_dict[key] if a.get_int_custom_property(CURRENT_MODEL_ID) == model.id]
        if len(matches) != 1:
            raise RuntimeError(f"expected one {key} for model {model.uri} (id {model.id}), found {len(matches)}")
        return matches[0]

    candidates = []
    for model in sorted(models, key=lambda m: m.id):
        training = read_model_card(tfx_path_utils.serving_model_path(model.uri)).training
        blessing = of("model_blessing", model)
        blessed = blessing.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY) == 1
        candidates.append(Candidate(model, training.config.seed, training.eval.accuracy, blessed))
    chosen = choose_best(candidates)
    model = (chosen or candidates[0]).item
    narrowed = {
        **input_dict,
        "model": [model],
        "model_blessing": [of("model_blessing", model)],
        "model_evaluation": [of("model_evaluation", model)],
    }
    return narrowed, describe_choice(chosen, candidates)


def label_push(model_root: str, version: Version, served: Version | None, canary: bool) -> dict[str, int]:
    """Labels after a push: as ``canary`` beside the served ``stable``, or (labels in use) the new ``stable``.

    Without labels and without ``canary`` nothing is written: the newest version is served.
    """
    labels = read_labels(model_root)
    if canary and served is not None:
        labels = {STABLE: served.number, CANARY: version.number}
    elif canary or labels:
        labels = {STABLE: version.number}
    else:
        return {}
    write_labels(model_root, labels)
    return labels


class Executor(tfx_pusher.Executor):
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        pushed = artifact_utils.get_single_instance(output_dict["pushed_model"])
        name = exec_properties["model_name"]
        input_dict, repeats = choose_repeat(input_dict)
        if repeats:
            print(f"[push] {name}: {repeats}", flush=True)
            pushed.set_string_custom_property("repeats", repeats)
        model_root = fs.join(exec_properties["serving_dir"], name)
        remove_abandoned(model_root)  # whatever this run decides, a dead push's leftovers go
        run_id = exec_properties.get("run_id") or (self._context.pipeline_run_id if self._context else None) or None
        examples, statistics = _single(input_dict, "examples"), _single(input_dict, "statistics")
        data = training_data(examples, run_id) if examples is not None else None
        evaluation = load_overall_metrics(artifact_utils.get_single_instance(input_dict["model_evaluation"]).uri)
        served = served_version(model_root)
        record: dict[str, Any] = {
            "framework": name,
            "run_id": run_id,
            "blessed": True,
            "pushed": False,
            "served_before": served.number if served else None,
            "evaluation": finite_only(evaluation),
            "comparison": None,
            "spans": data.spans if data else None,
            **({"repeats": repeats} if repeats else {}),
        }
        version = self._decide(input_dict, exec_properties, model_root, evaluation, served, data, statistics, record)
        if version is None:
            self._MarkNotPushed(pushed)
        else:
            fs.gfile().makedirs(pushed.uri)
            fs.write_text(fs.join(pushed.uri, "push.json"), json.dumps({"destination": version.path}))
            self._MarkPushed(pushed, pushed_destination=version.path, pushed_version=str(version.number))
        if record.get("reason"):
            pushed.set_string_custom_property("decision", str(record["reason"]))
        after = served_version(model_root)
        write_decision(model_root, {**record, "served_after": after.number if after else None})

    def _variant_parent(
        self, exec_properties: dict[str, Any], source: str, record: dict[str, Any]
    ) -> VariantInfo | None:
        """A variant's card with its float parent's served version filled in; None (and the reason in
        ``record``) when the parent is not in its serving folder, or for a float model."""
        parent_name = exec_properties.get("parent_model_name")
        if not parent_name:
            return None
        variant = read_model_card(source).variant
        if variant is None:
            raise ModelCardError(f"{source}: pushed as a variant of {parent_name}, but its model.json has no variant")
        parent = find_pushed(fs.join(exec_properties["serving_dir"], parent_name), variant.parent_model)
        if parent is None:
            reason = f"not pushed: its float parent {variant.parent_model} is not in the {parent_name} serving folder"
            record["reason"] = reason
            print(f"[push] {exec_properties['model_name']}: {reason}", flush=True)
            return None
        record["parent_version"] = parent.number
        return variant.model_copy(update={"parent_version": parent.number})

    def _decide(
        self,
        input_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
        model_root: str,
        evaluation: dict[str, float],
        served: Version | None,
        data: TrainingData | None,
        statistics: Artifact | None,
        record: dict[str, Any],
    ) -> Version | None:
        """The version this model is served as (new or already there), or None; fills ``record``'s outcome."""
        name = exec_properties["model_name"]
        judgement = promotion.read(artifact_utils.get_single_instance(input_dict["model_blessing"]))
        record["comparison"] = judgement.comparison
        if not self.CheckBlessing(input_dict):
            reason = f"not pushed: {judgement.reason or 'not blessed'}"
            record.update(blessed=False, reason=reason)
            print(f"[push] {name}: {reason}", flush=True)
            return None
        source = self.GetModelPath(input_dict)
        existing = find_pushed(model_root, source)
        if existing is not None:
            record.update(version=existing.number, reason=f"already pushed as version {existing.number}")
            print(f"[push] {name}: this model is already version {existing.number}", flush=True)
            return existing
        variant = self._variant_parent(exec_properties, source, record)
        if exec_properties.get("parent_model_name") and variant is None:
            return None
        stale = stale_judgement(judgement.served_version, served)
        if stale:
            record["reason"] = stale
            print(f"[push] {name}: {stale}", flush=True)
            return None
        reason = f"pushed: {judgement.reason}" if judgement.reason else "pushed"
        record["reason"] = reason
        baseline = fs.join(statistics.uri, *TRAIN_STATISTICS.split("/")) if statistics is not None else None
        if baseline is not None and not fs.gfile().exists(baseline):
            print(f"[push] {name}: no train-split statistics at {baseline}; no drift baseline kept", flush=True)
            baseline = None
        version = push(
            source,
            model_root,
            evaluation,
            data=data,
            decision=reason,
            baseline_statistics=baseline,
            variant=variant,
            run_fingerprint=exec_properties.get("run_fingerprint"),
        )
        record.update(pushed=True, version=version.number)
        print(f"[push] {name}: version {version.number} at {version.path} ({reason})", flush=True)
        labels = label_push(model_root, version, served, bool(exec_properties.get("canary")))
        if labels:
            record["labels"] = labels
            print(f"[push] {name}: labels {labels}", flush=True)
        keep = int(exec_properties.get("keep_versions") or DEFAULT_KEEP_VERSIONS)
        try:
            removed = remove_oldest(model_root, keep)
        except Exception as err:  # the new version is served; an old one left behind must not fail the run
            print(f"[push] {name}: could not remove old versions ({err}); remove them by hand", flush=True)
        else:
            if removed:
                print(f"[push] {name}: removed old versions {removed}, keeping {keep}", flush=True)
        return version
