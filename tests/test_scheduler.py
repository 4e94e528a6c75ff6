"""``twinflow schedule --local``'s loop: real ticks, real child processes, real signals, a real lock.

Each test runs seconds: one-second triggers ("* * * * * *"), children that sleep briefly,
and a timeout on every wait, so a hung scheduler fails the test instead of the suite.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from twinflow.core.errors import ConfigError, RunLockedError
from twinflow.core.locks import hold
from twinflow.pipelines.retraining.scheduler import (
    SCHEDULE_LOCK_SUFFIX,
    TickResult,
    describe_tick,
    missed_ticks,
    run_schedule,
)

pytestmark = pytest.mark.slow  # real child processes on one-second cron ticks (about 20 s)

ROOT = Path(__file__).resolve().parent.parent
EVERY_SECOND = "* * * * * *"
TICK_LINE = "[schedule] "

# A retrain stand-in: writes the tick summary the scheduler reads, says something, exits 0.
SUMMARY_CHILD = textwrap.dedent(
    """
    import json, os, time
    summary = {
        "outcome": "done", "spans": [3, 2], "drift": "no drift",
        "frameworks": {
            "keras": {"test_accuracy": 0.912, "pushed": True, "version": 1795, "reason": "better than served"},
            "lightning": {"test_accuracy": 0.905, "pushed": False, "reason": "below served"},
        },
        "unknown_field": {"ignored": True},
    }
    with open(os.environ["TWINFLOW_TICK_SUMMARY"], "w") as handle:
        json.dump(summary, handle)
    print("retrain output on stdout")
    time.sleep(0.2)
    """
)

# Runs for 2.5 s, recording when it started and ended: ticks must never overlap.
SLOW_CHILD = textwrap.dedent(
    """
    import sys, time
    start = time.time()
    time.sleep(2.5)
    with open(sys.argv[1], "a") as handle:
        handle.write(f"{start} {time.time()}\\n")
    """
)

# A different exit on each tick, as `twinflow retrain` answers.
OUTCOMES_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    counter = Path(sys.argv[1])
    tick = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(tick))
    summary = os.environ["TWINFLOW_TICK_SUMMARY"]
    if tick == 1:
        Path(summary).write_text(json.dumps({"outcome": "no new data"}))
        sys.exit(0)
    if tick == 2:
        Path(summary).write_text(json.dumps({"outcome": "drift", "spans": [4], "drift": "image_mean moved 0.31 > 0.1"}))
        print("twinflow retrain: stopped by data validation: drift", file=sys.stderr)
        sys.exit(3)
    if tick == 3:
        print(
            "twinflow retrain: error: another twinflow run is using /m/metadata.sqlite: pid 4242 on build-7, "
            "started 2026-11-29 02:59:00 (twinflow run --framework both). Wait for it to finish, or stop it; "
            "two runs on one metadata store or serving folder would mix their results",
            file=sys.stderr,
        )
        sys.exit(5)
    print("Traceback: something broke", file=sys.stderr)
    sys.exit(1)
    """
)

# Waits for SIGINT (as a retrain would, as KeyboardInterrupt), says so in its marker, exits 130.
INTERRUPTIBLE_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    marker = Path(sys.argv[1])
    try:
        marker.write_text("started")
        time.sleep(30)
        marker.write_text("not interrupted")
    except KeyboardInterrupt:
        marker.write_text("interrupted")
        sys.exit(130)
    """
)

# Catches nothing: SIGINT ends it as Python ends any program interrupted outside a handler (a retrain
# still importing its modules, or in the new-data check), by re-raising the signal: killed by SIGINT.
UNHANDLED_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    Path(sys.argv[1]).write_text("started")
    time.sleep(30)
    """
)

# Ignores SIGINT: the scheduler must not wait for it past its grace period.
STUBBORN_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Path(sys.argv[1]).write_text("started")
    time.sleep(30)
    """
)

# A scheduler in its own process, as `twinflow schedule --local` would run it.
SCHEDULER = textwrap.dedent(
    """
    import json, sys
    from twinflow.pipelines.retraining.scheduler import run_schedule
    args = json.loads(sys.argv[1])
    sys.argv = ["twinflow", "schedule", "--local", "--cron", args["cron"]]
    sys.exit(run_schedule(
        args["cron"], args["command"], args["lock_target"], args["log_dir"], stop_grace_s=args["grace"]
    ))
    """
)


def _child(script: str, *args: object) -> list[str]:
    return [sys.executable, "-c", script, *map(str, args)]


def _tick_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if re.match(r"\[schedule\] [\d-]+ [\d:]+ tick \d+: ", line)]


class SchedulerProcess:
    """A scheduler subprocess whose stdout lines are collected as they come, waited on with timeouts."""

    def __init__(self, tmp_path: Path, cron: str, command: list[str], grace: float = 120.0) -> None:
        self.lock_target = str(tmp_path / "metadata.sqlite")
        args = {
            "cron": cron,
            "command": command,
            "lock_target": self.lock_target,
            "log_dir": str(tmp_path / "logs"),
            "grace": grace,
        }
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SCHEDULER, json.dumps(args)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def expect(self, text: str, timeout: float) -> str:
        with self._changed:
            found = self._changed.wait_for(lambda: any(text in line for line in self.lines), timeout=timeout)
        assert found, f"no line with {text!r} within {timeout} s; output so far:\n" + "\n".join(self.lines)
        return next(line for line in self.lines if text in line)

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.1)  # let the reader thread take the last lines
        return code


StartScheduler = Callable[..., SchedulerProcess]


@pytest.fixture
def scheduler_process(tmp_path: Path) -> Iterator[StartScheduler]:
    """Start scheduler subprocesses in tmp_path; any left running are killed afterwards."""
    started: list[SchedulerProcess] = []

    def start(cron: str, command: list[str], grace: float = 120.0) -> SchedulerProcess:
        process = SchedulerProcess(tmp_path, cron, command, grace)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=10)


def _lock_is_free(lock_target: str) -> bool:
    try:
        with hold(lock_target, suffix=SCHEDULE_LOCK_SUFFIX):
            return True
    except RunLockedError:
        return False


@pytest.mark.parametrize("cron", ["61 * * * *", "every night", "* * *", "* * * * * * *", "0 3 * * mon-xyz", ""])
def test_an_invalid_cron_expression_is_a_config_error_naming_it(cron: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid cron expression") as err:
        run_schedule(cron, _child("pass"), str(tmp_path / "metadata.sqlite"), str(tmp_path / "logs"), max_ticks=1)
    assert repr(cron) in str(err.value)
    assert not (tmp_path / "metadata.sqlite.schedule.lock").exists()  # refused before taking the lock


def test_each_tick_prints_one_line_with_the_summary_and_max_ticks_stops(tmp_path: Path) -> None:
    lines: list[str] = []
    started = time.monotonic()
    code = run_schedule(
        EVERY_SECOND,
        _child(SUMMARY_CHILD),
        str(tmp_path / "metadata.sqlite"),
        str(tmp_path / "logs"),
        max_ticks=2,
        out=lines.append,
    )
    took = time.monotonic() - started

    assert code == 0
    assert took < 10
    ticks = _tick_lines(lines)
    assert len(ticks) == 2, lines
    for number, line in enumerate(ticks, start=1):
        assert f" tick {number}: done, spans 2-3, drift: no drift, " in line
        assert "keras 0.912 pushed v1795, lightning 0.905 not pushed (below served) — " in line
        assert "missed" not in line
    assert lines[-1] == "[schedule] stopped after 2 tick(s)"
    logs = sorted((tmp_path / "logs").glob("tick-*.log"))
    assert len(logs) == 2
    assert all("retrain output on stdout" in log.read_text() for log in logs)
    assert len(list((tmp_path / "logs").glob("tick-*.summary.json"))) == 2
    assert _lock_is_free(str(tmp_path / "metadata.sqlite"))


def test_exit_codes_read_as_no_new_data_drift_locked_and_failed(tmp_path: Path) -> None:
    lines: list[str] = []
    run_schedule(
        EVERY_SECOND,
        _child(OUTCOMES_CHILD, tmp_path / "counter"),
        str(tmp_path / "metadata.sqlite"),
        str(tmp_path / "logs"),
        max_ticks=4,
        out=lines.append,
    )
    ticks = _tick_lines(lines)
    assert len(ticks) == 4, lines
    assert " tick 1: no new data — " in ticks[0]
    assert " tick 2: stopped: drift or data validation, spans 4, drift: image_mean moved 0.31 > 0.1 — " in ticks[1]
    assert (
        " tick 3: skipped: another run holds the store "
        "(pid 4242 on build-7, started 2026-11-29 02:59:00 (twinflow run --framework both)) — " in ticks[2]
    )
    assert " tick 4: failed (exit 1), see " in ticks[3]
    failed_log = ticks[3].split(", see ")[1].split(" — ")[0]
    assert "something broke" in Path(failed_log).read_text()
    # "No new data" leaves no files (its line says all there is); every other tick keeps its log.
    assert len(list((tmp_path / "logs").glob("tick-*.log"))) == 3
    assert len(list((tmp_path / "logs").glob("tick-*.summary.json"))) == 1  # tick 2's; 3 and 4 wrote none


def test_describe_tick_survives_odd_missing_and_broken_summaries(tmp_path: Path) -> None:
    log, summary = tmp_path / "tick.log", tmp_path / "tick.summary.json"
    log.write_text("twinflow retrain: no new data since span 3\n")

    def line(returncode: int | None, **kwargs: object) -> str:
        return describe_tick(TickResult(7, datetime(2026, 11, 29, 3), returncode, 132.4, log, summary, **kwargs))  # type: ignore[arg-type]

    assert line(0) == "[schedule] 2026-11-29 03:00:00 tick 7: no new data — 132 s"  # no summary: the log says
    summary.write_text(
        json.dumps(
            {
                "outcome": 42,
                "spans": "latest",
                "drift": {"image_mean": 0.3},
                "frameworks": {"keras": 5, "lightning": {"test_accuracy": "high", "pushed": "maybe"}, "x": {}},
            }
        )
    )
    assert line(0) == (
        '[schedule] 2026-11-29 03:00:00 tick 7: done, spans latest, drift: {"image_mean": 0.3}, '
        "keras 5, lightning, x — 132 s"
    )
    summary.write_text(json.dumps({"frameworks": {"keras": {"test_accuracy": float("nan"), "pushed": True}}}))
    assert "keras pushed — " in line(0)  # NaN accuracy left out, no version: no "v"
    summary.write_text("{not json")
    assert "no new data, summary unreadable (tick.summary.json: " in line(0)  # the log still says
    summary.write_text("[1, 2]")
    assert "summary unreadable (tick.summary.json: not a JSON object)" in line(0)
    summary.unlink()
    assert "failed: killed by SIGKILL, see " in line(-signal.SIGKILL)
    assert "interrupted, see " in line(130)
    assert "skipped: another run holds the store (see " in line(5)
    assert "failed: could not start the command (no such file)" in line(None, error="no such file")
    assert line(1, missed=3).endswith("— 132 s; skipped 3 missed tick(s)")


def test_missed_ticks_counts_fire_times_passed_while_a_tick_ran() -> None:
    fired = datetime(2026, 11, 29, 3, 0, 0)
    assert missed_ticks(EVERY_SECOND, fired, datetime(2026, 11, 29, 3, 0, 0, 900_000)) == 0
    assert missed_ticks(EVERY_SECOND, fired, datetime(2026, 11, 29, 3, 0, 2, 600_000)) == 2
    assert missed_ticks("0 3 * * *", fired, datetime(2026, 12, 1, 2, 0)) == 1  # only the 30th's 03:00


def test_ticks_never_overlap_and_missed_ticks_are_skipped_not_caught_up(tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    lines: list[str] = []
    started = time.monotonic()
    run_schedule(
        EVERY_SECOND,
        _child(SLOW_CHILD, runs),
        str(tmp_path / "metadata.sqlite"),
        str(tmp_path / "logs"),
        max_ticks=2,
        out=lines.append,
    )
    assert time.monotonic() - started < 15

    intervals = [tuple(map(float, row.split())) for row in runs.read_text().splitlines()]
    assert len(intervals) == 2
    (_, end1), (start2, _) = intervals
    assert start2 >= end1, "the second tick started while the first still ran"

    ticks = _tick_lines(lines)
    assert len(ticks) == 2, lines
    skipped = ticks[0].split("; skipped ")[1]
    assert skipped.endswith(" missed tick(s)") and int(skipped.split()[0]) >= 2, ticks[0]
    # Not caught up: the second tick is the first fire time after the first one finished,
    # not one of the fire times that passed while it ran.
    second_fire = datetime.strptime(ticks[1].split(" tick 2:")[0].removeprefix(TICK_LINE), "%Y-%m-%d %H:%M:%S")
    assert second_fire.timestamp() >= int(end1)
    assert start2 - end1 < 3  # and it waited for that fire time only (one second, plus a loaded machine)


def test_a_second_scheduler_on_the_same_store_is_refused_at_once_naming_the_holder(
    tmp_path: Path, scheduler_process: StartScheduler
) -> None:
    first = scheduler_process("0 3 * * *", _child("pass"))
    first.expect("[schedule] cron '0 3 * * *'", timeout=20)

    started = time.monotonic()
    with pytest.raises(RunLockedError) as err:
        run_schedule(EVERY_SECOND, _child("pass"), first.lock_target, str(tmp_path / "logs2"), max_ticks=1)
    assert time.monotonic() - started < 2
    message = str(err.value)
    assert "another twinflow scheduler is already running on" in message
    assert f"pid {first.proc.pid} on {socket.gethostname()}, started " in message
    assert "(twinflow schedule --local --cron 0 3 * * *)" in message
    assert not list((tmp_path / "logs2").glob("tick-*"))  # nothing ran

    first.proc.send_signal(signal.SIGTERM)  # stops while sleeping, no child running
    assert first.finish(timeout=10) == 0
    assert first.lines[-1] == "[schedule] stopped by SIGTERM"
    assert _lock_is_free(first.lock_target)


def test_sigterm_forwards_sigint_to_the_running_retrain_waits_and_exits_cleanly(
    tmp_path: Path, scheduler_process: StartScheduler
) -> None:
    marker = tmp_path / "child-state"
    scheduler = scheduler_process(EVERY_SECOND, _child(INTERRUPTIBLE_CHILD, marker))
    deadline = time.monotonic() + 20
    while not (marker.exists() and marker.read_text() == "started"):
        assert time.monotonic() < deadline, "the first tick's child never started:\n" + "\n".join(scheduler.lines)
        time.sleep(0.05)
    assert not _lock_is_free(scheduler.lock_target)

    stopped_at = time.monotonic()
    scheduler.proc.send_signal(signal.SIGTERM)
    assert scheduler.finish(timeout=20) == 0
    assert time.monotonic() - stopped_at < 10

    assert marker.read_text() == "interrupted"  # the child got SIGINT and was waited for
    assert " tick 1: interrupted, see " in scheduler.expect(" tick 1:", timeout=1)
    assert scheduler.lines[-1] == "[schedule] stopped by SIGTERM"
    assert len(_tick_lines(scheduler.lines)) == 1
    assert _lock_is_free(scheduler.lock_target)


def test_a_retrain_ended_by_the_forwarded_sigint_itself_reads_as_interrupted(
    tmp_path: Path, scheduler_process: StartScheduler
) -> None:
    marker = tmp_path / "child-state"
    scheduler = scheduler_process(EVERY_SECOND, _child(UNHANDLED_CHILD, marker))
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline, "the first tick's child never started:\n" + "\n".join(scheduler.lines)
        time.sleep(0.05)

    scheduler.proc.send_signal(signal.SIGTERM)
    assert scheduler.finish(timeout=20) == 0
    line = scheduler.expect(" tick 1:", timeout=1)
    assert " tick 1: interrupted, see " in line and "failed" not in line, line


def test_a_retrain_ignoring_sigint_is_killed_after_the_grace_period(
    tmp_path: Path, scheduler_process: StartScheduler
) -> None:
    marker = tmp_path / "child-state"
    scheduler = scheduler_process(EVERY_SECOND, _child(STUBBORN_CHILD, marker), grace=1.0)
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline, "the first tick's child never started:\n" + "\n".join(scheduler.lines)
        time.sleep(0.05)
    time.sleep(0.2)  # let it ignore SIGINT before SIGINT comes

    stopped_at = time.monotonic()
    scheduler.proc.send_signal(signal.SIGINT)  # Ctrl-C in a terminal
    assert scheduler.finish(timeout=20) == 0
    assert 1.0 <= time.monotonic() - stopped_at < 8

    assert " tick 1: failed: killed by SIGKILL, see " in scheduler.expect(" tick 1:", timeout=1)
    assert scheduler.lines[-1] == "[schedule] stopped by SIGINT"
    assert _lock_is_free(scheduler.lock_target)
