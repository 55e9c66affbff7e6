"""What the operator CLI reads from a run's answer and prints about it, without a server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cli.client import problem_error
from cli.output import ids
from cli.runs import Lines, Moment, StepNow, moment, progress_line


def step(activity_id: str, name: str, status: str, failure: str | None = None) -> dict[str, Any]:
    return {
        "activity_id": activity_id,
        "step": name,
        "status": status,
        "attempts": 1,
        "scheduled_at": "2026-11-27T20:00:00Z",
        "started_at": None,
        "completed_at": None,
        "last_failure": failure,
    }


def test_the_heartbeat_belongs_to_the_step_it_names() -> None:
    """Parts of a backup run at once; the API's one heartbeat names its step."""
    body = {
        "status": "running",
        "timeline": {
            "steps": [
                step("1", "check_quota", "completed"),
                step("2", "dump_database", "running"),
                step("3", "upload_volume", "running"),
                step("4", "upload_volume", "retrying", "restic: repository is locked"),
            ],
            "progress": {"step": "dump_database", "bytes_done": 300, "total_bytes": 1200},
        },
    }
    assert moment(body) == Moment(
        "running",
        (
            StepNow("2", "dump_database", None, 300, 1200),
            StepNow("3", "upload_volume", None, None, None),
            StepNow("4", "upload_volume", "restic: repository is locked", None, None),
        ),
        ended=(("1", "check_quota", "completed"),),
    )


def test_lines_say_bytes_when_there_are_some_and_time_otherwise() -> None:
    quiet = StepNow("1", "check_quota", None, None, None)
    assert progress_line(quiet, 35.2, None) == "check_quota: running for 35s"
    unknown_total = moment(
        {
            "status": "running",
            "timeline": {
                "steps": [step("3", "dump_database", "running")],
                "progress": {"step": "dump_database", "bytes_done": 5_000_000, "total_bytes": 0},
            },
        }
    ).steps[0]
    assert unknown_total.total is None  # restic reports 0 for a total it does not know
    assert progress_line(unknown_total, 12, 1_000_000) == "dump_database: 5.0 MB, 1.0 MB/s, 12s"
    known = StepNow("5", "upload_volume", None, 250_000_000, 1_000_000_000)
    assert progress_line(known, 61, 25_000_000.0) == (
        "upload_volume: 250.0 MB of 1.0 GB (25%), 25.0 MB/s, 61s"
    )


def test_a_step_that_ran_between_two_reads_is_still_said_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A small backup's steps can start and end between two polls of the CLI."""
    lines = Lines("backup")
    lines.show(moment({"status": "running", "timeline": {"steps": [step("1", "b", "running")]}}))
    ended = [step("1", "b", "completed"), step("2", "dump", "completed")]
    ended.append(step("3", "upload", "timed_out"))
    final = moment({"status": "succeeded", "timeline": {"steps": ended}})
    lines.show(final)
    lines.show(final)
    said = [line.split(" ", 1)[1] for line in capsys.readouterr().err.splitlines()]
    assert said == ["backup running", "b started", "dump completed", "upload timed out"]


def test_no_timeline_yet_is_no_step() -> None:
    assert moment({"status": "pending", "timeline": None}) == Moment("pending", ())


def test_problems_become_one_line_title_and_detail() -> None:
    problem = httpx.Response(
        409,
        json={
            "type": "/problems/conflict",
            "title": "Conflict",
            "status": 409,
            "detail": "the backup is failed;\nonly a backup under way can be cancelled",
        },
    )
    error = problem_error(problem)
    assert error.status == 409
    assert error.message == (
        "Conflict: the backup is failed; only a backup under way can be cancelled"
    )
    plain = problem_error(httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert plain.message == "HTTP 502: <html>Bad Gateway</html>"


def test_ids_of_an_object_and_of_a_page() -> None:
    assert ids({"id": "a", "items_count": 2}) == ["a"]
    assert ids({"items": [{"id": "b"}, {"id": "c"}], "next_cursor": None}) == ["b", "c"]
