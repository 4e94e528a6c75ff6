"""Spans: data that arrives over time as folders under one root, named in TFX's input-pattern syntax.

``span-{SPAN}`` (the default), ``{YYYY}-{MM}-{DD}`` (a span is the day number since
1970-01-01, as in TFX), ``batch-{SPAN:3}/v{VERSION}``… A pattern is matched against folder
paths relative to the root, one path level per ``/``. TFX's own helpers
(``tfx.components.example_gen.utils``) match file globs and import TensorFlow; this module
keeps TFX's syntax and semantics for folders, and stays light enough for the command line
to answer "no new data" before TensorFlow loads.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

from twinflow.core.errors import ConfigError, InputDataError

SPAN_SPEC = "SPAN"
VERSION_SPEC = "VERSION"
DATE_SPECS = ("YYYY", "MM", "DD")
_SPEC = re.compile(r"\{(SPAN|VERSION|YYYY|MM|DD)(?::(\d+))?\}")
_DATE_WIDTHS = {"YYYY": 4, "MM": 2, "DD": 2}
_EPOCH = datetime.date(1970, 1, 1)


@dataclass(frozen=True)
class Span:
    number: int
    version: int | None
    path: str  # the span folder

    def describe(self) -> str:
        return f"span {self.number}" + ("" if self.version is None else f" (version {self.version})")


@dataclass(frozen=True)
class SpanPattern:
    pattern: str
    levels: tuple[re.Pattern[str], ...]  # one regex per path level
    has_date: bool
    has_version: bool


def compile_pattern(pattern: str) -> SpanPattern:
    """Check a pattern as TFX does (``{SPAN}`` once, or a full date; ``{VERSION}`` at most once)."""
    specs = [m.group(1) for m in _SPEC.finditer(pattern)]
    has_date = any(s in DATE_SPECS for s in specs)
    problems = []
    if SPAN_SPEC in specs and has_date:
        problems.append("{SPAN} and a date ({YYYY}{MM}{DD}) cannot be used together")
    if specs.count(SPAN_SPEC) > 1 or specs.count(VERSION_SPEC) > 1:
        problems.append("{SPAN} and {VERSION} may appear once each")
    if has_date and any(specs.count(s) != 1 for s in DATE_SPECS):
        problems.append("a date needs each of {YYYY}, {MM} and {DD} exactly once")
    if SPAN_SPEC not in specs and not has_date:
        problems.append("it needs {SPAN} or a date {YYYY}{MM}{DD}")
    if pattern.startswith("/") or any(part in ("", ".", "..") for part in pattern.rstrip("/").split("/")):
        problems.append("it must be a relative folder path such as span-{SPAN} or {YYYY}-{MM}-{DD}/v{VERSION}")
    if problems:
        raise ConfigError(f"span pattern {pattern!r}: " + "; ".join(problems))
    levels = tuple(re.compile(_level_regex(part)) for part in pattern.rstrip("/").split("/"))
    return SpanPattern(pattern, levels, has_date, VERSION_SPEC in specs)


def _level_regex(part: str) -> str:
    out, at = [], 0
    for match in _SPEC.finditer(part):
        out.append(re.escape(part[at : match.start()]))
        name, width = match.group(1), match.group(2)
        if name in DATE_SPECS:
            width = str(_DATE_WIDTHS[name])
        digits = rf"\d{{{width}}}" if width else r"\d+"
        out.append(f"(?P<{name}>{digits})")
        at = match.end()
    out.append(re.escape(part[at:]))
    return "^" + "".join(out) + "$"


def _children(folder: str) -> list[str]:
    """Sub-folder names; local folders without TensorFlow, URIs through its file layer."""
    if "://" not in folder:
        try:
            return sorted(e.name for e in os.scandir(folder) if e.is_dir())
        except FileNotFoundError:
            raise InputDataError(f"data root {folder} does not exist") from None
        except NotADirectoryError:
            raise InputDataError(f"data root {folder} is a file, not a folder of span folders") from None
    from twinflow.core import fs

    io = fs.gfile()
    if not io.isdir(folder):
        raise InputDataError(f"data root {folder} does not exist or is not a folder")
    return sorted(name.rstrip("/") for name in io.listdir(folder) if io.isdir(fs.join(folder, name)))


def find_spans(root: str, pattern: str) -> list[Span]:
    """Every folder under ``root`` matching ``pattern``, oldest span (then version) first."""
    compiled = compile_pattern(pattern)
    found: list[Span] = []
    frontier: list[tuple[str, dict[str, str]]] = [(root.rstrip("/"), {})]
    for level in compiled.levels:
        next_frontier = []
        for folder, values in frontier:
            for name in _children(folder):
                match = level.match(name)
                if match:
                    next_frontier.append((f"{folder}/{name}", {**values, **match.groupdict()}))
        frontier = next_frontier
    for path, values in frontier:
        if compiled.has_date:
            try:
                day = datetime.date(int(values["YYYY"]), int(values["MM"]), int(values["DD"]))
            except ValueError:
                continue  # not a real date (e.g. 2026-02-30): not a span
            number = (day - _EPOCH).days
        else:
            number = int(values[SPAN_SPEC])
        version = int(values[VERSION_SPEC]) if compiled.has_version else None
        found.append(Span(number, version, path))
    return sorted(found, key=lambda s: (s.number, -1 if s.version is None else s.version))


def latest_spans(root: str, pattern: str, window: int) -> list[Span]:
    """The latest ``window`` spans (each at its latest version), oldest first; an error when there are none."""
    latest: dict[int, Span] = {}
    for span in find_spans(root, pattern):
        latest[span.number] = span  # sorted: a later version replaces an earlier one
    if not latest:
        raise InputDataError(
            f"no span folders in {root} match {pattern!r} (e.g. {example_folder(pattern)}); "
            "put each batch of arriving images in its own span folder, or pass --span-pattern"
        )
    return [latest[n] for n in sorted(latest)[-window:]]


def example_folder(pattern: str) -> str:
    """What a matching folder looks like, for messages."""
    values = {"SPAN": "1", "VERSION": "1", "YYYY": "2026", "MM": "11", "DD": "29"}

    def fill(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        width = int(match.group(2) or _DATE_WIDTHS.get(match.group(1), 0))
        return value.zfill(width)

    return _SPEC.sub(fill, pattern)


def describe_spans(spans: list[Span]) -> str:
    """``span 3`` / ``spans 2-4`` / ``spans 1, 3`` for logs and history."""
    numbers = [s.number for s in spans]
    if not numbers:
        return "no spans"
    if len(numbers) == 1:
        return f"span {numbers[0]}"
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"spans {numbers[0]}-{numbers[-1]}"
    return "spans " + ", ".join(map(str, numbers))


def span_date(number: int) -> str:
    return (_EPOCH + datetime.timedelta(days=number)).isoformat()
