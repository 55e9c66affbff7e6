"""When an application's continuous archiving is stalled: the one rule, pure.

The archiver ships every 5 s even while the database is idle (docs/pitr.md), so a last
archived moment (the newest shipment's ``until``) older than ``STALLED_AFTER`` means commits
no longer reach the storage. The Prometheus rule ``CairnArchiverStalled`` fires once that has
lasted ``STALLED_FOR`` (its ``for``); the notices (``archive.overdue``, services/overdue.py)
are told from the same moment: tests/unit/test_archive_lag.py reads both numbers back from
deploy/prometheus/cairn-rules.yml and fails when they differ.

Judged from the later of the last archived moment and when archiving was turned on, so an
archiver just started (nothing shipped yet) or turned on again over an old archive has the
same time to ship as one that stopped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.overdue import Verdict

STALLED_AFTER = timedelta(seconds=300)  # nothing archived for over 5 minutes ...
STALLED_FOR = timedelta(minutes=10)  # ... for 10 minutes


def judge(on_since: datetime, last_archived: datetime | None, now: datetime) -> Verdict:
    """Stalled (``overdue``) from ``STALLED_AFTER + STALLED_FOR`` after the last archived
    moment (or archiving's start, whichever is later); the period is named by that deadline."""
    anchor = max(on_since, last_archived) if last_archived is not None else on_since
    deadline = anchor + STALLED_AFTER + STALLED_FOR
    return Verdict(overdue=now >= deadline, due_at=anchor + STALLED_AFTER, deadline=deadline)
