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
from rich.console import Console
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

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


@dataclass(frozen=True)
class Moment:
    """What one read of the run says."""

    status: str
    key: str  # the step's activity id, so two uploads of one kind are two steps
    step: str  # its name, or the run's status between steps
    retrying: str | None  # the last failure while the step waits for its next attempt
    done: int | None  # bytes
    total: int | None  # bytes; None while unknown


def moment(body: dict[str, Any]) -> Moment:
    timeline = body.get("timeline") or {}
    active = [s for s in timeline.get("steps") or [] if s["status"] in ACTIVE_STEP]
    step = active[-1] if active else None
    progress = timeline.get("progress") or {}
    name = progress.get("step") or (step["step"] if step else body["status"])
    retrying = step["last_failure"] if step and step["status"] == "retrying" else None
    return Moment(
        status=body["status"],
        key=step["activity_id"] if step else name,
        step=name,
        retrying=retrying,
        done=progress.get("bytes_done"),
        total=progress.get("total_bytes") or None,
    )


class Display(Protocol):
    def show(self, now: Moment) -> None: ...
    def say(self, message: str) -> None: ...
    def close(self) -> None: ...


class Bar:
    """A rich progress bar per step on stderr; finished steps stay listed above."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self.progress.start()
        self.task: TaskID | None = None
        self.key: str | None = None

    def show(self, now: Moment) -> None:
        if now.key != self.key:
            self._finish()
            self.task, self.key = self.progress.add_task(now.step, total=None), now.key
        assert self.task is not None
        label = escape(now.step)
        if now.retrying:
            label += f" [yellow](retrying: {escape(now.retrying)})"
        self.progress.update(self.task, description=label, total=now.total, completed=now.done or 0)

    def _finish(self) -> None:
        if self.task is not None:
            task = self.progress.tasks[self.task]
            self.progress.update(
                self.task, total=task.completed or 1, completed=task.completed or 1
            )
            self.progress.stop_task(self.task)

    def say(self, message: str) -> None:
        self.progress.console.print(message, markup=False, highlight=False)

    def close(self) -> None:
        self._finish()
        self.progress.stop()


def progress_line(now: Moment, elapsed: float, rate: float | None) -> str:
    """``step: done of total (percent), rate, elapsed``; the step and its time without bytes."""
    if now.done is None:
        return f"{now.step}: running for {elapsed:.0f}s"
    of = f" of {decimal(now.total)} ({100 * now.done / now.total:.0f}%)" if now.total else ""
    per_second = f", {decimal(int(rate))}/s" if rate is not None else ""
    return f"{now.step}: {decimal(now.done)}{of}{per_second}, {elapsed:.0f}s"


class Lines:
    """Timestamped lines on stderr: each new step or retry, and progress every few seconds."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.key: str | None = None
        self.retrying: str | None = None
        self.step_started = self.last_line = time.monotonic()
        self.last_done: int | None = None

    def say(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        note(f"{stamp} {message}")

    def show(self, now: Moment) -> None:
        if now.status in OUTCOMES:
            return  # the outcome is said once, by outcome()
        clock = time.monotonic()
        if now.key != self.key:
            self.key, self.retrying, self.last_done = now.key, None, None
            self.step_started = self.last_line = clock
            step = f": {now.step}" if now.step != now.status else ""
            self.say(f"{self.kind} {now.status}{step}")
        if now.retrying and now.retrying != self.retrying:
            self.say(f"{now.step} failed, retrying: {now.retrying}")
        self.retrying = now.retrying
        if clock - self.last_line < LINE_SECONDS:
            return
        rate = None
        if now.done is not None and self.last_done is not None:
            rate = (now.done - self.last_done) / (clock - self.last_line)
        self.say(progress_line(now, clock - self.step_started, rate))
        self.last_done = now.done
        self.last_line = clock

    def close(self) -> None:
        pass


def follow(api: Api, path: str, kind: str, watch_command: str) -> dict[str, Any]:
    """Polls ``path`` until the run's row is final; returns the last answer.

    Ctrl-C stops following, not the run; the message says how to follow it again.
    """
    display: Display = Bar(kind) if sys.stderr.isatty() else Lines(kind)
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
