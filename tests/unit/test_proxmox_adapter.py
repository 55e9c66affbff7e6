"""The Proxmox adapter against the HTTPS PVE fake: real proxmoxer, real TLS, PVE's wire format."""

from __future__ import annotations

import logging
import pickle
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.proxmox import (
    PVE_TYPES,
    ProxmoxClient,
    ProxmoxConfig,
    ProxmoxError,
    StorageStatus,
    canonpath,
    pve_params,
    pve_update_params,
)
from adapters.storage_backend import ProxmoxBackend
from tests.fakes.pve import DEFAULT_SHARED_TOTAL, FakePVE

KEYRING = "AQBmYWtlLWNlcGgta2V5cmluZy1zZWNyZXQ=="
CEPH_CONFIG: dict[str, Any] = {
    "monhost": ["10.0.0.11", "10.0.0.12:6789"],
    "username": "cairn",
    "fs_name": "backups",
}
NFS_CONFIG = {"server": "nfs.example.internal", "export": "/srv/backups", "options": "vers=4.2"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakePVE]:
    with FakePVE() as fake:
        yield fake


@pytest.fixture
def fake(server: FakePVE) -> FakePVE:
    server.reset()
    return server


def config_for(fake: FakePVE, **overrides: Any) -> ProxmoxConfig:
    values: dict[str, Any] = {
        "host": fake.host,
        "port": fake.port,
        "token_id": fake.token_id,
        "token_secret": fake.token_secret,
        "node": fake.node,
        "verify": fake.ca_path,
        "timeout": 5.0,
    }
    values.update(overrides)
    return ProxmoxConfig(**values)


@pytest.fixture
def client(fake: FakePVE) -> ProxmoxClient:
    return ProxmoxClient(config_for(fake))


def pve_error(call: Any, *args: Any) -> ProxmoxError:
    with pytest.raises(ProxmoxError) as info:
        call(*args)
    return info.value


# --- parameter mapping -----------------------------------------------------------------


def test_cairn_settings_map_to_pve_parameter_names() -> None:
    assert PVE_TYPES == {"local": "dir", "nfs": "nfs", "ceph": "cephfs"}
    assert pve_params("local", "l1", {"path": "/srv/b"}, {}) == {
        "storage": "l1",
        "type": "dir",
        "content": "backup",
        "path": "/srv/b",
    }
    assert pve_params("nfs", "n1", NFS_CONFIG, {}) == {
        "storage": "n1",
        "type": "nfs",
        "content": "backup",
        "server": "nfs.example.internal",
        "export": "/srv/backups",
        "options": "vers=4.2",
    }
    assert pve_params("ceph", "c1", {**CEPH_CONFIG, "subdir": "/cairn"}, {"keyring": KEYRING}) == {
        "storage": "c1",
        "type": "cephfs",
        "content": "backup",
        "monhost": "10.0.0.11 10.0.0.12:6789",
        "username": "cairn",
        "fs-name": "backups",
        "subdir": "/cairn",
        "keyring": KEYRING,
    }


def test_update_parameters_leave_out_what_pve_only_takes_at_creation() -> None:
    assert pve_update_params("local", {"path": "/srv/b"}, {}) == {"content": "backup"}
    assert pve_update_params("nfs", NFS_CONFIG, {}) == {
        "content": "backup",
        "options": "vers=4.2",
    }
    assert pve_update_params("nfs", {"server": "h", "export": "/e"}, {}) == {
        "content": "backup",
        "delete": "options",
    }
    assert pve_update_params("ceph", CEPH_CONFIG, {"keyring": KEYRING}) == {
        "content": "backup",
        "monhost": "10.0.0.11 10.0.0.12:6789",
        "username": "cairn",
        "fs-name": "backups",
        "keyring": KEYRING,
        "delete": "subdir",
    }


@pytest.mark.parametrize(
    ("kind", "config", "secrets", "problem"),
    [
        ("s3", {}, {}, "unknown storage kind"),
        ("local", {}, {}, "missing setting 'path'"),
        ("nfs", {"server": "h"}, {}, "missing setting 'export'"),
        ("nfs", {"server": "h", "export": "/e", "option": "x"}, {}, "unknown setting 'option'"),
        ("ceph", CEPH_CONFIG, {}, "missing secret 'keyring'"),
        ("ceph", {**CEPH_CONFIG, "monhost": "10.0.0.1"}, {"keyring": KEYRING}, "monhost"),
        ("local", {"path": ""}, {}, "non-empty string"),
    ],
)
def test_bad_cairn_settings_are_refused_before_calling_pve(
    kind: str, config: dict[str, Any], secrets: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        pve_params(kind, "x1", config, secrets)


# --- lifecycle per storage type ----------------------------------------------------------


def test_version_over_tls_with_the_ca_bundle(fake: FakePVE, client: ProxmoxClient) -> None:
    assert client.version() == fake.pve_version
    assert fake.calls == [("GET", "/api2/json/version", {})]
    # the fake models PVE 9's API schema (reference/pve-api), so it says it is PVE 9
    assert FakePVE().pve_version.split(".")[0] == "9"


def test_local_storage_lifecycle(fake: FakePVE, client: ProxmoxClient, tmp_path: Path) -> None:
    path = tmp_path / "local-1"
    client.create_storage("local", "cairn-local-1", {"path": str(path)}, {})

    assert fake.calls_to("POST", "/storage") == [
        {"storage": "cairn-local-1", "type": "dir", "content": "backup", "path": str(path)}
    ]
    assert fake.storages["cairn-local-1"] == {"type": "dir", "content": "backup", "path": str(path)}
    assert (path / "dump").is_dir()  # PVE creates the folder and the backup subfolder

    stored = client.get_storage("cairn-local-1")
    assert stored is not None
    assert stored["storage"] == "cairn-local-1"
    assert stored["type"] == "dir"
    assert stored["content"] == "backup"

    client.update_storage("local", "cairn-local-1", {"path": str(path)}, {})
    assert fake.calls_to("PUT", "/storage/cairn-local-1") == [{"content": "backup"}]

    client.delete_storage("cairn-local-1")
    assert "cairn-local-1" not in fake.storages
    assert client.get_storage("cairn-local-1") is None
    assert path.is_dir()  # deleting a PVE storage never deletes its data


def test_nfs_storage_lifecycle(fake: FakePVE, client: ProxmoxClient) -> None:
    client.create_storage("nfs", "cairn-nfs-1", NFS_CONFIG, {})
    assert fake.storages["cairn-nfs-1"] == {
        "type": "nfs",
        "content": "backup",
        "server": "nfs.example.internal",
        "export": "/srv/backups",
        "options": "vers=4.2",
        "path": "/mnt/pve/cairn-nfs-1",
    }
    stored = client.get_storage("cairn-nfs-1")
    assert stored is not None
    assert stored["shared"] == 1

    without_options = {"server": NFS_CONFIG["server"], "export": NFS_CONFIG["export"]}
    client.update_storage("nfs", "cairn-nfs-1", without_options, {})
    assert fake.calls_to("PUT", "/storage/cairn-nfs-1") == [
        {"content": "backup", "delete": "options"}
    ]
    assert "options" not in fake.storages["cairn-nfs-1"]

    client.update_storage("nfs", "cairn-nfs-1", {**without_options, "options": "vers=3"}, {})
    assert fake.storages["cairn-nfs-1"]["options"] == "vers=3"

    client.delete_storage("cairn-nfs-1")
    assert fake.storages == {}


def test_changing_a_fixed_nfs_setting_is_refused_without_a_put(
    fake: FakePVE, client: ProxmoxClient
) -> None:
    client.create_storage("nfs", "cairn-nfs-2", NFS_CONFIG, {})
    with pytest.raises(ValueError, match="server of PVE storage 'cairn-nfs-2' cannot change"):
        client.update_storage("nfs", "cairn-nfs-2", {**NFS_CONFIG, "server": "10.9.9.9"}, {})
    assert fake.calls_to("PUT", "/storage/cairn-nfs-2") == []
    assert fake.storages["cairn-nfs-2"]["server"] == "nfs.example.internal"


def test_ceph_storage_lifecycle_keeps_the_keyring_out_of_the_config(
    fake: FakePVE, client: ProxmoxClient
) -> None:
    client.create_storage("ceph", "cairn-ceph-1", CEPH_CONFIG, {"keyring": KEYRING})
    assert fake.storages["cairn-ceph-1"] == {
        "type": "cephfs",
        "content": "backup",
        "monhost": "10.0.0.11 10.0.0.12:6789",
        "username": "cairn",
        "fs-name": "backups",
        "path": "/mnt/pve/cairn-ceph-1",
    }
    assert fake.secrets["cairn-ceph-1"] == {"keyring": KEYRING}
    assert fake.calls_to("POST", "/storage")[0]["keyring"] == "***"
    stored = client.get_storage("cairn-ceph-1")
    assert stored is not None
    assert "keyring" not in stored

    new_keyring = "AQBuZXcta2V5cmluZw=="
    client.update_storage(
        "ceph", "cairn-ceph-1", {**CEPH_CONFIG, "subdir": "/cairn"}, {"keyring": new_keyring}
    )
    assert fake.calls_to("PUT", "/storage/cairn-ceph-1") == [
        {
            "content": "backup",
            "monhost": "10.0.0.11 10.0.0.12:6789",
            "username": "cairn",
            "fs-name": "backups",
            "subdir": "/cairn",
            "keyring": "***",
        }
    ]
    assert fake.storages["cairn-ceph-1"]["subdir"] == "/cairn"
    assert fake.secrets["cairn-ceph-1"] == {"keyring": new_keyring}

    client.delete_storage("cairn-ceph-1")
    assert fake.storages == {}
    assert fake.secrets == {}


def test_create_retried_after_a_lost_answer_succeeds(fake: FakePVE, client: ProxmoxClient) -> None:
    client.create_storage("ceph", "cairn-ceph-2", CEPH_CONFIG, {"keyring": KEYRING})
    client.create_storage("ceph", "cairn-ceph-2", CEPH_CONFIG, {"keyring": KEYRING})
    assert len(fake.calls_to("POST", "/storage")) == 2
    assert list(fake.storages) == ["cairn-ceph-2"]
    assert fake.secrets["cairn-ceph-2"] == {"keyring": KEYRING}


def test_create_over_a_different_storage_with_the_same_id_fails(
    fake: FakePVE, client: ProxmoxClient
) -> None:
    client.create_storage("nfs", "cairn-nfs-3", NFS_CONFIG, {})
    error = pve_error(
        client.create_storage, "nfs", "cairn-nfs-3", {**NFS_CONFIG, "export": "/other"}, {}
    )
    assert error.status_code == 500
    assert error.message == "create storage failed: storage ID 'cairn-nfs-3' already defined"
    assert not error.retryable
    assert fake.storages["cairn-nfs-3"]["export"] == "/srv/backups"


# --- PVE's validation ---------------------------------------------------------------------


def test_invalid_storage_id_gets_pves_per_parameter_message(
    fake: FakePVE, client: ProxmoxClient
) -> None:
    error = pve_error(client.create_storage, "nfs", "Bad id!", NFS_CONFIG, {})
    assert error.status_code == 400
    assert not error.retryable
    assert error.errors == {
        "storage": "invalid format - storage ID 'Bad id!' contains illegal characters"
    }
    assert "storage: invalid format - storage ID 'Bad id!' contains illegal characters" in (
        error.message
    )
    assert fake.storages == {}


def test_each_invalid_parameter_is_reported(fake: FakePVE, client: ProxmoxClient) -> None:
    config = {**CEPH_CONFIG, "monhost": ["10.0.0.1", "not a host!"], "fs_name": "-bad"}
    error = pve_error(client.create_storage, "ceph", "cairn-ceph-3", config, {"keyring": KEYRING})
    assert error.status_code == 400
    assert not error.retryable
    assert set(error.errors) == {"monhost", "fs-name"}
    assert error.errors["fs-name"] == "invalid format - invalid configuration ID '-bad'"


def test_update_of_a_missing_storage_is_a_permanent_error(client: ProxmoxClient) -> None:
    error = pve_error(client.update_storage, "local", "cairn-gone", {"path": "/srv/x"}, {})
    assert error.status_code == 500
    assert error.message == "update storage failed: storage 'cairn-gone' does not exist"
    assert not error.retryable


def test_status_of_a_missing_storage_is_a_parameter_error(client: ProxmoxClient) -> None:
    error = pve_error(client.storage_status, "cairn-gone")
    assert error.status_code == 400
    assert error.errors == {"storage": "No such storage."}
    assert not error.retryable


def test_delete_of_a_missing_storage_succeeds(fake: FakePVE, client: ProxmoxClient) -> None:
    client.delete_storage("cairn-never-created")
    assert fake.calls_to("DELETE", "/storage/cairn-never-created") == [{}]
    assert client.get_storage("cairn-never-created") is None


# --- transport and server failures --------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 596])
def test_server_failures_are_retryable(fake: FakePVE, client: ProxmoxClient, status: int) -> None:
    fake.fail_next(1, status=status)
    error = pve_error(client.create_storage, "nfs", "cairn-nfs-4", NFS_CONFIG, {})
    assert error.status_code == status
    assert error.retryable
    assert fake.storages == {}

    client.create_storage("nfs", "cairn-nfs-4", NFS_CONFIG, {})  # the retry goes through
    assert "cairn-nfs-4" in fake.storages


def test_rejected_token_is_not_retryable(fake: FakePVE, client: ProxmoxClient) -> None:
    fake.reject_auth(True)
    error = pve_error(client.version)
    assert error.status_code == 401
    assert error.message == "invalid token value!"
    assert not error.retryable


def test_wrong_token_secret_is_refused(fake: FakePVE) -> None:
    wrong = ProxmoxClient(config_for(fake, token_secret="0000-wrong-secret"))
    error = pve_error(wrong.get_storage, "cairn-x")
    assert error.status_code == 401
    assert not error.retryable
    assert "0000-wrong-secret" not in str(error)


def test_slow_answer_times_out_as_retryable() -> None:
    with FakePVE() as slow:
        slow.delay(2.0)
        client = ProxmoxClient(config_for(slow, timeout=0.3))
        error = pve_error(client.version)
    assert error.status_code is None
    assert error.retryable
    assert "within 0.3s" in error.message


def test_unreachable_host_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ProxmoxClient(
        ProxmoxConfig("127.0.0.1", port, "cairn@pve!cairn", "secret", "pve1", True, timeout=2)
    )
    error = pve_error(client.version)
    assert error.status_code is None
    assert error.retryable
    assert "cannot reach PVE" in error.message


def test_certificate_not_signed_by_the_configured_ca_is_refused(fake: FakePVE) -> None:
    client = ProxmoxClient(config_for(fake, verify=True))  # system CAs do not know the fake
    error = pve_error(client.version)
    assert error.status_code is None
    assert "SSLError" in error.message


# --- status -------------------------------------------------------------------------------


def test_dir_status_is_the_file_systems_whatever_else_it_holds(
    client: ProxmoxClient, tmp_path: Path
) -> None:
    """PVE runs df on the storage's path: the figures count every file on that file system."""
    path = tmp_path / "local-status"
    client.create_storage("local", "cairn-local-2", {"path": str(path)}, {})
    status = client.storage_status("cairn-local-2")
    disk = shutil.disk_usage(path)
    assert status.active and status.enabled
    assert status.total_bytes == disk.total
    # the file system already holds other data: the empty storage reports it as used
    assert status.used_bytes > 0
    assert abs(status.used_bytes - disk.used) < 64 * 1024**2  # others may write meanwhile
    assert abs(status.avail_bytes - disk.free) < 64 * 1024**2


def test_shared_storage_reports_its_folders_file_system_once_mounted(
    fake: FakePVE, client: ProxmoxClient, tmp_path: Path
) -> None:
    client.create_storage("nfs", "cairn-nfs-6", NFS_CONFIG, {})
    unmounted = client.storage_status("cairn-nfs-6")
    assert (unmounted.total_bytes, unmounted.used_bytes) == (DEFAULT_SHARED_TOTAL, 0)
    fake.storages["cairn-nfs-6"]["path"] = str(tmp_path)  # a folder stands in for the share
    mounted = client.storage_status("cairn-nfs-6")
    assert mounted.total_bytes == shutil.disk_usage(tmp_path).total and mounted.used_bytes > 0


def test_storage_restricted_to_other_nodes_is_listed_disabled_not_refused(
    fake: FakePVE, client: ProxmoxClient, tmp_path: Path
) -> None:
    """PVE's storage_info keeps such a storage, with enabled 0 and active 0 (no 400)."""
    assert (
        raw(
            fake,
            "POST",
            "/storage",
            storage="elsewhere",
            type="dir",
            path=str(tmp_path / "e"),
            nodes="pve2,pve3",
        ).status_code
        == 200
    )
    assert client.storage_status("elsewhere") == StorageStatus(
        total_bytes=0, used_bytes=0, avail_bytes=0, active=False, enabled=False
    )
    assert not (tmp_path / "e").exists(), "a storage of other nodes is not activated here"
    listed = raw(fake, "GET", f"/nodes/{fake.node}/storage").json()["data"]
    assert [(s["storage"], s["enabled"], s["active"]) for s in listed] == [("elsewhere", 0, 0)]
    enabled_only = raw(fake, "GET", f"/nodes/{fake.node}/storage", enabled="1").json()["data"]
    assert [s["storage"] for s in enabled_only] == ["elsewhere"]  # 'enabled' looks at disable
    by_content = raw(fake, "GET", f"/nodes/{fake.node}/storage", content="backup").json()
    assert by_content["data"] == []
    unknown = raw(fake, "GET", f"/nodes/{fake.node}/storage/nope/status")
    assert unknown.status_code == 400 and unknown.json()["errors"] == {
        "storage": "No such storage."
    }


def test_dir_path_is_stored_canonical_and_a_sloppy_root_still_updates(
    fake: FakePVE, client: ProxmoxClient, tmp_path: Path
) -> None:
    """PVE stores canonpath(path); cairn sends and compares that form, so nothing 'changes'."""
    root = f"{tmp_path}//pve/./"
    backend = ProxmoxBackend(client, root, tmp_path / "pve")
    backend.create("local", "cairn-local-7", {}, {})
    assert fake.storages["cairn-local-7"]["path"] == f"{tmp_path}/pve/cairn-local-7"
    backend.update("local", "cairn-local-7", {}, {})  # no "path cannot change"
    backend.create("local", "cairn-local-7", {}, {})  # a retried create finds it the same
    raw(
        fake,
        "POST",
        "/storage",
        storage="cairn-local-8",
        type="dir",
        path=f"{tmp_path}//pve//cairn-local-8/",
    )
    assert fake.storages["cairn-local-8"]["path"] == f"{tmp_path}/pve/cairn-local-8"
    client.update_storage("local", "cairn-local-8", {"path": f"{tmp_path}/pve/cairn-local-8"}, {})
    with pytest.raises(ValueError, match="path of PVE storage 'cairn-local-8' cannot change"):
        client.update_storage("local", "cairn-local-8", {"path": f"{tmp_path}/other"}, {})


def test_canonpath_is_perls() -> None:
    cases = {
        "/mnt//pve": "/mnt/pve",
        "/mnt/pve/": "/mnt/pve",
        "/a/./b/.": "/a/b",
        "/a/../b": "/a/../b",
        "/../x": "/x",
        "//": "/",
        "/": "/",
    }
    assert {p: canonpath(p) for p in cases} == cases


def test_unreachable_nfs_is_reported_inactive(fake: FakePVE, client: ProxmoxClient) -> None:
    client.create_storage("nfs", "cairn-nfs-5", NFS_CONFIG, {})
    fake.set_usage("cairn-nfs-5", total=10_000, used=2_500)
    assert client.storage_status("cairn-nfs-5") == StorageStatus(
        total_bytes=10_000, used_bytes=2_500, avail_bytes=7_500, active=True, enabled=True
    )
    fake.set_active("cairn-nfs-5", False)
    assert client.storage_status("cairn-nfs-5") == StorageStatus(
        total_bytes=0, used_bytes=0, avail_bytes=0, active=False, enabled=True
    )


# --- secrets ------------------------------------------------------------------------------


def test_secrets_never_appear_in_errors_or_logs(
    fake: FakePVE, client: ProxmoxClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="proxmoxer.core")  # it logs request bodies at INFO
    # PVE echoes invalid values; here the echoed value happens to be the secret.
    config = {**CEPH_CONFIG, "fs_name": KEYRING}
    echoed = pve_error(client.create_storage, "ceph", "cairn-ceph-4", config, {"keyring": KEYRING})
    assert echoed.status_code == 400
    assert echoed.errors["fs-name"] == "invalid format - invalid configuration ID '***'"

    fake.fail_next(1, status=500, message=f"backend said {KEYRING} and {fake.token_secret}")
    failed = pve_error(
        client.create_storage, "ceph", "cairn-ceph-4", CEPH_CONFIG, {"keyring": KEYRING}
    )

    for error in (echoed, failed):
        for text in (str(error), repr(error), error.message, *error.errors.values()):
            assert KEYRING not in text
            assert fake.token_secret not in text
    assert KEYRING not in caplog.text
    assert fake.token_secret not in caplog.text
    assert any("'keyring': '***'" in r.getMessage() for r in caplog.records)


def test_config_repr_hides_the_token_secret(fake: FakePVE) -> None:
    assert fake.token_secret not in repr(config_for(fake))


# --- the error type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "retryable"),
    [
        (None, "cannot reach PVE", True),
        (500, "cfs-lock 'file-storage_cfg' error: got lock request timeout", True),
        (502, "Bad Gateway", True),
        (595, "Errors during connection establishment, proxy handshake", True),
        (500, "missing value for required option 'export'", False),
        (500, "update storage failed: can't change value of fixed parameter 'server'", False),
        (500, "storage 'x' does not exist", False),
        (501, "Method 'GET /nope' not implemented", False),
        (400, "Parameter verification failed.", False),
        (401, "No ticket", False),
        (403, "Permission check failed", False),
        (404, "Not Found", False),
    ],
)
def test_retryable_classification(status: int | None, message: str, retryable: bool) -> None:
    assert ProxmoxError(status, message).retryable is retryable


def test_error_survives_pickling() -> None:
    error = ProxmoxError(400, "Parameter verification failed.", {"storage": "bad"})
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status_code, copy.message, copy.errors) == (400, error.message, error.errors)


# --- fidelity of the fake where the adapter cannot reach (raw HTTP) ---------------------


def raw(fake: FakePVE, method: str, endpoint: str, **params: str) -> requests.Response:
    headers = {"Authorization": f"PVEAPIToken={fake.token_id}={fake.token_secret}"}
    body = params if method in ("POST", "PUT") else None
    query = None if body is not None else params
    return requests.request(
        method,
        fake.url + endpoint,
        data=body,
        params=query,
        headers=headers,
        verify=fake.ca_path,
        timeout=5,
    )


def test_fake_refuses_like_pve(fake: FakePVE) -> None:
    missing = raw(fake, "POST", "/storage", storage="n1", type="nfs", server="10.0.0.1")
    assert (missing.status_code, missing.reason) == (
        500,
        "missing value for required option 'export'",
    )
    assert missing.json() == {
        "data": None,
        "message": "missing value for required option 'export'\n",
    }

    unknown = raw(fake, "POST", "/storage", storage="d1", type="dir", path="/tmp/x", bogus="1")
    assert unknown.status_code == 400
    assert unknown.json()["errors"] == {
        "bogus": "property is not defined in schema and the schema does not allow additional"
        " properties"
    }

    boolean = raw(fake, "POST", "/storage", storage="d1", type="dir", path="/tmp/x", disable="true")
    assert boolean.json()["errors"] == {"disable": "type check ('boolean') failed - got 'true'"}

    no_type = raw(fake, "POST", "/storage", storage="d1")
    assert no_type.json()["errors"] == {"type": "property is missing and it is not optional"}

    wrong_plugin = raw(
        fake, "POST", "/storage", storage="d1", type="nfs", server="h", export="/e", keyring="k"
    )
    assert wrong_plugin.reason == "unexpected property 'keyring'"
    # DirPlugin declares no sensitive properties either: a keyring is just an unknown option
    dir_keyring = raw(
        fake, "POST", "/storage", storage="d2", type="dir", path="/tmp/d2", keyring="AQB=="
    )
    assert (dir_keyring.status_code, dir_keyring.reason) == (500, "unexpected property 'keyring'")
    assert "d2" not in fake.storages and "d2" not in fake.secrets

    for bad in ("10.0.0.1:2049", "[fd00::1]"):
        server = raw(fake, "POST", "/storage", storage="n2", type="nfs", server=bad, export="/e")
        assert server.status_code == 400 and "server" in server.json()["errors"]
    fs_name = raw(fake, "POST", "/storage", storage="c2", type="cephfs", **{"fs-name": "1fs"})
    assert fs_name.json()["errors"] == {
        "fs-name": "invalid format - invalid configuration ID '1fs'\n"
    }

    assert raw(fake, "GET", "/storage/nope").reason == "storage 'nope' does not exist"
    assert raw(fake, "PATCH", "/storage").status_code == 501

    anonymous = requests.get(fake.url + "/version", verify=fake.ca_path, timeout=5)
    assert (anonymous.status_code, anonymous.reason, anonymous.content) == (401, "No ticket", b"")
