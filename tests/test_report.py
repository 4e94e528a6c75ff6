"""The report's pages, rendered from a constructed comparison: what a reader sees and can read."""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinflow.core.statistics import compare

CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]
PER_CLASS = 60


def _write_test_split(folder: Path, labels: np.ndarray) -> str:
    """An ImageExampleGen-like output holding only ``Split-test``: the examples the thumbnails are read from."""
    import tensorflow as tf
    from PIL import Image

    from twinflow.core.contract import FILENAME_KEY, IMAGE_KEY, LABEL_KEY, LABEL_NAME_KEY

    split = folder / "Split-test"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for index, label in enumerate(labels):
            buffer = io.BytesIO()
            Image.fromarray(np.full((8, 8), 25 * int(label), np.uint8)).save(buffer, "PNG")
            feature = {
                IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()])),
                LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                LABEL_NAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[CLASSES[label].encode()])),
                FILENAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"test/{index}.png".encode()])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(folder)


def constructed_report(tmp_path: Path) -> dict[str, Any]:
    """Two models on 600 test images that differ strongly on Pullover only (and weakly, by chance, on Coat)."""
    labels = np.repeat(np.arange(len(CLASSES)), PER_CLASS)
    first, second = labels.copy(), labels.copy()
    for label in range(len(CLASSES)):  # in every class: 3 mistakes both make, 2 of each model's own
        rows = np.flatnonzero(labels == label)
        first[rows[:5]] = second[rows[:3]] = second[rows[5:7]] = (label + 1) % len(CLASSES)
    pullover, coat = (np.flatnonzero(labels == CLASSES.index(name))[10:] for name in ("Pullover", "Coat"))
    second[pullover[:25]] = CLASSES.index("Shirt")  # 27 against 2 discordant: p = 1.6e-6, significant after Holm
    second[coat[:9]] = CLASSES.index("Shirt")  # 11 against 2: p = 0.022, but 0.2 after Holm's x9
    comparison = compare(("keras", "lightning"), labels, (first, second), CLASSES)
    comparison["disagreement_files"] = [f"test/{i}.png" for i in comparison["disagreements"]]
    comparison["confident_mistakes"] = {"keras": [0, 1], "lightning": [0, 1]}
    comparison["labels"] = labels.tolist()
    comparison["examples_uri"] = _write_test_split(tmp_path / "examples", labels)
    history = [{"loss": 1 - e / 10, "accuracy": 0.7 + e / 20, "val_loss": 0.8, "val_accuracy": 0.8} for e in range(4)]
    rows = [
        {
            "framework": name,
            "train_accuracy": 0.95,
            "eval_accuracy": 0.9,
            "test_accuracy": float((predicted == labels).mean()),
            "test_loss": 0.3,
            "training_seconds": 12.0,
            "images_per_second": 3000.0,
            "parameters": 1_630_090,
            "model_size_bytes": 6_520_000,
            "device": "CPU",
            "blessed": True,
            "pushed": True,
            "epochs_run": 4,
            "history": history,
            "per_class_accuracy": {n: float((predicted[labels == i] == i).mean()) for i, n in enumerate(CLASSES)},
        }
        for name, predicted in (("keras", first), ("lightning", second))
    ]
    return {
        "pipeline": "twinflow",
        "run_id": "constructed",
        "wall_seconds": 60.0,
        "components": [{"id": "Trainer_keras", "state": "COMPLETE", "seconds": 12.0}],
        "frameworks": rows,
        "comparison": comparison,
        "config": {"pipeline_name": "twinflow"},
    }


def test_significant_classes_are_listed_under_the_verdict_with_holm(tmp_path: Path) -> None:
    from twinflow.pipelines.report.html import render_html
    from twinflow.pipelines.report.markdown import to_markdown

    report = constructed_report(tmp_path)
    comparison = report["comparison"]
    coat = comparison["per_class"]["Coat"]
    assert coat["p_value"] < 0.05 < coat["p_value_holm"]  # significant alone, not among ten classes
    assert comparison["significant_classes"] == ["Pullover"]

    markdown = to_markdown(report)
    after_verdict = markdown.split(f"**{comparison['verdict']}.**", 1)[1]
    findings = after_verdict.split("\n| ", 1)[0]  # what stands between the verdict and the table
    assert "1 of 10 per-class differences in recall are significant at 5% after Holm's correction" in findings
    assert re.search(
        r"- \*\*Pullover: \+41\.67 pp \(95% CI \+\d+\.\d\d to \+\d+\.\d\d pp; McNemar p = 1\.6e-06, "
        r"Holm-adjusted p = 1\.6e-05\)\*\*",
        findings,
    )
    assert "Coat" not in findings
    assert "| **recall Pullover** (significant) |" in markdown and "| recall Coat |" in markdown

    page = render_html(report)
    verdict_at, summary_at = page.index(comparison["verdict"]), page.index("<h2>Summary</h2>")
    listed = page[page.index('id="significant-classes"') : summary_at]
    assert verdict_at < page.index('id="significant-classes"') < summary_at
    assert "<li><b>Pullover: +41.67 pp" in listed and "Coat" not in listed
    assert '<tr class="significant"><td>Pullover</td>' in page and '<tr class="significant"><td>Coat</td>' not in page
    methods = page.index('id="methods"')  # the methods note sits under the per-class table, above plots and config
    assert "Holm" in page[methods : methods + 800] and methods < page.index("<h2>Confusion matrices</h2>")
    assert methods < page.index("<h2>Config</h2>")


def test_without_a_significant_class_the_report_says_so(tmp_path: Path) -> None:
    from twinflow.pipelines.report.markdown import to_markdown

    labels = np.repeat(np.arange(3), 20)
    report = constructed_report(tmp_path)
    report["comparison"] = compare(("keras", "lightning"), labels, (labels, labels), ["a", "b", "c"])
    assert "No per-class difference is significant at 5% after Holm's correction over 3 classes." in to_markdown(report)


def test_train_accuracy_is_labelled_as_a_clean_pass(tmp_path: Path) -> None:
    from twinflow.pipelines.report.html import render_html
    from twinflow.pipelines.report.markdown import to_markdown

    report = constructed_report(tmp_path)
    markdown, page = to_markdown(report), render_html(report)
    assert "| framework | train acc (clean pass) |" in markdown and "<th>train acc (clean pass)</th>" in page
    for text in (markdown, page):
        assert "Train acc (clean pass): the final model" in text and "running mean over that epoch" in text


def _contrast(first: tuple[float, ...], second: tuple[float, ...]) -> float:
    """WCAG contrast ratio of two sRGB colours (1 to 21; 4.5 is the bar for normal text)."""

    def luminance(rgb: tuple[float, ...]) -> float:
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_every_confusion_count_is_readable_on_its_cell(tmp_path: Path) -> None:
    from matplotlib.colors import to_rgba

    from twinflow.pipelines.report.html import confusion_figure

    comparison = constructed_report(tmp_path)["comparison"]
    figure = confusion_figure(comparison)
    axes = [ax for ax in figure.axes if ax.images]
    assert len(axes) == 2
    for ax, name in zip(axes, comparison["frameworks"], strict=True):
        matrix = np.asarray(comparison["confusion"][name])
        image = ax.images[0]
        shown = {}
        for text in ax.texts:
            column, row = (round(v) for v in text.get_position())
            shown[row, column] = text.get_text()
            cell = image.to_rgba(matrix[row, column])
            contrast = _contrast(to_rgba(text.get_color()), cell)
            assert contrast >= 4.5, (name, row, column, text.get_color(), cell, contrast)
            assert text.get_fontsize() >= 8
        assert shown == {(i, j): str(n) for (i, j), n in np.ndenumerate(matrix) if n}  # every count, once


CROWDED = [  # two clusters of nearly equal latency and accuracy, as real runs give them
    ("keras", "float", 1.62, 0.9121),
    ("keras", "int8", 1.58, 0.9118),
    ("keras", "prune", 1.60, 0.9124),
    ("lightning", "float", 0.26, 0.9140),
    ("lightning", "int8", 0.255, 0.9139),
    ("lightning", "prune", 0.262, 0.9141),
]


@pytest.mark.parametrize("points", [CROWDED, CROWDED[3:], [(f, v, 0.5, 0.9) for f, v, _, _ in CROWDED]])
def test_variant_labels_do_not_overlap(points: list[tuple[str, str, float, float]]) -> None:
    from twinflow.pipelines.report.html import label_box, variants_figure

    variants = [
        {"framework": f, "variant": v, "model": f"{f}-{v}", "p50_ms_b1_t1": ms, "test_accuracy": acc}
        for f, v, ms, acc in points
    ]
    figure = variants_figure(variants)
    figure.set_dpi(90)  # as report.html saves it
    renderer = figure.canvas.get_renderer()
    (ax,) = figure.axes
    labels = [text for text in ax.texts if text.get_text()]
    assert sorted(t.get_text() for t in labels) == sorted(f if v == "float" else f"{f}-{v}" for f, v, _, _ in points)
    boxes = [label_box(text, renderer) for text in labels]  # the letters, not the leader line
    frame = ax.get_window_extent(renderer)
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    for (first, a), (second, b) in itertools.combinations(zip(labels, boxes, strict=True), 2):
        assert not a.overlaps(b), (first.get_text(), second.get_text())


def test_a_models_size_is_measured_one_way(tmp_path: Path) -> None:
    """The card's size (the results table) and the variants benchmark (the variants table) count the same files."""
    from tests.helpers import make_card
    from twinflow.core.model_card import artifact_size, write_model_card
    from twinflow.trainers.variants import artifact_sizes

    onnx = tmp_path / "lightning"
    (onnx / "transform_graph" / "transform_fn").mkdir(parents=True)
    (onnx / "transform_graph" / "transform_fn" / "saved_model.pb").write_bytes(b"t" * 30_000)
    (onnx / "model.onnx").write_bytes(b"w" * 6_520_000)
    card = make_card("lightning").model_copy(update={"format": "onnx", "artifact": "model.onnx"})
    card = card.model_copy(
        update={"transform_graph": "transform_graph", "size_bytes": artifact_size(str(onnx), "model.onnx")}
    )
    write_model_card(str(onnx), card)
    assert card.size_bytes == artifact_sizes(str(onnx))[0] == 6_520_000

    saved = tmp_path / "keras"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"g" * 1_000)
    (saved / "variables" / "variables.data-00000-of-00001").write_bytes(b"w" * 5_000)
    (saved / "statistics.json").write_text("{}")  # what a push adds beside the model is not the model
    write_model_card(str(saved), make_card("keras").model_copy(update={"size_bytes": artifact_size(str(saved), ".")}))
    assert artifact_size(str(saved), ".") == artifact_sizes(str(saved))[0] == 6_000


def test_report_output_that_is_a_file_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from twinflow.pipelines.cli.main import main

    taken = tmp_path / "notes.txt"
    taken.write_text("not a folder")
    where = ("--pipeline-root", str(tmp_path / "pipeline"), "--metadata-path", str(tmp_path / "metadata.sqlite"))
    for output in (taken, taken / "report"):
        assert main(["report", "--output", str(output), *where]) == 2
        error = capsys.readouterr().err
        assert error == (
            f"twinflow report: error: --output {output}: {taken} is a file, not a folder; "
            "pass a folder for the rebuilt report\n"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing created, the store not opened
