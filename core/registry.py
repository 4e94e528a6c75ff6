"""Frameworks by name. Adding one means one folder (model, data, train, export, optimize) and one entry here.

Entries name their code by dotted path, so this table (read by the config, the pipeline,
the report and the server) never imports a framework.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameworkPlugin:
    """How the pipeline trains and evaluates one framework.

    ``run_fn`` is the TFX Trainer entry point (a dotted path). Models saved as TF
    SavedModels are evaluated through ``signature_name``; anything else names an
    ``evaluator_module`` exposing TFMA's ``custom_eval_shared_model`` and
    ``custom_extractors`` hooks. ``optimize_fn`` (a dotted path) makes the optimized
    variants (``make_variant(variant, parent_dir, output_dir, examples_uri, transform_dir,
    settings)``); a framework without one takes no ``--optimize``.
    """

    name: str
    run_fn: str
    signature_name: str | None = None
    evaluator_module: str | None = None
    optimize_fn: str | None = None

    def variant(self, name: str) -> FrameworkPlugin:
        """How a variant is evaluated: every variant (and its float baseline) through the custom
        evaluator hooks, which load any model format by its card and apply the transform graph."""
        return FrameworkPlugin(
            name=variant_name(self.name, name), run_fn=self.run_fn, evaluator_module=VARIANT_EVALUATOR
        )


VARIANT_EVALUATOR = "twinflow.trainers.custom_evaluation"


def variant_name(framework: str, variant: str) -> str:
    """The model name a variant is evaluated and pushed under: ``lightning-int8``."""
    return f"{framework}-{variant}"


FRAMEWORKS: dict[str, FrameworkPlugin] = {
    "keras": FrameworkPlugin(
        name="keras",
        run_fn="twinflow.trainers.keras.train.run_fn",
        signature_name="serving_default",
        optimize_fn="twinflow.trainers.keras.optimize.make_variant",
    ),
    "lightning": FrameworkPlugin(
        name="lightning",
        run_fn="twinflow.trainers.lightning.train.run_fn",
        evaluator_module=VARIANT_EVALUATOR,
        optimize_fn="twinflow.trainers.lightning.optimize.make_variant",
    ),
}

# The side-by-side comparison twinflow exists to produce.
BOTH = ("keras", "lightning")
ALIASES = {"both": BOTH}


def get_framework(name: str) -> FrameworkPlugin:
    try:
        return FRAMEWORKS[name]
    except KeyError:
        raise ValueError(f"unknown framework {name!r}; registered: {sorted(FRAMEWORKS)}") from None


def framework_choices() -> list[str]:
    """What ``--framework`` accepts: every registered name, 'both', 'all', or a comma-separated list."""
    return [*FRAMEWORKS, *ALIASES, "all"]


def resolve_frameworks(selection: str) -> tuple[str, ...]:
    """'both' → keras and lightning, 'all' → every registered framework, 'a,b' → those, each checked."""
    if selection == "all":
        return tuple(FRAMEWORKS)
    names = ALIASES.get(selection) or tuple(part.strip() for part in selection.split(",") if part.strip())
    if not names:
        raise ValueError("no framework named")
    unknown = [name for name in names if name not in FRAMEWORKS]
    if unknown:
        raise ValueError(f"unknown framework(s) {unknown}; choose from {framework_choices()} or a comma-separated list")
    if len(set(names)) != len(names):
        raise ValueError(f"framework {selection!r} names one twice")
    return tuple(names)
