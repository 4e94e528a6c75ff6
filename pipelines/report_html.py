"""``report.html``: the run's comparison as one self-contained page (plots and thumbnails inline, no network).

Built from the report dict (``pipelines.report``) and, for thumbnails, the run's test examples.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from pipelines.report import interval_text, number, per_class_figure, percent

TEMPLATE = Path(__file__).with_name("templates") / "report.html.j2"

THUMBNAILS = 60


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(report: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    comparison = report.get("comparison")
    if comparison:
        names, classes = comparison["frameworks"], comparison["class_names"]
        fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
        for ax, name in zip(axes, names, strict=True):
            matrix = np.asarray(comparison["confusion"][name])
            ax.imshow(matrix, cmap="Blues")
            ax.set_title(f"{name}: rows true, columns predicted")
            ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
            ax.set_yticks(range(len(classes)), classes, fontsize=8)
            for (i, j), count in np.ndenumerate(matrix):
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color="black")
        fig.tight_layout()
        plots.append(("Confusion matrices", _png(fig)))
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
        plots.append(("Training curves (train solid, eval dashed)", _png(fig)))
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
        plots.append(("Seed-to-seed variation", _png(fig)))
        plt.close(fig)
    variants = [v for v in report.get("variants") or [] if v.get("p50_ms_b1_t1") and v.get("test_accuracy")]
    if variants:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        frameworks = sorted({v["framework"] for v in variants})
        markers = {"float": "o", "prune": "s", "int8": "^"}
        for v in variants:
            color = f"C{frameworks.index(v['framework'])}"
            ax.scatter(v["p50_ms_b1_t1"], 100 * v["test_accuracy"], color=color, marker=markers.get(v["variant"], "x"))
            label = v["framework"] if v["variant"] == "float" else v["model"]
            ax.annotate(
                label,
                (v["p50_ms_b1_t1"], 100 * v["test_accuracy"]),
                fontsize=8,
                xytext=(4, 3),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency, batch 1, 1 thread (ms, log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Accuracy against latency: float and optimized variants")
        fig.tight_layout()
        plots.append(("Optimized variants: accuracy and latency", _png(fig)))
        plt.close(fig)
    figure = per_class_figure(report)
    if figure is not None:
        plots.append(("Per-class test accuracy", _png(figure)))
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
    from pipelines.comparison import read_test_split

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
        pct=percent,
        num=number,
        interval=interval_text,
    )
