"""The paired comparison: intervals, McNemar's exact test, Tango's paired interval, and the report of a real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from twinflow.core.statistics import compare, holm, mcnemar_exact, paired_difference, proportion, tango_interval


def test_mcnemar_exact_matches_the_binomial_by_hand() -> None:
    # 1 vs 9 discordant pairs: p = 2 * P(X <= 1 | n=10, 1/2) = 2 * 11 / 1024.
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(5, 5) == pytest.approx(1.0)
    assert mcnemar_exact(0, 0) == 1.0


def test_holm_matches_the_step_down_by_hand() -> None:
    # Sorted: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; kept non-decreasing: 0.06 for the last.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1, and never below an earlier one
    assert holm([0.2]) == [0.2] and holm([]) == []
    # Ties share their adjusted value whatever their order.
    assert holm([0.01, 0.01, 0.5]) == pytest.approx([0.03, 0.03, 0.5])


def test_compare_names_the_classes_that_survive_holm() -> None:
    labels = np.repeat(np.arange(4), 100)
    first = labels.copy()
    second = labels.copy()
    second[np.flatnonzero(labels == 1)[:30]] = 0  # 30 misses: p = 2 * 0.5**30
    second[np.flatnonzero(labels == 2)[:7]] = 0  # 7 misses: p = 2 * 0.5**7 = 0.016, x3 after Holm = 0.047
    second[np.flatnonzero(labels == 3)[:6]] = 0  # 6 misses: p = 0.031, x2 after Holm = 0.0625: not significant
    result = compare(("keras", "lightning"), labels, (first, second), ["a", "b", "c", "d"])
    per_class = result["per_class"]
    assert per_class["b"]["p_value_holm"] == pytest.approx(4 * 2 * 0.5**30)
    assert per_class["c"]["p_value_holm"] == pytest.approx(3 * 2 * 0.5**7)
    assert per_class["d"]["p_value"] < 0.05 < per_class["d"]["p_value_holm"] == pytest.approx(2 * 2 * 0.5**6)
    assert result["significant_classes"] == ["b", "c"]


def paired(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Right/wrong answers of two models on the same examples, from the 2×2 agreement table."""
    a = np.array([True] * both + [True] * only_a + [False] * only_b + [False] * neither)
    b = np.array([True] * both + [False] * only_a + [True] * only_b + [False] * neither)
    return a, b


def test_tango_interval_matches_the_published_example_and_its_closed_form() -> None:
    # Fagerland, Lydersen & Laake (2014), Stat Med 33:2850, Table II (airway hyper-responsiveness, 21 pairs:
    # 1 both, 1 only first, 7 only second, 12 neither); their Table V gives Tango's interval (-0.517, -0.026).
    difference = paired_difference(*paired(1, 1, 7, 12))
    assert difference["value"] == pytest.approx(-6 / 21)
    assert (round(difference["low"], 3), round(difference["high"], 3)) == (-0.517, -0.026)
    # Models that never disagree: ±z²/(n + z²), not a single point (n agreements cannot rule out every drop).
    z2 = 1.959963984540054**2
    for n in (45, 300, 10000):
        low, high = tango_interval(0, 0, n)
        assert (low, high) == (pytest.approx(-z2 / (n + z2), abs=1e-9), pytest.approx(z2 / (n + z2), abs=1e-9))
    # Every pair discordant, all one way: (n − z²)/(n + z²) on one side, the bound ±1 on the other.
    assert tango_interval(5, 0, 5) == (pytest.approx((5 - z2) / (5 + z2), abs=1e-9), 1.0)
    assert tango_interval(0, 5, 5) == (-1.0, pytest.approx(-(5 - z2) / (5 + z2), abs=1e-9))


def test_intervals_contain_the_estimate_and_shrink_with_more_examples() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 1000, 10000):
        correct = rng.random(n) < 0.9
        share = proportion(correct)
        assert share["low"] <= share["value"] <= share["high"]
        widths.append(share["high"] - share["low"])
    assert widths[0] > widths[1] > widths[2]
    a, b = rng.random(2000) < 0.9, rng.random(2000) < 0.85
    difference = paired_difference(a, b)
    assert difference["low"] <= difference["value"] <= difference["high"]
    assert difference["value"] == pytest.approx(a.mean() - b.mean())


def test_compare_counts_the_agreement_table_and_says_the_verdict() -> None:
    labels = np.array([0] * 50 + [1] * 50)
    first = labels.copy()
    second = labels.copy()
    second[:20] = 1  # the second model misses 20 of class 0; the first misses none
    result = compare(("keras", "lightning"), labels, (first, second), ["a", "b"])
    assert result["agreement"] == {"both_right": 80, "only_keras_right": 20, "only_lightning_right": 0, "both_wrong": 0}
    assert result["significant"] and result["mcnemar_p_value"] == pytest.approx(2 * 0.5**20)
    assert result["verdict"].startswith("keras is more accurate than lightning")
    assert result["disagreements"] == list(range(20))
    assert result["per_class"]["b"]["difference"]["value"] == 0.0
    same = compare(("keras", "lightning"), labels, (first, first), ["a", "b"])
    assert not same["significant"] and same["verdict"].startswith("no significant difference at 5%")


@pytest.mark.e2e
def test_a_real_run_reports_the_paired_comparison(both_run) -> None:
    from tfx.utils import path_utils

    from twinflow.components.paired_predictions import predict_classes, read_test_split
    from twinflow.pipelines.run.record import read_run

    config, report = both_run
    comparison = report["comparison"]
    rows = {r["framework"]: r for r in report["frameworks"]}
    for name in ("keras", "lightning"):
        share = comparison["accuracy"][name]
        assert share["low"] <= share["value"] <= share["high"]
        assert share["value"] == pytest.approx(rows[name]["test_accuracy"], abs=1e-6)  # the Evaluator's figure
    assert sum(comparison["agreement"].values()) == comparison["test_examples"] == 45
    # The disagreements are exactly the examples where the two models' predictions differ.
    from tfx import v1 as tfx

    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    record = read_run(metadata, config.pipeline_name, report["run_id"])
    test = read_test_split(record.nodes["ImageExampleGen"].output("examples").uri)
    predictions = [
        predict_classes(path_utils.serving_model_path(record.nodes[f"Trainer_{n}"].output("model").uri), test)[0]
        for n in ("keras", "lightning")
    ]
    assert comparison["disagreements"] == [int(i) for i in np.flatnonzero(predictions[0] != predictions[1])]
    folder = Path(config.pipeline_root, "reports", report["run_id"].replace(":", "-"))
    assert "comparison" in json.loads((folder / "report.json").read_text())
    markdown = (folder / "report.md").read_text()
    assert "## Is the difference real?" in markdown and comparison["verdict"] in markdown


@pytest.mark.e2e
def test_the_html_report_is_self_contained_and_rebuilt_by_the_report_command(both_run, tmp_path) -> None:
    import subprocess
    import sys
    from html.parser import HTMLParser

    config, report = both_run
    comparison = report["comparison"]
    folder = Path(config.pipeline_root, "reports", report["run_id"].replace(":", "-"))
    page = (folder / "report.html").read_text()

    class Images(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.sources: list[str] = []
            self.links: list[str] = []

        def handle_starttag(self, tag: str, attrs: list) -> None:
            values = dict(attrs)
            if tag == "img":
                self.sources.append(values.get("src") or "")
            if tag in ("link", "script") or (tag == "a" and values.get("href")):
                self.links.append(tag)

    parsed = Images()
    parsed.feed(page)
    assert parsed.links == [] and all(src.startswith("data:image/png;base64,") for src in parsed.sources)
    thumbnails = min(len(comparison["disagreements"]), 60) + sum(
        len(v) for v in comparison["confident_mistakes"].values()
    )
    assert len(parsed.sources) == 3 + thumbnails  # confusion matrices, training curves, per-class bars, thumbnails
    for row in report["frameworks"]:  # the curves come from what each trainer logged per epoch
        assert len(row["history"]) == row["epochs_run"] and all(e["val_accuracy"] is not None for e in row["history"])
    assert comparison["verdict"] in page
    for index in comparison["disagreements"][:60]:  # each disagreement's file is shown
        assert comparison["disagreement_files"][comparison["disagreements"].index(index)] in page
    (folder / "report.html").unlink()
    where = ("--pipeline-root", config.pipeline_root, "--metadata-path", config.metadata_path)
    result = subprocess.run(
        [sys.executable, "-m", "twinflow.pipelines.cli", "report", "--run", report["run_id"], *where],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (folder / "report.html").exists() and str(folder / "report.html") in result.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "twinflow.pipelines.cli", "report", "--run", "no-such-run", *where],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "run 'no-such-run'" in missing.stderr and "Traceback" not in missing.stderr


def _files(root: str) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob("*")}


@pytest.mark.e2e
def test_report_output_writes_the_rebuilt_report_there_and_nowhere_else(both_run, tmp_path) -> None:
    import subprocess
    import sys

    config, report = both_run
    before = {root: _files(root) for root in (config.pipeline_root, config.serving_dir)}
    output = tmp_path / "elsewhere" / "rebuilt"
    where = ("--pipeline-root", config.pipeline_root, "--metadata-path", config.metadata_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinflow.pipelines.cli",
            "report",
            "--run",
            report["run_id"],
            "--output",
            str(output),
            *where,
        ],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert str(output / "report.html") in result.stdout
    written = {"report.json", "report.md", "report.html", "per_class_accuracy.png"}
    assert {p.name for p in output.iterdir()} == written
    rebuilt = json.loads((output / "report.json").read_text())
    assert rebuilt["run_id"] == report["run_id"] and rebuilt["comparison"]["verdict"] == report["comparison"]["verdict"]
    assert {root: _files(root) for root in before} == before  # the run's own report and everything else untouched


@pytest.mark.e2e
def test_the_html_report_renders_in_a_real_browser(both_run) -> None:
    """Headless Chromium (Debian's; scripts/setup.sh installs it where apt can) renders the page without errors."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on this machine (scripts/setup.sh installs Debian's where apt-get is available)")
    config, report = both_run
    folder = Path(config.pipeline_root, "reports", report["run_id"].replace(":", "-"))
    screenshot = folder / "screenshot.png"  # kept beside the report it shows
    flags = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1200,3000",
    )
    result = subprocess.run(
        [browser, *flags, f"--screenshot={screenshot}", (folder / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console  # no script errors, no resource that failed to load
    from PIL import Image

    with Image.open(screenshot) as shot:
        assert shot.size == (1200, 3000)
        assert len(set(shot.convert("L").getdata())) > 50  # a rendered page, not a blank one
