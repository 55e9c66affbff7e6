"""The nearly-full rule (core/nearly_full.py) and the Prometheus rules that alert on the same
question: their thresholds are read from deploy/prometheus/cairn-rules.yml and must be the
rule's, so the channels' ``storage.nearly_full`` and the alerts cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from core import nearly_full
from core.units import GIB

RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "cairn-rules.yml"


def _threshold(alert: str) -> tuple[str, float]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    expr = next(r["expr"] for g in groups for r in g["rules"] if r.get("alert") == alert)
    found = re.search(r"([<>])\s*([0-9.]+)\s*$", expr.strip())
    assert found, expr
    return found.group(1), float(found.group(2))


def test_the_alert_rules_use_the_same_thresholds() -> None:
    assert _threshold("CairnStorageNearlyFull") == (">", nearly_full.STORAGE_USED)
    assert _threshold("CairnStorageFilesystemNearlyFull") == ("<", nearly_full.FILESYSTEM_FREE)
    assert _threshold("CairnWorkspaceQuotaNearlyFull") == (">", nearly_full.QUOTA_USED)


def test_past_the_threshold_and_not_at_it() -> None:
    capacity = 10 * GIB
    assert nearly_full.storage(9 * GIB, capacity) is None  # exactly 90 %: not past it
    full = nearly_full.storage(9 * GIB + 1, capacity)
    assert full is not None and full.check == "storage" and full.share > 0.9
    assert nearly_full.storage(5, 0) is None  # no capacity granted: nothing to judge
    assert nearly_full.filesystem(None, 100) is None and nearly_full.filesystem(1, None) is None
    assert nearly_full.filesystem(5, 100) is None
    fs = nearly_full.filesystem(4, 100)
    assert fs is not None and (fs.used, fs.limit) == (96, 100)
    assert nearly_full.quota(91, 100) is not None and nearly_full.quota(90, 100) is None
    assert nearly_full.quota(1, 0) is None
