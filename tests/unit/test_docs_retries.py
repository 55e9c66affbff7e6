"""docs/architecture.md's table of retry budgets says what ``workflows/step_kinds.py`` does.

The table is the readable copy of every kind of step's queue, timeouts and retries; each row
is rendered here from the kind itself and must equal the row in the docs, and every kind
has its row. A budget changed in ``workflows/retries.py`` fails this test until the docs
say the new number.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from temporalio.common import RetryPolicy

from contracts.task_queues import DATA_TASK_QUEUE
from workflows import step_kinds
from workflows.step_kinds import StepKind

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
START = "<!-- retry budgets: checked by tests/unit/test_docs_retries.py -->"
HEADER = (
    "| kind | queue | start-to-close | schedule-to-close | heartbeat | attempts | backoff"
    " | waits between attempts |"
)


def duration(value: timedelta | None) -> str:
    if value is None:
        return "none"
    seconds, words = int(value.total_seconds()), []
    for unit, size in (("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            words.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(words)


def waits(kind: StepKind, policy: RetryPolicy) -> str:
    """The waits between all attempts of a limited policy (Temporal's backoff)."""
    if not policy.maximum_attempts:
        return "until schedule-to-close" if "schedule_to_close_timeout" in kind else "no limit"
    cap = policy.maximum_interval or policy.initial_interval * 100
    total, wait = timedelta(0), policy.initial_interval
    for _ in range(policy.maximum_attempts - 1):
        total += min(wait, cap)
        wait = wait * policy.backoff_coefficient
    return duration(total)


def row(name: str, kind: StepKind) -> str:
    policy = kind.get("retry_policy") or RetryPolicy()
    cap = policy.maximum_interval or policy.initial_interval * 100
    cells = [
        f"`{name}`",
        "data" if kind.get("task_queue") == DATA_TASK_QUEUE else "the workflow's",
        duration(kind.get("start_to_close_timeout")),
        duration(kind.get("schedule_to_close_timeout")),
        duration(kind.get("heartbeat_timeout")),
        str(policy.maximum_attempts or "unlimited"),
        f"{duration(policy.initial_interval)}, x{policy.backoff_coefficient:g}, at most"
        f" {duration(cap)}",
        waits(kind, policy),
    ]
    return "| " + " | ".join(cells) + " |"


def kinds() -> dict[str, StepKind]:
    """Every public kind of step (private ones only build the public ones)."""
    return {
        name: value
        for name, value in vars(step_kinds).items()
        if re.fullmatch(r"[A-Z][A-Z_]*", name) and isinstance(value, dict) and name != "WAIT"
    }


def documented() -> list[str]:
    lines = DOC.read_text().splitlines()
    start = lines.index(START)
    assert lines[start + 1] == HEADER
    table = []
    for line in lines[start + 3 :]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def test_every_kind_of_step_is_in_the_docs_as_the_code_has_it() -> None:
    expected = [row(name, kind) for name, kind in kinds().items()]
    assert documented() == expected, "docs/architecture.md's table, as the code has it:\n" + (
        "\n".join([HEADER, "|---" * 8 + "|", *expected])
    )
