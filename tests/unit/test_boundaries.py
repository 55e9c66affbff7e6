"""The boundary rules on their own: which folders and databases a request may name."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.boundaries import (
    AdminOnly,
    BoundaryError,
    check_application_database,
    check_restore_target,
    check_volume_path,
    database_parts,
    same_server,
    volume_roots,
)
from core.settings import Settings

METADATA = "postgresql+psycopg://postgres@127.0.0.1:5432/cairn"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "apps").mkdir()
    (tmp_path / "storages").mkdir()
    (tmp_path / "cairn-data").mkdir()
    return Settings(
        database_url=METADATA,
        volume_roots=[tmp_path],
        storage_mount_root=tmp_path / "storages",
        data_dir=tmp_path / "cairn-data",
    )


def refused(path: str, settings: Settings) -> str:
    with pytest.raises(BoundaryError) as caught:
        check_volume_path(path, settings, field="body.platform.volumes.data")
    assert caught.value.field == "body.platform.volumes.data"
    return caught.value.message


def test_a_folder_inside_an_allowed_root_is_accepted(settings: Settings, tmp_path: Path) -> None:
    assert check_volume_path(f"{tmp_path}/apps/shop", settings) == tmp_path / "apps" / "shop"
    assert check_volume_path(f"{tmp_path}/not-yet/created", settings)


@pytest.mark.parametrize(
    ("path", "mention"),
    [
        ("/", "contains"),
        ("/etc", "system folder"),
        ("/etc/ssl", "system folder"),
        ("/root", "system folder"),
        ("/proc/self", "system folder"),
        ("/usr/lib", "system folder"),
        ("/var/lib/postgresql/16/main", "system folder"),
        ("/var", "contains /var/lib/postgresql"),
        ("relative/dir", "absolute"),
        ("/srv/../etc", "normalised"),
        ("//etc", "normalised"),
        ("/srv/app/", "normalised"),
        ("/srv/./app", "normalised"),
        ("/srv/a\x00b", "control characters"),
        ("/srv/app", "not inside an allowed volume root"),
    ],
)
def test_system_and_odd_paths_are_refused(path: str, mention: str, settings: Settings) -> None:
    assert mention in refused(path, settings)


def test_the_storage_root_and_cairns_data_are_refused(settings: Settings, tmp_path: Path) -> None:
    assert "storage mount root" in refused(f"{tmp_path}/storages", settings)
    assert "storage mount root" in refused(f"{tmp_path}/storages/cairn-1/x", settings)
    assert "data folder" in refused(f"{tmp_path}/cairn-data", settings)
    assert "data folder" in refused(f"{tmp_path}/cairn-data/pg", settings)
    # above the storage root: a restore of it would replace every tenant's backups
    assert "contains" in refused(str(tmp_path), settings)
    # an allowed root itself holds every application: not one application's volume
    above = Settings(**{**settings.model_dump(), "volume_roots": [tmp_path / "apps"]})
    assert "not inside" in refused(f"{tmp_path}/apps", above)


def test_symlinks_are_judged_by_where_they_lead(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "apps" / "etc-link").symlink_to("/etc")
    (tmp_path / "apps" / "store-link").symlink_to(tmp_path / "storages")
    assert "a link to /etc" in refused(f"{tmp_path}/apps/etc-link", settings)
    assert "a link to /etc" in refused(f"{tmp_path}/apps/etc-link/ssl", settings)
    assert "storage mount root" in refused(f"{tmp_path}/apps/store-link/x", settings)


def test_roots_configured_above_system_folders_do_not_open_them(settings: Settings) -> None:
    wide = Settings(**{**settings.model_dump(), "volume_roots": [Path("/")]})
    assert "system folder" in refused("/etc/cron.d", wide)
    assert check_volume_path("/srv/shop", wide) == Path("/srv/shop")


def test_without_roots_nothing_is_accepted_and_the_operator_is_told(tmp_path: Path) -> None:
    bare = Settings(database_url=METADATA, storage_mount_root=tmp_path / "s")
    assert "CAIRN_VOLUME_ROOTS" in refused("/srv/shop", bare)


def test_the_data_folders_apps_area_is_the_default_root(tmp_path: Path) -> None:
    dev = Settings(
        database_url=METADATA,
        storage_mount_root=tmp_path / "d" / "storages",
        data_dir=tmp_path / "d",
    )
    assert volume_roots(dev) == [tmp_path / "d" / "apps"]
    assert check_volume_path(f"{tmp_path}/d/apps/shop/uploads", dev)
    assert "data folder" in refused(f"{tmp_path}/d/logs", dev)


def test_volume_roots_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_VOLUME_ROOTS", "/srv/apps:/data/apps, /mnt/apps")
    assert Settings().volume_roots == [Path("/srv/apps"), Path("/data/apps"), Path("/mnt/apps")]
    monkeypatch.setenv("CAIRN_VOLUME_ROOTS", "")
    assert Settings().volume_roots == []


def test_every_spelling_of_this_machine_is_one_server() -> None:
    local = {"host": "127.0.0.1", "port": 5432}
    for host in ("localhost", "::1", "127.0.0.2", "0.0.0.0", "::ffff:127.0.0.1", "/run/pg", ""):
        assert same_server(local, {"host": host, "port": 5432}), host
    assert not same_server(local, {"host": "127.0.0.1", "port": 5433})
    assert not same_server(local, {"host": "db.example.com", "port": 5432})
    assert same_server({"host": "DB.example.com."}, {"host": "db.example.com"})


def test_metadata_url_parts_with_driver_and_socket() -> None:
    assert database_parts(METADATA)["dbname"] == "cairn"
    socket = database_parts("postgresql+psycopg://postgres@/cairn_x?host=/tmp/pg&port=5544")
    assert (socket["host"], socket["port"], socket["dbname"]) == ("/tmp/pg", 5544, "cairn_x")


@pytest.mark.parametrize(
    ("host", "dbname", "mention"),
    [
        ("localhost", "cairn", "metadata database"),
        ("/var/run/postgresql", "cairn", "metadata database"),
        ("db.example.com", "postgres", "system database"),
        ("127.0.0.1", "template1", "system database"),
        ("127.0.0.1", "cairn_old_1234", "restore and drill copies"),
        ("127.0.0.1", "cairn_drill_0123456789ab", "restore and drill copies"),
    ],
)
def test_application_databases_that_are_refused(
    host: str, dbname: str, mention: str, settings: Settings
) -> None:
    with pytest.raises(BoundaryError, match=mention):
        check_application_database({"host": host, "port": 5432, "dbname": dbname}, settings)


def test_application_databases_elsewhere_are_accepted(settings: Settings) -> None:
    check_application_database({"host": "127.0.0.1", "port": 5432, "dbname": "shop"}, settings)
    check_application_database(
        {"host": "db.example.com", "port": 5432, "dbname": "cairn"}, settings
    )


APP_DB = {"host": "127.0.0.1", "port": 5432, "user": "shop", "dbname": "shop"}


@pytest.mark.parametrize(
    ("target", "mention"),
    [
        ({"database_name": "cairn"}, "metadata database"),
        ({"database_name": "postgres"}, "system database"),
        ({"database_name": "template0"}, "system database"),
        ({"database_name": "cairn_restore_x"}, "restore and drill copies"),
        ({"database_name": "shop"}, "own database"),
        ({"database_name": "other_shop"}, "another application"),
        ({"database_url": "postgresql://u:pw@localhost/cairn"}, "metadata database"),
        ({"database_url": "postgresql://u@db.example.com/template1"}, "system database"),
        ({"database_url": "postgresql://shop@[::1]:5432/shop"}, "own database"),
        ({}, "exactly one"),
    ],
)
def test_restore_targets_that_are_refused(
    target: dict[str, str], mention: str, settings: Settings
) -> None:
    other = {"host": "localhost", "port": 5432, "dbname": "other_shop"}
    with pytest.raises(BoundaryError, match=mention) as caught:
        check_restore_target(
            target, APP_DB, settings, by_platform_admin=True, other_applications=[other]
        )
    assert not isinstance(caught.value, AdminOnly)
    assert caught.value.field.startswith("target")


def test_a_target_url_is_for_platform_admins_only(settings: Settings) -> None:
    target = {"database_url": "postgresql://u@db.example.com/copy"}
    with pytest.raises(AdminOnly) as caught:
        check_restore_target(target, APP_DB, settings, by_platform_admin=False)
    assert caught.value.field == "target.database_url"
    check_restore_target(target, APP_DB, settings, by_platform_admin=True)


def test_accepted_targets(settings: Settings) -> None:
    check_restore_target({"database_name": "shop_copy"}, APP_DB, settings, by_platform_admin=False)
    on_another_server = {**APP_DB, "host": "db.example.com"}
    # cairn's database name on a server that is not cairn's is just a name
    check_restore_target(
        {"database_name": "cairn"}, on_another_server, settings, by_platform_admin=False
    )
