"""What the web UI computes itself: schedule words, the protection badge, errors in words, the
progress line, and the session-bound CSRF token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fastapi.exceptions import RequestValidationError

from api.problems import Problem, invalid
from api.ui import csrf, views
from api.ui.pages.shared import templates
from core.overdue import Verdict
from db.models import BackupExecution, BackupPolicy
from services.overdue import Standing

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday


def test_schedule_words_read_the_day_fields_as_temporal_does() -> None:
    assert views.schedule_words("30 2 * * mon-fri") == "At 02:30, Monday through Friday"
    assert views.schedule_words("@daily") == "At 00:00"
    friday_13th = views.schedule_words("0 0 13 * 5")
    assert friday_13th == "At 00:00, on day 13 of the month, only if that day is a Friday"


def test_preview_checks_like_the_policy_route_then_lists_runs_in_the_zone() -> None:
    minimum = timedelta(minutes=15)
    too_often = views.preview("* * * * *", "UTC", minimum)
    assert too_often.error and "at most every 15 minutes" in too_often.error
    assert views.preview("0 3 * * *", "Mars/Base", minimum).error
    fine = views.preview("0 3 * * *", "Europe/Berlin", minimum, count=5)
    assert fine.error is None and fine.words == "At 03:00"
    assert len(fine.next_runs) == 5
    assert all(t.hour == 3 and str(t.tzinfo) == "Europe/Berlin" for t in fine.next_runs)


def _policy(created: datetime, schedule: str = "0 3 * * *", enabled: bool = True) -> BackupPolicy:
    return BackupPolicy(
        id=uuid.uuid4(),
        application_id=uuid.uuid4(),
        storage_id=uuid.uuid4(),
        schedule=schedule,
        timezone="UTC",
        enabled=enabled,
        created_at=created,
    )


def _success(completed: datetime) -> BackupExecution:
    return BackupExecution(id=uuid.uuid4(), status="succeeded", completed_at=completed)


def _standing(backup: Verdict | None) -> Standing:
    return Standing(uuid.uuid4(), uuid.uuid4(), "shop", backup, None, None, None)


def test_the_badge_is_the_overdue_rules_verdict() -> None:
    """The badge reads the verdict the API, CLI and metrics read (core/overdue.py), no rule
    of its own: the same facts give the same word."""
    old = NOW - timedelta(days=30)
    no_policy = views.protection(None, None, None, None, None, NOW)
    assert (no_policy.label, no_policy.unprotected) == ("no policy", True)
    due = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)
    late = Verdict(overdue=True, due_at=due, deadline=due + timedelta(hours=6))
    overdue = views.protection(
        _policy(old), _success(NOW - timedelta(days=2)), None, None, _standing(late), NOW
    )
    assert (overdue.label, overdue.unprotected) == ("backup overdue", True)
    assert overdue.overdue_since == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    in_time = Verdict(overdue=False, due_at=due, deadline=due + timedelta(hours=6))
    recent = views.protection(
        _policy(old), _success(NOW - timedelta(hours=20)), None, None, _standing(in_time), NOW
    )
    assert (recent.label, recent.unprotected, recent.overdue_since) == ("protected", False, None)
    assert recent.next_run == datetime(2026, 3, 5, 3, 0, tzinfo=recent.next_run.tzinfo)
    fresh = views.protection(
        _policy(NOW - timedelta(hours=1)), None, None, None, _standing(in_time), NOW
    )
    assert (fresh.label, fresh.unprotected) == ("first backup pending", False)
    # a paused policy is not judged (pausing is a decision) and has no next run
    paused = views.protection(
        _policy(old, enabled=False),
        _success(NOW - timedelta(days=3)),
        None,
        None,
        _standing(None),
        NOW,
    )
    assert (paused.next_run, paused.overdue_since, paused.label) == (None, None, "protected")


def test_errors_in_words() -> None:
    assert views.in_words(Problem(409, "conflict", "Conflict", "busy")) == "busy"
    one = invalid("body.connection.server", "must be an IP address", "x")
    assert views.in_words(one) == "connection server: must be an IP address"
    validation = RequestValidationError(
        [{"loc": ("body", "retention_days"), "msg": "too small", "type": "x"}]
    )
    assert views.in_words(validation) == "retention days: too small"


def test_sizes_durations_and_rate() -> None:
    assert (views.size(None), views.size(512), views.size(3 * 1024**3)) == ("—", "512 B", "3.0 GiB")
    assert views.duration(3725) == "1 h 2 min"
    assert views.age(NOW - timedelta(days=2, hours=3), NOW) == "2 d 3 h"
    steps = [
        {"step": "upload_volume", "status": "running", "started_at": NOW - timedelta(seconds=4)}
    ]
    progress = {"step": "upload_volume", "bytes_done": 8 * 1024**2}
    assert views.rate(progress, steps, NOW) == "2.0 MiB/s"
    assert views.rate({"step": "dump_database", "bytes_done": 0}, steps, NOW) is None


def test_the_live_fragment_shows_progress_and_polls_only_while_live() -> None:
    backup = {
        "id": uuid.uuid4(),
        "status": "running",
        "started_at": NOW,
        "completed_at": None,
        "size_bytes": None,
        "error_message": None,
        "seconds": None,
        "live": True,
        "rate": "2.0 MiB/s",
        "timeline": {
            "workflow_status": "running",
            "steps": [],
            "progress": {
                "step": "upload_volume",
                "bytes_done": 1024**2,
                "total_bytes": 4 * 1024**2,
                "percent": 25.0,
            },
        },
    }
    access = type(
        "Access", (), {"application": type("App", (), {"id": uuid.uuid4()}), "can_write": False}
    )
    template = templates.env.get_template("_backup_live.html")
    running = template.render(backup=backup, access=access, csrf="t")
    assert "1.0 MiB of 4.0 MiB (25.0 %)" in running and "2.0 MiB/s" in running
    assert 'hx-trigger="every 1s"' in running
    done = template.render(backup={**backup, "status": "succeeded", "live": False}, access=access)
    assert "hx-trigger" not in done


def test_csrf_token_is_bound_to_the_session() -> None:
    one, two = csrf.token_for("session-one"), csrf.token_for("session-two")
    assert one != two and len(one) == 64
    assert one == csrf.token_for("session-one")
    assert "session-one" not in one


def test_the_application_summary_says_what_each_platform_holds() -> None:
    summary = templates.env.get_template("_macros.html").module.platform_summary  # type: ignore[attr-defined]
    local = {"kind": "local", "database_url": "postgresql://shop@db/shop", "volumes": {"up": "/d"}}
    assert str(summary(local)) == "database postgresql://shop@db/shop · volumes up"
    kube = {
        "kind": "kubernetes",
        "namespace": "shop",
        "database": {"host": "db.shop.svc", "dbname": "shop"},
        "volumes": {"data": "data-pvc", "uploads": "uploads-pvc"},
        "config": {"include": "all"},
    }
    assert str(summary(kube)) == (
        "Kubernetes namespace shop · database shop on db.shop.svc"
        " · volumes data (claim data-pvc), uploads (claim uploads-pvc) · configuration all"
    )
    bare = {
        "kind": "kubernetes",
        "namespace": "x",
        "database": None,
        "volumes": {},
        "config": {"include": "none"},
    }
    assert (
        str(summary(bare))
        == "Kubernetes namespace x · database none · volumes none · configuration none"
    )
