"""``report.html``: the run's comparison as one self-contained page (plots and thumbnails inline, no network).

Rendered from report.json's content (``Report.to_json()``) and, for thumbnails, the run's test examples.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from twinflow.pipelines.report.markdown import (
    METHODS_NOTE,
    MODEL_SIZE_NOTE,
    TRAIN_ACCURACY_NOTE,
    interval_text,
    number,
    percent,
    significant_class_findings,
)

TEMPLATE = Path(__file__).with_name("templates") / "report.html.j2"

THUMBNAILS = 60
VARIANTS_NOTE = "Circle: the float model; triangle: int8; square: pruned. One colour per framework."
CURVES_NOTE = (
    "Train accuracy here is what the trainer logged during each epoch: a running mean over the epoch's batches, "
    "with augmentation and dropout on. The summary's train acc (clean pass) is the final model on the whole train "
    "split afterwards, in inference mode."
)


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _relative_luminance(rgba: tuple[float, ...]) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0 black to 1 white)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def text_colour_on(rgba: tuple[float, ...]) -> str:
    """Black or white, whichever contrasts more with a cell of this colour (at least 4.6:1 on any colour)."""
    luminance = _relative_luminance(rgba)
    return "black" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "white"


def confusion_figure(comparison: dict[str, Any]) -> Any:
    """Both frameworks' confusion matrices side by side, every count written in its cell in the colour
    that reads best on it (white on the dark diagonal, black on the pale rest)."""
    plt = _pyplot()
    names, classes = comparison["frameworks"], comparison["class_names"]
    fontsize = max(5, min(12, 90 // len(classes)))  # 9 points for ten classes, larger for fewer
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.8))  # 1,080 pixels wide at 90 dpi: the page's width
    for ax, name in zip(axes, names, strict=True):
        matrix = np.asarray(comparison["confusion"][name])
        image = ax.imshow(matrix, cmap="Blues")
        ax.set_title(f"{name}: rows true, columns predicted")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=9)
        ax.set_yticks(range(len(classes)), classes, fontsize=9)
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                colour = text_colour_on(image.to_rgba(count))
                ax.text(j, i, str(count), ha="center", va="center", fontsize=fontsize, color=colour)
    fig.tight_layout()
    return fig


def variants_figure(variants: list[dict[str, Any]]) -> Any:
    """Test accuracy against batch-1 latency, one labelled point per model (float and variants)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    frameworks = sorted({v["framework"] for v in variants})
    markers = {"float": "o", "prune": "s", "int8": "^"}
    points, labels = [], []
    for v in variants:
        color = f"C{frameworks.index(v['framework'])}"
        point = (v["p50_ms_b1_t1"], 100 * v["test_accuracy"])
        ax.scatter(*point, color=color, marker=markers.get(v["variant"], "x"), zorder=3)
        points.append(point)
        labels.append(v["framework"] if v["variant"] == "float" else v["model"])
    latencies = [x for x, _ in points]
    log_scale = max(latencies) >= 3 * min(latencies)  # a log axis over a narrow range has no ticks to label
    if log_scale:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 0.1, 0.2, 0.5, 1 ...: labels that never touch
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(0.25)  # room for labels beside the outermost points
    ax.set_xlabel(f"p50 latency, batch 1, 1 thread (ms{', log scale' if log_scale else ''})")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against latency: float and optimized variants")
    fig.tight_layout()
    place_labels(ax, points, labels)
    return fig


# Where a label may go around its point (unit directions), tried nearest first, then farther out.
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))
_DISTANCES = (5, 12, 20, 30, 42, 56, 72)  # points
_MARKER_HALF = 4.0  # points: the part around each marker a label must not cover


def label_box(text: Any, renderer: Any) -> Any:
    """The letters' box of an annotation, without its leader line (``Annotation`` adds the line's extent)."""
    from matplotlib.text import Text

    text.update_positions(renderer)  # where the offset puts it at the figure's current size and resolution
    return Text.get_window_extent(text, renderer)


def place_labels(ax: Any, points: list[tuple[float, float]], labels: list[str], fontsize: float = 8) -> None:
    """Label each point where the label covers no other label, no marker, and stays inside the axes.

    Points of near-equal latency and accuracy (a model and its variants) would put fixed-offset
    labels on top of each other: each label takes the nearest free spot around its point, joined
    to it by a thin line when it had to move away. Measured on the drawn figure, in display units.
    """
    figure = ax.figure
    renderer = figure.canvas.get_renderer()
    to_pixels = figure.dpi / 72
    frame = ax.get_window_extent(renderer)
    centres = ax.transData.transform(points)
    half = _MARKER_HALF * to_pixels
    taken = [(x - half, y - half, x + half, y + half) for x, y in centres]

    def free(box: Any) -> bool:
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        return inside and not any(
            box.x0 < x1 and x0 < box.x1 and box.y0 < y1 and y0 < box.y1 for x0, y0, x1, y1 in taken
        )

    for point, label in zip(points, labels, strict=True):
        chosen = None
        for distance in _DISTANCES:
            for dx, dy in _DIRECTIONS:
                text = ax.annotate(
                    label,
                    point,
                    xytext=(dx * distance, dy * distance),
                    textcoords="offset points",
                    fontsize=fontsize,
                    ha={1: "left", -1: "right", 0: "center"}[dx],
                    va={1: "bottom", -1: "top", 0: "center"}[dy],
                    arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6} if distance > _DISTANCES[1] else None,
                )
                box = label_box(text, renderer)
                if free(box):
                    chosen = box
                    break
                text.remove()
            if chosen is not None:
                break
        if chosen is None:  # no free spot within reach: keep the label beside its point all the same
            text = ax.annotate(label, point, xytext=(4, 3), textcoords="offset points", fontsize=fontsize)
            chosen = label_box(text, renderer)
        taken.append((chosen.x0, chosen.y0, chosen.x1, chosen.y1))


def per_class_figure(report: dict[str, Any]) -> Any:
    """Grouped bars of test accuracy per class, one colour per framework (a matplotlib figure), or None."""
    rows = [r for r in report["frameworks"] if r.get("per_class_accuracy")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows[0]["per_class_accuracy"])
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.9), 4))
    for i, row in enumerate(rows):
        values = [row["per_class_accuracy"].get(n) or 0.0 for n in names]
        ax.bar([x + i * width for x in range(len(names))], values, width, label=row["framework"])
    ax.set_xticks([x + width * (len(rows) - 1) / 2 for x in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Per-class test accuracy, run {report['run_id']}")
    ax.legend(loc="lower left", framealpha=0.9)
    fig.tight_layout()
    return fig


def plot_per_class(report: dict[str, Any], path: Path) -> Path | None:
    fig = per_class_figure(report)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plots(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(title, PNG as base64, caption) of each plot the report has data for."""
    plt = _pyplot()
    plots = []
    comparison = report.get("comparison")
    if comparison:
        fig = confusion_figure(comparison)
        plots.append(("Confusion matrices", _png(fig), ""))
        plt.close(fig)
    curves = [r for r in report["frameworks"] if r.get("history")]
    if curves:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            for index, row in enumerate(curves):
                epochs = range(1, len(row["history"]) + 1)
                color = f"C{index}"
                for split, style in ((metric, "-"), (f"val_{metric}", "--")):
                    values = [epoch.get(split) for epoch in row["history"]]
                    label = f"{row['framework']} {'train' if split == metric else 'eval'}"
                    ax.plot(epochs, [np.nan if v is None else v for v in values], style, color=color, label=label)
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
            ax.legend()
        fig.tight_layout()
        plots.append(("Training curves (train solid, eval dashed)", _png(fig), CURVES_NOTE))
        plt.close(fig)
    repeated = [r for r in report["frameworks"] if r.get("repeats")]
    if repeated:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for index, row in enumerate(repeated):
            values = [100 * r["test_accuracy"] for r in row["repeats"] if r["test_accuracy"] is not None]
            ax.scatter(values, [index] * len(values), color=f"C{index}", alpha=0.7, label=f"{row['framework']} seeds")
            chosen = [100 * r["test_accuracy"] for r in row["repeats"] if r["chosen"] and r["test_accuracy"]]
            ax.scatter(chosen, [index] * len(chosen), marker="*", s=220, color=f"C{index}", edgecolor="black")
            variation = row["seed_variation"]
            if variation["sd"] is not None:
                ax.errorbar(100 * variation["mean"], index + 0.25, xerr=100 * variation["sd"], fmt="o", color="black")
        ax.set_yticks(range(len(repeated)), [r["framework"] for r in repeated])
        ax.set_ylim(-0.6, len(repeated) - 0.4)
        ax.set_xlabel("test accuracy (%)")
        ax.set_title("Test accuracy per seed (star: pushed; bar: mean ± sd)")
        fig.tight_layout()
        plots.append(("Seed-to-seed variation", _png(fig), ""))
        plt.close(fig)
    variants = [v for v in report.get("variants") or [] if v.get("p50_ms_b1_t1") and v.get("test_accuracy")]
    if variants:
        fig = variants_figure(variants)
        plots.append(("Optimized variants: accuracy and latency", _png(fig), VARIANTS_NOTE))
        plt.close(fig)
    figure = per_class_figure(report)
    if figure is not None:
        plots.append(("Per-class test accuracy", _png(figure), ""))
        plt.close(figure)
    return plots


def _thumbnail(example: bytes) -> str:
    import tensorflow as tf
    from PIL import Image

    image = tf.train.Example.FromString(example).features.feature["image"].bytes_list.value[0]
    with Image.open(io.BytesIO(image)) as opened:
        small = opened.convert("RGB")
        small.thumbnail((112, 112))
        buffer = io.BytesIO()
        small.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _galleries(comparison: dict[str, Any] | None) -> list[tuple[str, list[dict[str, str]]]]:
    if not comparison:
        return []
    from twinflow.components.paired_predictions import read_test_split

    test = read_test_split(comparison["examples_uri"])
    names, classes = comparison["frameworks"], comparison["class_names"]
    predictions, labels = comparison["predictions"], comparison["labels"]

    def thumbs(indices: list[int]) -> list[dict[str, str]]:
        return [
            {
                "file": test.filenames[i],
                "png": _thumbnail(test.examples[i]),
                "caption": f"true {classes[labels[i]]}; "
                + "; ".join(f"{n} {classes[predictions[n][i]]}" for n in names),
            }
            for i in indices[:THUMBNAILS]
        ]

    shown = comparison["disagreements"]
    galleries = [
        (f"Where the two models disagree ({len(shown)} images; {min(len(shown), THUMBNAILS)} shown)", thumbs(shown))
    ]
    for name in names:
        galleries.append((f"{name}: most confident mistakes", thumbs(comparison["confident_mistakes"][name])))
    return galleries


def render_html(report: dict[str, Any]) -> str:
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(TEMPLATE.read_text(encoding="utf-8"))
    return template.render(
        r=report,
        c=report.get("comparison"),
        plots=_plots(report),
        galleries=_galleries(report.get("comparison")),
        data=json.dumps(report.get("data"), indent=1) if report.get("data") else "",
        config=json.dumps(report.get("config"), indent=1) if report.get("config") else "",
        findings=significant_class_findings(report["comparison"]) if report.get("comparison") else ("", []),
        train_note=TRAIN_ACCURACY_NOTE,
        size_note=MODEL_SIZE_NOTE,
        methods_note=METHODS_NOTE,
        pct=percent,
        num=number,
        interval=interval_text,
    )
