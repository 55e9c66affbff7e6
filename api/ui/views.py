"""What the pages show that the API does not compute: words for a schedule, the protection
state of each application, and readable sizes, durations and errors."""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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
# A run may take this long after its fire time before the application counts as at risk.
AT_RISK_GRACE = timedelta(hours=1)
# Fire times looked at for the longest expected gap between two runs.
GAP_SAMPLE = 60


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


@functools.lru_cache(maxsize=1024)
def _longest_gap(expression: str, timezone: str, day: date) -> timedelta | None:
    times = next_times(expression, ZoneInfo(timezone), GAP_SAMPLE)
    if len(times) < 2:
        return None
    return max(b - a for a, b in itertools.pairwise(times))


def expected_gap(policy: BackupPolicy, now: datetime) -> timedelta | None:
    """The longest time the schedule leaves between two runs (None: it no longer fires).

    Computed once a day per schedule: applications mostly share a few schedules, and walking
    60 fire times for each of 50 applications would dominate the overview's time.
    """
    return _longest_gap(policy.schedule, policy.timezone, now.date())


@dataclass(frozen=True)
class Protection:
    """An application's protection at a glance (overview and application page)."""

    policy: BackupPolicy | None
    last_success: BackupExecution | None
    last_failure: BackupExecution | None
    running: BackupExecution | None
    next_run: datetime | None
    at_risk: bool
    risk_reason: str | None

    @property
    def label(self) -> str:
        """The badge: at risk, protected, or waiting for the first backup of a new policy."""
        if self.at_risk:
            return "at risk"
        return "protected" if self.last_success else "first backup pending"


def protection(
    policy: BackupPolicy | None,
    last_success: BackupExecution | None,
    last_failure: BackupExecution | None,
    running: BackupExecution | None,
    now: datetime,
) -> Protection:
    """At risk: no policy, or no success within the schedule's longest gap plus a grace."""
    if policy is None:
        return Protection(None, last_success, last_failure, running, None, True, "no policy")
    zone = ZoneInfo(policy.timezone)
    upcoming = next_times(policy.schedule, zone, 1, after=now) if policy.enabled else []
    gap = expected_gap(policy, now)
    reason = None
    if gap is not None:
        allowed = gap + AT_RISK_GRACE
        since = last_success.completed_at if last_success else None
        created = policy.created_at or now
        if since is None and now - created > allowed:
            reason = "no backup has ever succeeded"
        elif since is not None and now - since > allowed:
            reason = f"no successful backup for {age(since, now)}"
    return Protection(
        policy,
        last_success,
        last_failure,
        running,
        upcoming[0] if upcoming else None,
        reason is not None,
        reason,
    )


async def protections(
    session: AsyncSession, application_ids: Sequence[uuid.UUID], now: datetime
) -> dict[uuid.UUID, Protection]:
    """The protection state of each listed application, from the facts read for all at once."""
    if not application_ids:
        return {}
    facts = await backups.protection_facts(session, application_ids)
    return {
        app_id: protection(
            facts.policies.get(app_id),
            facts.successes.get(app_id),
            facts.failures.get(app_id),
            facts.running.get(app_id),
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
