"""The durable names read back what they build, and what repositories hold today.

``tests/fixtures/repository/snapshots.json`` is ``restic snapshots --json`` (restic 0.14)
of a repository tagged as cairn tags backups (database, volume, configuration and manifest
parts); ``manifest.json`` is the manifest of the recorded ``backup-succeeded`` history.
A change that reads either differently would lose the backups already written.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from repository import names

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "repository"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_tags_read_back_what_they_build() -> None:
    application, execution = uuid.uuid4(), uuid.uuid4()
    for part in (names.DATABASE, names.CONFIG, names.MANIFEST, names.volume_part("a=b:c")):
        tags = names.snapshot_tags(application, execution, part)
        assert names.read_tags(tags) == {
            "application": str(application),
            "execution": str(execution),
            "part": part,
        }


def test_tags_of_other_tools_are_left_out() -> None:
    assert names.read_tags(["nightly", "owner=ops", names.execution_tag("e1")]) == {
        "execution": "e1"
    }


def test_a_volume_s_root_reads_back_and_snapshots_from_before_have_none() -> None:
    tags = [
        *names.snapshot_tags("a", "e", names.volume_part("data")),
        names.volume_root_tag("0:0:0755"),
    ]
    assert names.volume_root_in(tags) == "0:0:0755"
    assert names.read_tags(tags)["part"] == "volume:data"
    assert names.volume_root_in(names.snapshot_tags("a", "e", names.volume_part("data"))) is None


@pytest.mark.parametrize("volume", ["data", "media", "with:colon", "x=y"])
def test_volume_parts_read_back_their_volume(volume: str) -> None:
    assert names.volume_of(names.volume_part(volume)) == volume


@pytest.mark.parametrize("part", [names.DATABASE, names.CONFIG, names.MANIFEST, "volumes"])
def test_other_parts_hold_no_volume(part: str) -> None:
    assert names.volume_of(part) is None


def test_todays_snapshots_are_read_and_rebuilt_exactly() -> None:
    snapshots = fixture("snapshots.json")
    parts = []
    for snapshot in snapshots:
        said = names.read_tags(snapshot["tags"])
        rebuilt = names.snapshot_tags(said["application"], said["execution"], said["part"])
        assert rebuilt == snapshot["tags"]
        parts.append(said["part"])
    assert parts == [names.DATABASE, names.volume_part("media"), names.MANIFEST, names.CONFIG]
    assert names.volumes_in(parts) == ["media"]


def test_todays_manifest_lists_its_parts_by_name() -> None:
    manifest = fixture("manifest.json")
    parts = names.parts_of(manifest)
    assert names.DATABASE in parts
    assert names.volumes_in(parts) == sorted(manifest["volumes"]) == ["media", "uploads"]


def test_a_manifest_without_parts_holds_nothing() -> None:
    assert names.parts_of(None) == names.parts_of({}) == set()


def test_file_names_are_the_ones_on_disk() -> None:
    """Catalog imports look for exactly these in storages written by earlier versions."""
    assert (names.KEY_FILE, names.MANIFEST_FILE) == ("cairn-repository.json", "manifest.json")
