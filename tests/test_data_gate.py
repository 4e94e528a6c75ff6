"""DataGate: real TFDV statistics and validation against the curated schema, then the gate."""

from pathlib import Path

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import writer_utils

from twinflow.components.data_gate.executor import Executor, check
from twinflow.components.image_example_gen.executor import make_example
from twinflow.core.errors import DataAnomaliesError
from twinflow.schemas import default_schema_path

pytestmark = pytest.mark.slow  # real TFDV statistics and validation: seconds each


def _stats(tmp_path: Path, examples: list[tf.train.Example]) -> object:
    path = str(tmp_path / "data.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for example in examples:
            writer.write(example.SerializeToString())
    return tfdv.generate_statistics_from_tfrecord(
        path,
        output_path=str(tmp_path / "data_stats.tfrecord"),
        stats_options=tfdv.StatsOptions(enable_semantic_domain_stats=True),
    )


def _png() -> bytes:
    return tf.io.encode_png(tf.zeros([4, 4, 1], tf.uint8)).numpy()


def _good_examples(n: int = 20) -> list[tf.train.Example]:
    return [
        make_example(
            _png(),
            i % 10,
            ["Ankle_boot", "Bag", "Coat", "Dress", "Pullover", "Sandal", "Shirt", "Sneaker", "T-shirt_top", "Trouser"][
                i % 10
            ],
            f"x/{i}.png",
        )
        for i in range(n)
    ]


def _run_gate(tmp_path: Path, anomalies_by_split: dict) -> None:
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path / "anomalies")
    artifact.split_names = artifact_utils.encode_split_names(list(anomalies_by_split))
    for split, anomalies in anomalies_by_split.items():
        split_dir = Path(artifact_utils.get_split_uri([artifact], split))
        split_dir.mkdir(parents=True)
        writer_utils.write_anomalies(str(split_dir / DEFAULT_FILE_NAME), anomalies)
    Executor().Do({"anomalies": [artifact]}, {}, {})


@pytest.fixture(scope="module")
def schema() -> object:
    return tfdv.load_schema_text(str(default_schema_path()))


def test_clean_data_passes(tmp_path: Path, schema: object) -> None:
    anomalies = tfdv.validate_statistics(_stats(tmp_path, _good_examples()), schema)
    _run_gate(tmp_path, {"train": anomalies, "eval": anomalies})  # no exception


def test_wrong_typed_label_stops_the_run(tmp_path: Path, schema: object) -> None:
    examples = _good_examples()
    for example in examples:
        del example.features.feature["label"].int64_list.value[:]
        example.features.feature["label"].bytes_list.value.append(b"3")
    anomalies = tfdv.validate_statistics(_stats(tmp_path, examples), schema)
    with pytest.raises(DataAnomaliesError, match=r"split 'train', feature 'label' \[.*\]") as err:
        _run_gate(tmp_path, {"train": anomalies})
    assert "the run stops before Transform" in str(err.value)


def test_unknown_class_and_out_of_range_label_are_both_named(tmp_path: Path, schema: object) -> None:
    examples = [*_good_examples(), make_example(_png(), 10, "Zebra", "Zebra/0.png")]
    anomalies = tfdv.validate_statistics(_stats(tmp_path, examples), schema)
    with pytest.raises(DataAnomaliesError) as err:
        check({"eval": anomalies})
    message = str(err.value)
    assert "feature 'label_name' [ENUM_TYPE_UNEXPECTED_STRING_VALUES]" in message and "Zebra" in message
    assert "feature 'label' [INT_TYPE_BIG_INT]" in message
    assert message.startswith("data validation found 2 anomalies")
