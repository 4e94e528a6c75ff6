"""``--model-module``: your own builders, checked before training, through the whole pipeline like the twins."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import tiny_config
from twinflow.core.config import load_config
from twinflow.core.errors import ConfigError
from twinflow.trainers import user_model

MODULES = Path(__file__).with_name("user_models")
SHAPE = (28, 28, 1)


def test_a_file_and_a_dotted_module_load_with_their_builders_and_hash(tmp_path: Path) -> None:
    by_file = user_model.load_user_module(str(MODULES / "twin_module.py"))
    by_name = user_model.load_user_module("tests.user_models.twin_module")
    assert by_file.frameworks == by_name.frameworks == ("keras", "lightning")
    assert by_file.sha256 == by_name.sha256 == user_model.module_sha256(str(MODULES / "twin_module.py"))
    assert user_model.module_sha256("tests.user_models.twin_module") == by_file.sha256
    edited = tmp_path / "twin_module.py"
    shutil.copy(MODULES / "twin_module.py", edited)
    edited.write_text(edited.read_text().replace("FILTERS = 8", "FILTERS = 16"))
    assert user_model.module_sha256(str(edited)) != by_file.sha256  # an edited module is a new input


def test_both_builders_are_checked_and_counted_side_by_side() -> None:
    module = user_model.load_user_module(str(MODULES / "twin_module.py"))
    keras_model = user_model.build_keras(module, SHAPE, 3)
    torch_model = user_model.build_torch(module, SHAPE, 3)
    counts = user_model.parameter_counts(module, SHAPE, 3)
    assert counts == {
        "keras": keras_model.count_params(),
        "lightning": sum(p.numel() for p in torch_model.parameters()),
    }
    assert counts["keras"] == counts["lightning"] == 80 + 8 * 14 * 14 * 3 + 3
    assert "the same count, as twins must have" in user_model.twins_words(module, counts)


def test_mistakes_are_named_in_one_line() -> None:
    module = user_model.load_user_module(str(MODULES / "mistakes.py"))
    with pytest.raises(
        ConfigError, match=r"build_keras returned a keras\.src\..*not a tf-keras Model \(a Keras 3 model"
    ):
        user_model.build_keras(module, SHAPE, 3)
    with pytest.raises(
        ConfigError, match=r"build_torch's model answers a batch of 2 with shape \[2, 4\], expected \[2, 3\]"
    ):
        user_model.build_torch(module, SHAPE, 3)
    with pytest.raises(ConfigError, match=r"--model-module nope\.py: no such file"):
        user_model.load_user_module("nope.py")
    with pytest.raises(ConfigError, match=r"does not import: ModuleNotFoundError"):
        user_model.load_user_module("tests.user_models.absent")
    words = user_model.twins_words(module, {"keras": 10, "lightning": 12})
    assert "keras 10 parameters, lightning 12 parameters (NOT twins: their parameter counts differ)" in words
    with pytest.raises(ValueError, match="--weights and --fine-tune-blocks are for twinflow's twins"):
        load_config(overrides={"training": {"model_module": "x.py", "weights": "served"}})


def test_a_module_with_one_builder_trains_that_framework_only(tmp_path: Path, tiny_folders: Path, capsys) -> None:
    from twinflow.pipelines.run.local import with_model_module

    config = tiny_config(
        tmp_path, tiny_folders, framework="both", **{"training.model_module": str(MODULES / "keras_only.py")}
    )
    narrowed = with_model_module(config, 3)
    assert narrowed.frameworks == ("keras",)
    out = capsys.readouterr().out
    assert "trains keras only" in out and "has no builder for lightning: training keras only" in out
    with pytest.raises(ConfigError, match="builds keras, and --framework asks for lightning: nothing to train"):
        with_model_module(config.model_copy(update={"framework": "lightning"}), 3)


@pytest.mark.e2e
def test_a_user_module_with_both_builders_runs_through_the_whole_pipeline(tmp_path: Path, tiny_folders: Path) -> None:
    from twinflow.core.model_card import read_model_card
    from twinflow.model_store.layout import served_version
    from twinflow.pipelines.run.local import run_local
    from twinflow.serving.models import load_version

    spec = str(MODULES / "twin_module.py")
    config = tiny_config(
        tmp_path, tiny_folders, framework="both", **{"training.model_module": spec, "evaluation.accuracy_floor": 0.5}
    )
    report = run_local(config).to_json()
    rows = {row["framework"]: row for row in report["frameworks"]}
    assert set(rows) == {"keras", "lightning"} and "comparison" in report
    sha = user_model.module_sha256(spec)
    for framework, row in rows.items():
        assert row["architecture"] == "module twin_module" and row["blessed"] and row["pushed"], row
        version = served_version(str(Path(config.serving_dir) / framework))
        card = read_model_card(version.path)
        assert card.model_module == {"spec": spec, "sha256": sha}
        assert card.weights is not None and card.weights.kind == "the module's own initialisation"
        probabilities = load_version(version.path).predict("serving_image_bytes", [_png()])["probabilities"]
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert rows["keras"]["parameters"] == rows["lightning"]["parameters"]


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((28, 28), 200, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_model_magnitude_pruning_cannot_wrap_skips_the_prune_variant_saying_so(
    tmp_path: Path, tiny_folders: Path, capsys
) -> None:
    from twinflow.pipelines.run.local import with_model_module

    overrides = {"training.model_module": str(MODULES / "subclassed.py"), "optimization.variants": ["prune", "int8"]}
    config = with_model_module(tiny_config(tmp_path, tiny_folders, **overrides), 3)
    assert config.optimization.variants == ("int8",)
    assert "its Keras model cannot be magnitude-pruned" in capsys.readouterr().out
    twin_overrides = {**overrides, "training.model_module": str(MODULES / "twin_module.py")}
    twins = with_model_module(tiny_config(tmp_path / "twins", tiny_folders, **twin_overrides), 3)
    assert twins.optimization.variants == ("prune", "int8")
