"""model.json has one typed, versioned definition: it round-trips, and a malformed card is refused by name."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.helpers import make_card
from twinflow.core.errors import ModelCardError
from twinflow.core.model_card import MODEL_CARD_FILE, SCHEMA_VERSION, ModelCard, read_model_card, write_model_card


@pytest.mark.parametrize("where", ["local", "ram"])
def test_a_card_round_trips_through_the_file_layer(where: str, tmp_path: Path) -> None:
    folder = str(tmp_path / "model") if where == "local" else f"ram://cards-{uuid.uuid4().hex}/model"
    card = make_card().model_copy(update={"version": 7, "evaluation": {"accuracy": 0.91}})
    write_model_card(folder, card)
    assert read_model_card(folder) == card
    assert read_model_card(folder).schema_version == SCHEMA_VERSION == 1


def test_the_file_is_strict_json(tmp_path: Path) -> None:
    write_model_card(str(tmp_path), make_card())
    data = json.loads(Path(tmp_path, MODEL_CARD_FILE).read_text(), parse_constant=lambda c: pytest.fail(c))
    assert data["framework"] == "keras" and data["schema_version"] == 1


def _broken(tmp_path: Path, change) -> Path:
    data = json.loads(make_card().model_dump_json())
    change(data)
    Path(tmp_path, MODEL_CARD_FILE).write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("class_names"), "class_names: Field required"),
        (lambda d: d.update(parameters="many"), "parameters: Input should be a valid integer"),
        (lambda d: d["training"]["train"].update(loss=float("nan")), "training.train.loss"),
        (lambda d: d.update(schema_version=2), "schema_version: Input should be 1"),
        (lambda d: d.update(format="pickle"), "format: Input should be 'saved_model', 'onnx' or 'tflite'"),
        (lambda d: d.update(colour="blue"), "colour: Extra inputs are not permitted"),
        (lambda d: d.update(class_names=["only"]), "class_names: List should have at least 2 items"),
    ],
)
def test_a_malformed_card_is_refused_naming_the_file_and_the_field(tmp_path: Path, change, message: str) -> None:
    folder = _broken(tmp_path, change)
    with pytest.raises(ModelCardError) as err:
        read_model_card(str(folder))
    assert str(err.value).startswith(f"{folder / MODEL_CARD_FILE}: not a valid twinflow model card (schema version 1)")
    assert message in str(err.value)


def test_a_missing_or_unparsable_card_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match=r"no model card; is .* a twinflow model folder"):
        read_model_card(str(tmp_path))
    Path(tmp_path, MODEL_CARD_FILE).write_text("{not json")
    with pytest.raises(ModelCardError, match="Invalid JSON"):
        read_model_card(str(tmp_path))


def test_cards_cannot_be_built_with_nan_metrics() -> None:
    with pytest.raises(ValueError, match="finite number"):
        ModelCard.model_validate({**json.loads(make_card().model_dump_json()), "evaluation": {"loss": float("nan")}})
