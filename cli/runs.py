"""Backups and restores alike: shown with their steps, and followed until they end.

Following reads the API's timeline and live progress. On a terminal (stderr) a rich
progress bar per step shows bytes done/total, rate and elapsed time; otherwise one
timestamped line per change, and a progress line every few seconds, suit logs. The step's
progress is whatever the API's ``timeline.progress`` holds (the heartbeat of the running
data step); while it is empty (a step without byte counts) the step's name and elapsed
time are shown. The outcome decides the exit status."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

import click
from rich.console import Console, RenderableType
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from cli.client import Api, Exit, Interrupted, app_option, with_api
from cli.output import Field, Output, note, output_options, when

POLL_SECONDS = 1.0
LINE_SECONDS = 10.0  # a progress line at most this often when not on a terminal
OUTCOMES = {
    "succeeded": Exit.OK,
    "pruned": Exit.OK,  # a backup that succeeded and has since expired
    "failed": Exit.FAILED,
    "cancelled": Exit.CANCELLED,
}
ACTIVE_STEP = ("running", "retrying", "cancelling", "scheduled")
ENDED_STEP = ("completed", "failed", "timed_out", "cancelled")


@dataclass(frozen=True)
class StepNow:
    """A step under way."""

    key: str  # its activity id, so two uploads of one kind are two steps
    name: str
    retrying: str | None  # the last failure while the step waits for its next attempt
    done: int | None  # bytes, when this read carries the step's heartbeat
    total: int | None  # bytes; None while unknown


@dataclass(frozen=True)
class Moment:
    """What one read of the run says: its status and the steps under way (parts of a backup
    run at once)."""

    status: str
    steps: tuple[StepNow, ...]
    # (activity id, step, status) of the steps that have ended: a short step may start and
    # end between two reads, and is still said
    ended: tuple[tuple[str, str, str], ...] = ()


def moment(body: dict[str, Any]) -> Moment:
    timeline = body.get("timeline") or {}
    progress = timeline.get("progress") or {}
    steps = timeline.get("steps") or []
    active = [s for s in steps if s["status"] in ACTIVE_STEP]
    # The API reports one heartbeat, named by step: the last step under way of that name.
    owner = next(
        (s["activity_id"] for s in reversed(active) if s["step"] == progress.get("step")), None
    )
    return Moment(
        status=body["status"],
        steps=tuple(
            StepNow(
                key=s["activity_id"],
                name=s["step"],
                retrying=s["last_failure"] if s["status"] == "retrying" else None,
                done=progress.get("bytes_done") if s["activity_id"] == owner else None,
                total=(progress.get("total_bytes") or None) if s["activity_id"] == owner else None,
            )
            for s in active
        ),
        ended=tuple(
            (s["activity_id"], s["step"], s["status"]) for s in steps if s["status"] in ENDED_STEP
        ),
    )


class Display(Protocol):
    def show(self, now: Moment) -> None: ...
    def say(self, message: str) -> None: ...
    def close(self) -> None: ...


class WhenSized(ProgressColumn):
    """Shows ``column`` only for a step that reports bytes (a quota check has none)."""

    def __init__(self, column: ProgressColumn) -> None:
        super().__init__()
        self.column = column

    def render(self, task: Task) -> RenderableType:
        return self.column.render(task) if task.fields.get("sized") else Text("")


class Bar:
    """A rich progress bar per step on stderr; finished steps stay listed above."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            WhenSized(DownloadColumn()),
            WhenSized(TransferSpeedColumn()),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self.progress.start()
        self.tasks: dict[str, TaskID] = {}
        self.finished: set[str] = set()

    def show(self, now: Moment) -> None:
        for key, name, _ in now.ended:
            if key not in self.tasks and key not in self.finished:
                self.tasks[key] = self.progress.add_task(escape(name), total=None, sized=False)
        if now.status in OUTCOMES:
            return  # the outcome is said once, by outcome()
        under_way = {step.key for step in now.steps}
        for key in [k for k in self.tasks if k not in under_way]:
            self._finish(key)
        for step in now.steps:
            if step.key not in self.tasks:
                self.tasks[step.key] = self.progress.add_task(step.name, total=None, sized=False)
            label = escape(step.name)
            if step.retrying:
                label += f" [yellow](retrying: {escape(step.retrying)})"
            task = self.tasks[step.key]
            self.progress.update(task, description=label)
            if step.done is not None:  # else the heartbeat shown is another step's
                self.progress.update(task, total=step.total, completed=step.done, sized=True)

    def _finish(self, key: str) -> None:
        self.finished.add(key)
        task_id = self.tasks.pop(key)
        task = self.progress.tasks[task_id]
        end = max(task.total or 0, task.completed) if task.fields.get("sized") else 1
        self.progress.update(task_id, total=end, completed=end)
        self.progress.stop_task(task_id)

    def say(self, message: str) -> None:
        self.progress.console.print(message, markup=False, highlight=False)

    def close(self) -> None:
        for key in list(self.tasks):
            self._finish(key)
        self.progress.stop()


def progress_line(step: StepNow, elapsed: float, rate: float | None) -> str:
    """``step: done of total (percent), rate, elapsed``; the step and its time without bytes."""
    if step.done is None:
        return f"{step.name}: running for {elapsed:.0f}s"
    of = f" of {decimal(step.total)} ({100 * step.done / step.total:.0f}%)" if step.total else ""
    per_second = f", {decimal(int(rate))}/s" if rate is not None else ""
    return f"{step.name}: {decimal(step.done)}{of}{per_second}, {elapsed:.0f}s"


class Lines:
    """Timestamped lines on stderr: the run's status, each step that starts or retries, and
    the progress of the steps under way every few seconds."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.status: str | None = None
        self.started: dict[str, float] = {}
        self.retrying: dict[str, str | None] = {}
        self.last_done: dict[str, int] = {}
        self.last_line = time.monotonic()

    def say(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        note(f"{stamp} {message}")

    def show(self, now: Moment) -> None:
        clock = time.monotonic()
        for key, name, status in now.ended:
            if key not in self.started:  # it ran between two reads
                self.started[key] = clock
                self.say(f"{name} {status.replace('_', ' ')}")
        if now.status in OUTCOMES:
            return  # the outcome is said once, by outcome()
        if now.status != self.status:
            self.status = now.status
            self.say(f"{self.kind} {now.status}")
        for step in now.steps:
            if step.key not in self.started:
                self.started[step.key] = clock
                self.say(f"{step.name} started")
            if step.retrying and step.retrying != self.retrying.get(step.key):
                self.say(f"{step.name} failed, retrying: {step.retrying}")
            self.retrying[step.key] = step.retrying
        if clock - self.last_line < LINE_SECONDS:
            return
        for step in now.steps:
            before = self.last_done.get(step.key)
            rate = None
            if step.done is not None and before is not None:
                rate = (step.done - before) / (clock - self.last_line)
            self.say(progress_line(step, clock - self.started[step.key], rate))
            if step.done is not None:
                self.last_done[step.key] = step.done
        self.last_line = clock

    def close(self) -> None:
        pass


def follow(api: Api, path: str, kind: str, watch_command: str) -> dict[str, Any]:
    """Polls ``path`` until the run's row is final; returns the last answer.

    Ctrl-C stops following, not the run; the message says how to follow it again.
    """
    display: Display = Bar() if sys.stderr.isatty() else Lines(kind)
    try:
        while True:
            body: dict[str, Any] = api.poll(path, on_wait=lambda m: display.say(f"waiting: {m}"))
            display.show(moment(body))
            if body["status"] in OUTCOMES:
                return body
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped following; the {kind} goes on (follow it again: {watch_command})"
        ) from None
    finally:
        display.close()


def outcome(body: dict[str, Any], kind: str) -> int:
    """Says how the run ended (stderr) and returns the exit status that means it."""
    status = body["status"]
    if status in ("succeeded", "pruned"):
        took = ""
        if body.get("started_at") and body.get("completed_at"):
            seconds = (
                datetime.fromisoformat(body["completed_at"])
                - datetime.fromisoformat(body["started_at"])
            ).total_seconds()
            took = f" in {seconds:.0f}s"
        stored = f", {decimal(body['size_bytes'])}" if body.get("size_bytes") else ""
        note(f"{kind} {body['id']} {status}{took}{stored}")
    else:
        note(f"{kind} {body['id']} {status}: {body.get('error_message') or 'no reason recorded'}")
    return OUTCOMES[status]


STEP_COLUMNS: list[Field] = [
    ("step", "step"),
    ("status", "status"),
    ("attempts", "attempts"),
    ("started", lambda s: when(s["started_at"])),
    ("completed", lambda s: when(s["completed_at"])),
    ("last failure", "last_failure"),
]


@dataclass(frozen=True)
class RunKind:
    """What the commands that show, start, follow and cancel a run need to know of its kind."""

    name: str  # backup | restore
    fields: Sequence[Field]

    def path(self, app_id: str, run_id: str | None = None) -> str:
        return f"/applications/{app_id}/{self.name}s" + (f"/{run_id}" if run_id else "")

    def show(self, out: Output, body: dict[str, Any]) -> None:
        """The run, with its steps when shown as a table."""
        out.record(body, self.fields)
        timeline = body.get("timeline")
        if out.format == "table" and not out.quiet and timeline and timeline["steps"]:
            out.rows(timeline["steps"], STEP_COLUMNS, title="steps")
        if out.format == "table" and not out.quiet and body.get("timeline_error"):
            note(body["timeline_error"])

    def follow_to_end(self, api: Api, out: Output, app_id: str, run_id: str) -> NoReturn:
        """Follows the run to its end, prints it, and exits with the status its outcome means."""
        again = f"cairn {self.name}s watch --app {app_id} {run_id}"
        body = follow(api, self.path(app_id, run_id), self.name, again)
        code = outcome(body, self.name)
        self.show(out, body)
        click.get_current_context().exit(code)

    def started(
        self, api: Api, out: Output, app_id: str, accepted: dict[str, Any], wait: bool
    ) -> None:
        """A run the API accepted: printed at once, or (``--wait``) followed to its end."""
        if not wait:
            out.record(accepted, self.fields)
            return
        note(f"{self.name} {accepted['id']} started; Temporal UI: {accepted['temporal_ui_url']}")
        self.follow_to_end(api, out, app_id, accepted["id"])

    def add_commands(self, group: click.Group, cancel_help: str) -> None:
        """``get``, ``watch`` and ``cancel``, alike for every kind of run."""
        name, run_id = self.name, click.argument("run_id", metavar=f"{self.name.upper()}_ID")

        @group.command("get", help=f"One {name} with its steps and live progress.")
        @app_option
        @run_id
        @output_options
        @with_api
        def get(api: Api, app_id: str, run_id: str, out: Output) -> None:
            self.show(out, api.get(self.path(app_id, run_id)))

        @group.command(
            "watch",
            help=f"Follow a {name} until it ends; exit 0 succeeded, 1 failed, 2 cancelled.\n\n"
            f"Ctrl-C stops following, not the {name}.",
        )
        @app_option
        @run_id
        @output_options
        @with_api
        def watch(api: Api, app_id: str, run_id: str, out: Output) -> None:
            self.follow_to_end(api, out, app_id, run_id)

        @group.command("cancel", help=cancel_help)
        @app_option
        @run_id
        @output_options
        @with_api
        def cancel(api: Api, app_id: str, run_id: str, out: Output) -> None:
            out.record(api.post(f"{self.path(app_id, run_id)}/cancel"), self.fields)
