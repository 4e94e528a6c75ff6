"""Trainers by name. Adding a framework means one module with ``run_fn`` and one entry here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainerPlugin:
    """How the pipeline trains and evaluates one framework.

    ``run_fn`` is the TFX Trainer entry point (a dotted path). Models saved as TF
    SavedModels are evaluated through ``signature_name``; anything else names an
    ``evaluator_module`` exposing TFMA's ``custom_eval_shared_model`` and
    ``custom_extractors`` hooks.
    """

    name: str
    run_fn: str
    signature_name: str | None = None
    evaluator_module: str | None = None


TRAINERS: dict[str, TrainerPlugin] = {
    "keras": TrainerPlugin(name="keras", run_fn="trainers.keras_trainer.run_fn", signature_name="serving_default"),
    "lightning": TrainerPlugin(
        name="lightning", run_fn="trainers.lightning_trainer.run_fn", evaluator_module="trainers.lightning_evaluation"
    ),
}


def get_trainer(name: str) -> TrainerPlugin:
    try:
        return TRAINERS[name]
    except KeyError:
        raise ValueError(f"unknown trainer {name!r}; registered: {sorted(TRAINERS)}") from None
