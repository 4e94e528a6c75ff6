"""``twinflow schedule --local``: run ``twinflow retrain`` on a cron schedule, in the foreground.

For systemd, a container or a terminal: one process that sleeps until the next cron time,
runs the retrain as a child process, prints one line per tick, and stops cleanly on
SIGTERM or Ctrl-C.

- **Cron library: cronsim** (2.x). It answers the one question a foreground loop asks,
  "when is the next fire time after now?", with Debian cron's semantics (the
  day-of-month/day-of-week OR rule, ``L``, ``W``, ``#``, names), and it accepts an optional
  sixth field for seconds, written first (``"*/10 * * * * *"``), which the tests need for a
  one-second trigger. It is small, dependency-free and maintained (it runs Healthchecks.io's
  schedules). APScheduler's CronTrigger would also do seconds, but brings a scheduler
  framework (executors, job stores, tzlocal) around a loop this module owns anyway.
  Expressions are read in the machine's local time, as cron does.
- **One scheduler per store.** A file lock beside the metadata file
  (``<metadata>.schedule.lock``, with the same holder file as a run's lock) refuses a second
  scheduler at once with :class:`~core.errors.RunLockedError` naming the first. It is a
  different lock from the run's own, so it never blocks the retrain it starts, and a
  manual ``twinflow run`` meanwhile is refused by the run lock, not by this one.
- **No catch-up.** After a tick the next fire time is computed from *now*: ticks that
  passed while a retrain ran are counted and reported ("skipped N missed tick(s)"), never
  run late one after another.
- **Child process.** Each tick runs ``command`` with its output in
  ``<log_dir>/tick-<YYYYmmdd-HHMMSS>.log`` and ``TWINFLOW_TICK_SUMMARY`` set to
  ``<log_dir>/tick-<YYYYmmdd-HHMMSS>.summary.json``; a "no new data" tick's two files are
  removed once its line is printed (``twinflow prune-runs`` removes older tick files). It runs
  in its own process group, so a Ctrl-C in the terminal reaches the scheduler only, which
  forwards exactly one SIGINT.

The tick summary the child may write (every field optional; unknown fields are ignored)::

    {"outcome": "no new data" | "done" | "drift" | "failed",
     "spans": [2, 3],
     "drift": "no drift",
     "frameworks": {"keras": {"test_accuracy": 0.912, "pushed": true, "version": 1795,
                              "reason": "blessed, better than served"},
                    "lightning": {"test_accuracy": 0.905, "pushed": false, "reason": "below served"}}}

Exit codes of the child, as the tick line reads them: 0 done (or "no new data", from the
summary's outcome or the log), 3 stopped by drift or data validation, 5 skipped because
another run holds the store, 130 (or killed by SIGINT) interrupted, anything else failed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from cronsim import CronSim, CronSimError

from twinflow.core import fs
from twinflow.core.errors import ConfigError
from twinflow.core.locks import hold

SCHEDULE_LOCK_SUFFIX = ".schedule.lock"
SUMMARY_ENV = "TWINFLOW_TICK_SUMMARY"
STOP_GRACE_S = 120.0  # how long a stopping scheduler waits for the retrain it interrupted
_POLL_S = 0.1  # how often a running child is checked (tick durations are reported to this)
_MAX_SLEEP_S = 60.0  # re-read the clock at least this often while sleeping (suspend, clock changes)
_MAX_MISSED_COUNTED = 100_000  # "* * * * * *" after a day-long retrain: count no further
_TIME = "%Y-%m-%d %H:%M:%S"
_BUSY = (
    "another twinflow scheduler is already running on {target}: {holder}. Stop it first "
    "(SIGTERM or Ctrl-C); two schedulers on one store would start every retrain twice"
)
# The refusal a retrain prints when another run holds the store (run_guard.hold): who holds it.
_LOCKED_BY = re.compile(
    r"another twinflow run is using .*?: (pid \d+ on .+?\)|a process that has not said who it is)\."
)

Say = Callable[[str], None]


def schedule_folder(pipeline_root: str) -> str:
    """Where ``schedule --local`` keeps its config and tick logs: ``<pipeline_root>/schedule`` (work/schedule
    when the pipeline root is a URI: the child processes' output goes to local files)."""
    return os.path.join("work" if fs.is_remote(pipeline_root) else pipeline_root, "schedule")


def parse_cron(cron: str) -> str:
    """The expression, checked: a ConfigError names it and what is wrong (5 fields, or 6 with seconds first)."""
    expression = " ".join(cron.split())
    try:
        next(CronSim(expression, datetime.now()))
    except (CronSimError, ValueError, StopIteration) as err:
        detail = str(err) or type(err).__name__
        raise ConfigError(
            f"invalid cron expression {cron!r}: {detail}. Write 5 fields, minute hour day-of-month month "
            "day-of-week (e.g. '0 3 * * *' for 03:00 every day), or 6 with seconds first ('*/30 * * * * *')"
        ) from None
    return expression


def next_fire(cron: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (whole seconds, local time)."""
    return next(CronSim(cron, after))


def missed_ticks(cron: str, fired: datetime, now: datetime) -> int:
    """Fire times after ``fired`` up to ``now``: ticks that passed while the last one ran."""
    now = now.replace(microsecond=0)
    count = 0
    for when in CronSim(cron, fired):
        if when > now or count >= _MAX_MISSED_COUNTED:
            break
        count += 1
    return count


@dataclass(frozen=True)
class TickResult:
    """One tick as the line reports it: when, the child's exit status, its summary and log."""

    number: int
    fired: datetime
    returncode: int | None  # None: the command could not be started
    seconds: float
    log: Path
    summary: Path
    missed: int = 0
    error: str = ""


def describe_tick(result: TickResult) -> str:
    """The one line a tick prints; never raises on an odd or missing summary."""
    summary, summary_problem = _read_summary(result.summary)
    parts = [_outcome(result, summary)]
    if summary_problem:
        parts.append(summary_problem)
    parts.extend(_summary_fields(summary))
    seconds = f"{result.seconds:.0f} s" if result.seconds >= 10 else f"{result.seconds:.1f} s"
    line = f"[schedule] {result.fired.strftime(_TIME)} tick {result.number}: {', '.join(parts)} — {seconds}"
    if result.missed:
        line += f"; skipped {result.missed}{'+' if result.missed >= _MAX_MISSED_COUNTED else ''} missed tick(s)"
    return line


def said_no_new_data(result: TickResult) -> bool:
    return result.returncode == 0 and _outcome(result, _read_summary(result.summary)[0]) == "no new data"


def _read_summary(path: Path) -> tuple[dict[str, Any], str]:
    if not path.exists():
        return {}, ""
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return {}, f"summary unreadable ({path.name}: {str(err)[:80]})"
    if not isinstance(summary, dict):
        return {}, f"summary unreadable ({path.name}: not a JSON object)"
    return summary, ""


def _outcome(result: TickResult, summary: dict[str, Any]) -> str:
    code = result.returncode
    if code is None:
        return f"failed: could not start the command ({result.error})"
    if code == 0:
        said = summary.get("outcome")
        if said == "no new data" or (said is None and "no new data" in _log_tail(result.log)):
            return "no new data"
        return "done"
    if code == 3:
        return "stopped: drift or data validation"
    if code == 5:
        match = _LOCKED_BY.search(_log_tail(result.log))
        holder = f" ({match.group(1)})" if match else f" (see {result.log})"
        return f"skipped: another run holds the store{holder}"
    if code in (130, -signal.SIGINT):  # interrupted outside its handler (importing, checking for data): dies of it
        return f"interrupted, see {result.log}"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"failed: killed by {name}, see {result.log}"
    return f"failed (exit {code}), see {result.log}"


def _summary_fields(summary: dict[str, Any]) -> list[str]:
    fields = []
    spans = summary.get("spans")
    if spans is not None:
        fields.append(f"spans {_spans(spans)}")
    drift = summary.get("drift")
    if drift is not None:
        fields.append(f"drift: {_short(drift)}")
    frameworks = summary.get("frameworks")
    if isinstance(frameworks, dict):
        fields.extend(_framework(str(name), row) for name, row in frameworks.items())
    return fields


def _spans(spans: object) -> str:
    """[2, 3] → "2-3"; [1, 3] → "1,3"; anything else as it is."""
    if isinstance(spans, list) and spans and all(isinstance(s, int) and not isinstance(s, bool) for s in spans):
        ordered = sorted(spans)
        if len(ordered) > 1 and ordered == list(range(ordered[0], ordered[-1] + 1)):
            return f"{ordered[0]}-{ordered[-1]}"
        return ",".join(map(str, ordered))
    return _short(spans)


def _framework(name: str, row: object) -> str:
    if not isinstance(row, dict):
        return f"{name} {_short(row)}"
    words = [name]
    accuracy = row.get("test_accuracy")
    if isinstance(accuracy, int | float) and not isinstance(accuracy, bool) and math.isfinite(accuracy):
        words.append(f"{accuracy:.3f}")
    pushed, version, reason = row.get("pushed"), row.get("version"), row.get("reason")
    if pushed is True:
        words.append("pushed" + (f" v{_short(version)}" if version is not None else ""))
    elif pushed is False:
        words.append("not pushed" + (f" ({_short(reason)})" if reason else ""))
    elif reason:
        words.append(f"({_short(reason)})")
    return " ".join(words)


def _short(value: object, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _log_tail(log: Path, size: int = 16_384) -> str:
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


class LocalScheduler:
    """Runs ``command`` at each fire time of ``cron`` until stopped, one run at a time, holding the schedule lock."""

    def __init__(
        self,
        cron: str,
        command: Sequence[str],
        lock_target: str,
        log_dir: str,
        *,
        max_ticks: int | None = None,
        out: Say = print,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.cron = parse_cron(cron)
        if not command:
            raise ConfigError("the scheduled command is empty")
        if shutil.which(command[0]) is None:
            raise ConfigError(f"the scheduled command {command[0]!r} is not an executable file or on PATH")
        if max_ticks is not None and max_ticks < 1:
            raise ConfigError(f"the number of ticks must be at least 1, not {max_ticks}")
        self.command = list(command)
        self.lock_target = lock_target
        self.log_dir = Path(log_dir)
        self.max_ticks = max_ticks
        self.stop_grace_s = stop_grace_s
        self._out = out
        self._stop = threading.Event()
        self._stop_reason = ""
        self._kill_now = False

    def say(self, line: str) -> None:
        self._out(line)
        if self._out is print:
            sys.stdout.flush()  # a journal or container log reads a pipe: show each line as it happens

    def stop(self, reason: str = "stopped") -> None:
        """Ask the loop to stop (any thread): a running retrain gets SIGINT, then the loop returns."""
        if self._stop.is_set():
            self._kill_now = True  # asked twice: do not wait for the retrain any longer
        else:
            self._stop_reason = reason
        self._stop.set()

    def run(self) -> int:
        """Hold the schedule lock and tick until stopped or ``max_ticks`` ran; 0 on a clean stop."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with hold(self.lock_target, suffix=SCHEDULE_LOCK_SUFFIX, busy=_BUSY), _SignalHandlers(self):
            fire = next_fire(self.cron, datetime.now())
            self.say(
                f"[schedule] cron '{self.cron}' for {self.lock_target}: next tick {fire.strftime(_TIME)}; "
                f"logs in {self.log_dir}; stop with Ctrl-C or SIGTERM"
            )
            ticks = 0
            while self._sleep_until(fire):
                ticks += 1
                result = self._tick(ticks, fire)
                now = datetime.now()
                missed = missed_ticks(self.cron, fire, now)
                self.say(describe_tick(replace(result, missed=missed)))
                if said_no_new_data(result):  # the line is the whole story: a minutely cron leaves no files behind
                    result.log.unlink(missing_ok=True)
                    result.summary.unlink(missing_ok=True)
                if self.max_ticks is not None and ticks >= self.max_ticks:
                    self.stop(f"stopped after {ticks} tick(s)")
                    break
                fire = next_fire(self.cron, now)
            self.say(f"[schedule] {self._stop_reason or 'stopped'}")
        return 0

    def _sleep_until(self, fire: datetime) -> bool:
        """Wait for ``fire`` on the stop event; False when stopped first."""
        while not self._stop.is_set():
            remaining = fire.timestamp() - time.time()
            if remaining <= 0:
                return True
            self._stop.wait(min(remaining, _MAX_SLEEP_S))
        return False

    def _tick(self, number: int, fired: datetime) -> TickResult:
        stamp = fired.strftime("%Y%m%d-%H%M%S")
        log, summary = self.log_dir / f"tick-{stamp}.log", self.log_dir / f"tick-{stamp}.summary.json"
        summary.unlink(missing_ok=True)
        env = {**os.environ, SUMMARY_ENV: str(summary)}
        started = time.monotonic()
        with log.open("a") as handle:
            handle.write(f"# twinflow schedule tick {number} at {fired.strftime(_TIME)}: {' '.join(self.command)}\n")
            handle.flush()
            try:
                child = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=env,
                    process_group=0,  # a terminal's Ctrl-C reaches the scheduler only; it forwards one SIGINT
                )
            except OSError as err:
                return TickResult(number, fired, None, time.monotonic() - started, log, summary, error=str(err))
            returncode = self._wait(child)
        return TickResult(number, fired, returncode, time.monotonic() - started, log, summary)

    def _wait(self, child: subprocess.Popen[bytes]) -> int:
        """Wait for the child; once stopping, send it one SIGINT, then SIGKILL after the grace period."""
        deadline: float | None = None
        while True:
            try:
                return child.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                pass
            if not self._stop.is_set():
                continue
            if deadline is None:
                # A retrain's pushes are atomic: interrupting it leaves nothing half-pushed.
                child.send_signal(signal.SIGINT)
                deadline = time.monotonic() + self.stop_grace_s
            elif self._kill_now or time.monotonic() >= deadline:
                child.kill()
                return child.wait()


class _SignalHandlers:
    """SIGTERM and SIGINT stop the scheduler; installed only in the main thread, restored on exit."""

    def __init__(self, scheduler: LocalScheduler) -> None:
        self._scheduler = scheduler
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # The handler runs in the main thread, possibly while it holds the stop event's own lock
        # (inside Event.wait): setting the event from here could deadlock, a helper thread cannot.
        reason = f"stopped by {signal.Signals(signum).name}"
        threading.Thread(target=self._scheduler.stop, args=(reason,), daemon=True).start()


def run_schedule(
    cron: str,
    command: list[str],
    lock_target: str,
    log_dir: str,
    *,
    max_ticks: int | None = None,
    out: Say = print,
    stop_grace_s: float = STOP_GRACE_S,
) -> int:
    """Run ``command`` (a ``twinflow retrain ...`` argv) at each fire time of ``cron``; 0 on a clean stop.

    Raises ConfigError for a bad expression or command, RunLockedError when another scheduler
    holds ``lock_target`` (the metadata file).
    """
    return LocalScheduler(
        cron, command, lock_target, log_dir, max_ticks=max_ticks, out=out, stop_grace_s=stop_grace_s
    ).run()
