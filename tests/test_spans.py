"""Span folders in TFX's pattern syntax: which folders match, which spans a window reads, bad patterns."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.image_data import write_image_folders
from twinflow.components.image_example_gen.listing import list_input
from twinflow.core.config import load_config
from twinflow.core.errors import ConfigError, InputDataError
from twinflow.core.spans import compile_pattern, describe_spans, find_spans, latest_spans


def _dirs(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
    return root


def test_default_pattern_takes_the_highest_spans_numerically(tmp_path: Path) -> None:
    root = _dirs(tmp_path, "span-1", "span-2", "span-10", "span-x", "notes")
    (tmp_path / "span-3").write_text("a file, not a span folder")
    assert [s.number for s in find_spans(str(root), "span-{SPAN}")] == [1, 2, 10]
    assert [s.number for s in latest_spans(str(root), "span-{SPAN}", 2)] == [2, 10]
    assert latest_spans(str(root), "span-{SPAN}", 1)[0].path == f"{root}/span-10"


def test_versions_pick_the_latest_version_of_each_span(tmp_path: Path) -> None:
    root = _dirs(tmp_path, "span-1/v1", "span-1/v3", "span-2/v1", "span-2/v2")
    spans = latest_spans(str(root), "span-{SPAN}/v{VERSION}", 5)
    assert [(s.number, s.version) for s in spans] == [(1, 3), (2, 2)]


def test_dated_folders_are_days_since_the_epoch(tmp_path: Path) -> None:
    root = _dirs(tmp_path, "2026-11-28", "2026-11-29", "2026-02-30", "2026-1-5")
    spans = latest_spans(str(root), "{YYYY}-{MM}-{DD}", 3)
    assert [s.path.rsplit("/", 1)[1] for s in spans] == ["2026-11-28", "2026-11-29"]  # 2026-02-30 is no date
    assert spans[1].number - spans[0].number == 1
    assert spans[0].number == 20785  # as tfx.components.example_gen.utils.date_to_span_number(2026, 11, 28)


def test_span_width_is_respected(tmp_path: Path) -> None:
    root = _dirs(tmp_path, "batch-001", "batch-02", "batch-003")
    assert [s.number for s in find_spans(str(root), "batch-{SPAN:3}")] == [1, 3]


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("span", "needs {SPAN}"),
        ("span-{SPAN}/{YYYY}{MM}{DD}", "cannot be used together"),
        ("{YYYY}-{MM}", "exactly once"),
        ("../span-{SPAN}", "relative folder path"),
    ],
)
def test_bad_patterns_are_refused_by_the_config(pattern: str, says: str) -> None:
    with pytest.raises(ConfigError, match="span_pattern") as err:
        load_config(overrides={"span_pattern": pattern})
    assert says in str(err.value)
    with pytest.raises(ConfigError):
        compile_pattern(pattern)


def test_no_matching_span_names_the_root_and_an_example(tmp_path: Path) -> None:
    _dirs(tmp_path, "2026-11-29")
    with pytest.raises(InputDataError, match=r"no span folders in .* match 'span-\{SPAN\}' \(e\.g\. span-1\)"):
        latest_spans(str(tmp_path), "span-{SPAN}", 1)
    with pytest.raises(InputDataError, match="does not exist"):
        latest_spans(str(tmp_path / "missing"), "span-{SPAN}", 1)


def test_a_window_lists_images_of_every_span_it_reads(tmp_path: Path) -> None:
    for span, seed in ((1, 0), (2, 1), (3, 2)):
        write_image_folders(tmp_path / f"span-{span}", ["circle", "square"], 3, seed=seed)
    listing, spans = list_input(str(tmp_path), "span-{SPAN}", 2)
    assert describe_spans(spans) == "spans 2-3"
    assert len(listing.files) == 12 and listing.class_names == ["circle", "square"]
    assert {Path(f.path).relative_to(tmp_path).parts[0] for f in listing.files} == {"span-2", "span-3"}
    one, _ = list_input(str(tmp_path), "span-{SPAN}", 1)
    assert one.fingerprint() != listing.fingerprint()
    fixed, no_spans = list_input(str(tmp_path / "span-1"))
    assert no_spans == [] and len(fixed.files) == 6
