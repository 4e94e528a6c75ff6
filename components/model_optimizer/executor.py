"""Make one variant of the float model the pusher would choose, and hand its parent on for the comparison.

The framework's own code does the optimizing (``optimize_fn``, a dotted path from
twinflow.core.registry, called like a Trainer's ``run_fn``), so this component imports no framework.
"""

from __future__ import annotations

from typing import Any

from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact
from tfx.utils import import_utils
from tfx.utils import path_utils as tfx_path_utils

from twinflow.components.versioned_pusher.executor import choose_repeat
from twinflow.core import fs
from twinflow.core.config import OptimizationConfig


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        framework, variant = exec_properties["framework"], exec_properties["variant"]
        narrowed, choice = choose_repeat(input_dict)
        parent = artifact_utils.get_single_instance(narrowed["model"])
        blessing = artifact_utils.get_single_instance(narrowed["model_blessing"])
        blessed = blessing.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY) == 1
        parent_dir = tfx_path_utils.serving_model_path(parent.uri)
        print(f"[optimize] {framework}-{variant}: from {parent_dir}{f' ({choice})' if choice else ''}", flush=True)
        if not blessed:
            print(f"[optimize] {framework}-{variant}: its float parent is not blessed; the variant cannot be pushed")

        parent_copy = artifact_utils.get_single_instance(output_dict["parent_model"])
        fs.copy_tree(parent_dir, tfx_path_utils.serving_model_path(parent_copy.uri))  # the Evaluator's reference
        parent_copy.set_int_custom_property("parent_model_id", parent.id or 0)

        output = artifact_utils.get_single_instance(output_dict["variant_model"])
        module, _, name = exec_properties["optimize_fn"].rpartition(".")
        make_variant = import_utils.import_func_from_module(module, name)
        card = make_variant(
            variant,
            parent_dir,
            tfx_path_utils.serving_model_path(output.uri),
            artifact_utils.get_single_instance(input_dict["transformed_examples"]).uri,
            artifact_utils.get_single_instance(input_dict["transform_graph"]).uri,
            OptimizationConfig.model_validate_json(exec_properties["settings"]),
        )
        output.set_string_custom_property("variant", variant)
        output.set_int_custom_property("parent_model_id", parent.id or 0)
        output.set_int_custom_property("parent_blessed", int(blessed))
        if card.variant is not None and card.variant.sparsity is not None:
            output.set_float_custom_property("sparsity", card.variant.sparsity)
