"""A pretrained-backbone twin through the whole pipeline: MobileNetV2 in both frameworks, from a seeded start
identical in both, then warm-started from what is served (one framework's weights ported into the other twin).

Tiny generated images at 32 px (the smallest MobileNetV2 takes), width 0.35, two epochs: the accuracy floor is
0 here, the point is that every stage takes the backbone (Transform's raw pixels, both trainers, the Evaluator,
the pusher, the serving loaders) and that the cards say where each model's weights came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import tiny_config
from twinflow.core.config import PipelineConfig
from twinflow.core.model_card import read_model_card
from twinflow.model_store.layout import complete_versions, served_version

pytestmark = pytest.mark.e2e

BACKBONE = {
    "framework": "both",
    "training.architecture": "mobilenet_v2",
    "training.width_multiplier": 0.35,
    "training.image_size": 32,
    "training.epochs": 2,
    "evaluation.accuracy_floor": 0.0,
    "evaluation.max_accuracy_drop": 1.0,  # any served model may be replaced: the rule is tested elsewhere
}


@pytest.fixture(scope="module")
def backbone_runs(tmp_path_factory: pytest.TempPathFactory, tiny_folders: Path) -> tuple[PipelineConfig, dict, dict]:
    """A seeded start, then a warm start from the Keras model it served: (config of the second, both reports)."""
    from twinflow.pipelines.run.local import run_local

    root = tmp_path_factory.mktemp("backbone")
    first = tiny_config(root, tiny_folders, **BACKBONE)
    seeded = run_local(first).to_json()
    warm = first.model_copy(
        update={
            "training": first.training.model_copy(
                update={"weights": "served:keras", "fine_tune_blocks": 2, "fine_tune_epochs": 1}
            )
        }
    )
    return warm, seeded, run_local(warm).to_json()


def _card(config: PipelineConfig, framework: str):
    version = served_version(str(Path(config.serving_dir) / framework))
    assert version is not None, f"nothing of {framework} served"
    return version, read_model_card(version.path)


def test_a_seeded_backbone_trains_evaluates_and_pushes_in_both_frameworks(backbone_runs) -> None:
    _, seeded, _ = backbone_runs
    rows = {row["framework"]: row for row in seeded["frameworks"]}
    assert set(rows) == {"keras", "lightning"}
    for row in rows.values():
        assert row["status"] == "trained" and row["architecture"] == "mobilenet_v2"
        assert row["test_accuracy"] is not None and row["blessed"] and row["pushed"]
    # The same network in both: the same parameter count, as Keras counts it (batch norm statistics included).
    assert rows["keras"]["parameters"] == rows["lightning"]["parameters"]
    assert "comparison" in seeded  # the paired comparison of the two on the same test images


def test_cards_say_where_the_weights_came_from_and_which_phases_ran(backbone_runs) -> None:
    config, _, warm = backbone_runs
    assert all(row["pushed"] for row in warm["frameworks"]), warm["frameworks"]
    _, keras_card = _card(config, "keras")
    _, lightning_card = _card(config, "lightning")
    first_keras = read_model_card(complete_versions(str(Path(config.serving_dir) / "keras"))[0].path)
    assert first_keras.weights is not None and first_keras.weights.kind == "seeded"
    for card in (keras_card, lightning_card):
        weights = card.weights
        assert weights is not None and weights.source == "served:keras"
        assert weights.kind == "keras_saved_model" and weights.framework == "keras"
        assert weights.sha256 and weights.note and "keras's served version" in weights.note
        assert [phase.name for phase in card.training.phases] == ["head (backbone frozen)", "top 2 blocks"]
        assert card.training.phases[1].learning_rate == pytest.approx(card.training.config.learning_rate * 0.1)
    assert keras_card.weights.ported_to == [] and lightning_card.weights.ported_to == ["torch"]  # ported across
    assert (Path(_card(config, "lightning")[0].path) / "state_dict.pt").is_file()  # a warm start's source


def test_the_served_backbones_answer_raw_image_bytes(backbone_runs, tmp_path: Path) -> None:
    """The serving loaders (what `twinflow serve` runs) take encoded images; the model scales the pixels itself."""
    from twinflow.serving.models import load_version

    config, _, _ = backbone_runs
    images = []
    for value in (30, 220):
        path = tmp_path / f"{value}.png"
        Image.fromarray(np.full((28, 28), value, dtype=np.uint8)).save(path)
        images.append(path.read_bytes())
    for framework in ("keras", "lightning"):
        version, card = _card(config, framework)
        model = load_version(version.path)
        probabilities = model.predict("serving_image_bytes", images)["probabilities"]
        assert probabilities.shape == (2, len(card.class_names))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    report = json.loads((Path(config.pipeline_root) / "reports").glob("*/report.json").__next__().read_text())
    assert report["config"]["training"]["architecture"] == "mobilenet_v2"
