"""What the pages show that the API does not compute: words for a schedule, the protection
state of each application, and readable sizes, durations and errors."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cron_descriptor import (  # type: ignore[import-untyped]
    CasingTypeEnum,
    Options,
    get_description,
)
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api.problems import Problem
from core.states import FINISHED, RunStatus
from schedules.cron import MACROS, CronError, check, check_timezone, next_times
from services import backups

if TYPE_CHECKING:
    from db.models import BackupExecution, BackupPolicy
    from services.overdue import Standing

# Macros as the five fields they stand for, so the words come out the same way.
_MACRO_FIELDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
assert set(_MACRO_FIELDS) == set(MACROS)


def schedule_words(expression: str) -> str:
    """The schedule in plain words, read as Temporal runs it (both day fields must match)."""
    fields = _MACRO_FIELDS.get(expression, expression)
    options = Options()
    options.use_24hour_time_format = True
    options.casing_type = CasingTypeEnum.Sentence
    words = str(get_description(fields, options))
    parts = fields.split()
    if len(parts) == 5 and parts[2] != "*" and parts[4] != "*":
        words = words.replace(", or on ", ", only if that day is a ")
    return words


@dataclass(frozen=True)
class Preview:
    """What a schedule typed into the policy form means, or why it is refused."""

    words: str | None
    next_runs: list[datetime]
    error: str | None


def preview(expression: str, timezone: str, min_interval: timedelta, count: int = 5) -> Preview:
    """A schedule as typed: the same checks the policy route makes (schedules/cron.py), then
    its words and next runs."""
    try:
        zone = check_timezone(timezone)
        check(expression, zone, min_interval)
    except CronError as exc:
        return Preview(None, [], str(exc))
    return saved(expression, timezone, count)


def saved(expression: str, timezone: str, count: int = 5) -> Preview:
    """A stored policy's schedule, checked when it was saved: its words and next runs."""
    return Preview(
        schedule_words(expression), next_times(expression, ZoneInfo(timezone), count), None
    )


@dataclass(frozen=True)
class Protection:
    """An application's protection at a glance (overview and application page).

    ``overdue_since`` is the backup policy's overdue verdict (``core/overdue.py``, read by
    ``services/overdue.py`` as the API, CLI and metrics read it): set while overdue, None
    otherwise, also while the policy is paused (pausing is a decision, not a miss).
    """

    policy: BackupPolicy | None
    last_success: BackupExecution | None
    last_failure: BackupExecution | None
    running: BackupExecution | None
    next_run: datetime | None
    overdue_since: datetime | None

    @property
    def label(self) -> str:
        """The badge: no policy, overdue, protected, or waiting for the first backup."""
        if self.policy is None:
            return "no policy"
        if self.overdue_since is not None:
            return "backup overdue"
        return "protected" if self.last_success else "first backup pending"

    @property
    def unprotected(self) -> bool:
        """Shown in red: nothing protects the application, or a backup is overdue."""
        return self.policy is None or self.overdue_since is not None


def protection(
    policy: BackupPolicy | None,
    last_success: BackupExecution | None,
    last_failure: BackupExecution | None,
    running: BackupExecution | None,
    standing: Standing | None,
    now: datetime,
) -> Protection:
    """The facts read for the application and its overdue verdict, side by side."""
    upcoming = []
    if policy is not None and policy.enabled:
        upcoming = next_times(policy.schedule, ZoneInfo(policy.timezone), 1, after=now)
    verdict = standing.backup if standing is not None else None
    return Protection(
        policy,
        last_success,
        last_failure,
        running,
        upcoming[0] if upcoming else None,
        verdict.overdue_since if verdict is not None else None,
    )


async def protections(
    session: AsyncSession,
    application_ids: Sequence[uuid.UUID],
    standings: Mapping[uuid.UUID, Standing],
    now: datetime,
) -> dict[uuid.UUID, Protection]:
    """The protection state of each listed application, from the facts read for all at once
    and the overdue verdicts (``services/overdue.py::standings``) the page already read."""
    if not application_ids:
        return {}
    facts = await backups.protection_facts(session, application_ids)
    return {
        app_id: protection(
            facts.policies.get(app_id),
            facts.successes.get(app_id),
            facts.failures.get(app_id),
            facts.running.get(app_id),
            standings.get(app_id),
            now,
        )
        for app_id in application_ids
    }


def age(then: datetime | None, now: datetime | None = None) -> str:
    """'3 h 5 min', '2 d 4 h': the age of a moment, coarse enough to read at a glance."""
    if then is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    return duration(max(seconds, 0))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def size(value: int | float | None) -> str:
    """Bytes in binary units, the way restic and df print them."""
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def run_seconds(started: datetime | None, completed: datetime | None) -> float | None:
    if started is None or completed is None:
        return None
    return (completed - started).total_seconds()


def rate(progress: dict[str, Any] | None, steps: list[dict[str, Any]], now: datetime) -> str | None:
    """Bytes per second of the running data step, from its heartbeat and its start time."""
    if not progress or not progress.get("bytes_done"):
        return None
    for step in steps:
        started = step.get("started_at")
        if step.get("step") == progress.get("step") and step.get("status") == "running" and started:
            elapsed = (now - started).total_seconds()
            if elapsed > 0:
                return f"{size(progress['bytes_done'] / elapsed)}/s"
    return None


FINAL = (*FINISHED, RunStatus.PRUNED)


def with_live_state(run: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What a backup's or restore's live part needs beyond the API's answer: whether it still
    changes (the row is not final, or its workflow still runs: retention comes after the
    record) and the running step's rate."""
    timeline = run.get("timeline") or {}
    run["live"] = run["status"] not in FINAL or timeline.get("workflow_status") == "running"
    run["rate"] = rate(timeline.get("progress"), timeline.get("steps", []), now)
    return run


def _field(loc: Sequence[Any]) -> str:
    """'body.connection.server' → 'connection server': the form's words, not the API's path."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return " ".join(parts).replace("_", " ") or "form"


def in_words(exc: Exception) -> str:
    """An API error as one sentence a person can act on."""
    if isinstance(exc, Problem):
        errors = exc.extra.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(
                f"{_field(str(e['field']).split('.'))}: {e['message']}" for e in errors
            )
        return exc.detail
    if isinstance(exc, RequestValidationError | ValidationError):
        return "; ".join(f"{_field(err['loc'])}: {err['msg']}" for err in exc.errors())
    return str(exc)
