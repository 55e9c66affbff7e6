"""The stalled-archiving rule (core/archive_lag.py) and the Prometheus rule that alerts on the
same question: its threshold and its ``for`` are read from deploy/prometheus/cairn-rules.yml and
must be the rule's, so ``archive.overdue`` and ``CairnArchiverStalled`` cannot drift apart."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from core import archive_lag

RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "cairn-rules.yml"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
UNITS = {"s": 1, "m": 60, "h": 3600}


def test_the_alert_rule_uses_the_same_threshold_and_duration() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == "CairnArchiverStalled")
    found = re.search(r">\s*([0-9]+)\s*$", rule["expr"].strip())
    assert found, rule["expr"]
    assert timedelta(seconds=int(found.group(1))) == archive_lag.STALLED_AFTER
    duration = re.fullmatch(r"([0-9]+)([smh])", rule["for"])
    assert duration, rule["for"]
    seconds = int(duration.group(1)) * UNITS[duration.group(2)]
    assert timedelta(seconds=seconds) == archive_lag.STALLED_FOR


def test_stalled_fifteen_minutes_after_the_last_archived_moment() -> None:
    on = NOW - timedelta(days=3)
    last = NOW - timedelta(minutes=14, seconds=59)
    assert not archive_lag.judge(on, last, NOW).overdue
    late = archive_lag.judge(on, NOW - timedelta(minutes=15), NOW)
    assert late.overdue and late.overdue_since == NOW
    # nothing shipped yet, or turned on again over an old archive: judged from its start
    assert not archive_lag.judge(NOW - timedelta(minutes=1), None, NOW).overdue
    assert not archive_lag.judge(NOW - timedelta(minutes=1), NOW - timedelta(days=2), NOW).overdue
    never = archive_lag.judge(NOW - timedelta(hours=1), None, NOW)
    assert never.overdue_since == NOW - timedelta(minutes=45)
