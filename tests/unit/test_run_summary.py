"""The words a run carries into the Temporal UI (core/run_summary.py)."""

from __future__ import annotations

from core import run_summary
from core.restore_details import RestoreDetails
from core.run_summary import Names


def test_a_restore_into_another_database_names_only_the_database() -> None:
    details = {
        "database": True,
        "volumes": [],
        "target": {"database_url": "postgresql://shop@db.internal:5432/shop_copy"},
    }
    parts, into = run_summary.restored(RestoreDetails.from_dict(details))
    text = run_summary.restore(Names("acme", "shop", "main"), "selective", parts, into, "today")
    assert text.summary == "Selective restore of shop (acme), into database shop_copy"
    assert "Restores: database, into database shop_copy" in text.details
    assert "db.internal" not in text.summary + text.details  # a name, never a URL


def test_long_names_keep_the_summary_on_one_bounded_line() -> None:
    text = run_summary.backup(Names("w" * 255, "a" * 255, "s" * 255), "schedule")
    assert len(text.summary) == run_summary.SUMMARY_LIMIT and text.summary.endswith("…")
    assert "\n" not in text.summary
    assert "Trigger: started by the backup policy's schedule" in text.details


def test_a_forced_storage_deletion_says_so() -> None:
    text = run_summary.storage(Names("acme", storage="main"), "delete-force")
    assert text.summary == "Force-delete storage main (acme)"
    assert "**Force-delete** backup storage **main**, with every backup in it" in text.details
