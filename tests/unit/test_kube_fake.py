"""The Kubernetes API fake, driven by the official ``kubernetes`` client and by kubectl.

These tests pin the protocol the fake speaks (discovery, Status errors, resourceVersion,
selectors, watches, patches, the scale subresource, pods/log) and what its simulated kubelet
and CSI driver do with real data, so the Kubernetes platform can be built on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config, watch
from kubernetes.client import ApiException

from tests.fakes.kube import CSI_DRIVER, FakeKube
from tests.fakes.kube.kubelet import IMAGE_GROUP, IMAGE_USER

T = TypeVar("T")
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


@pytest.fixture(scope="module")
def api(fake: FakeKube) -> client.ApiClient:
    loaded: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(fake.kubeconfig)
    )
    return loaded


@pytest.fixture
def ns(api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core_v1(api).create_namespace({"metadata": {"name": name}})
    yield name
    core_v1(api).delete_namespace(name)


# The tests send manifests as dicts, which the client accepts (it validates them into its
# models), and read fields that are optional in its types: the API objects are typed Any.


def core_v1(api: client.ApiClient) -> Any:
    return client.CoreV1Api(api)


def batch_v1(api: client.ApiClient) -> Any:
    return client.BatchV1Api(api)


def apps_v1(api: client.ApiClient) -> Any:
    return client.AppsV1Api(api)


def custom_objects(api: client.ApiClient) -> Any:
    return client.CustomObjectsApi(api)


def watch_events(list_call: Any, *args: Any, **query: Any) -> Iterator[dict[str, Any]]:
    """The client's own watch helper (untyped in the kubernetes package)."""
    stream: Iterator[dict[str, Any]] = watch.Watch().stream(  # type: ignore[no-untyped-call]
        list_call, *args, **query
    )
    return stream


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    """Polls ``probe`` until it returns something truthy (bounded, never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body or "{}")
    return body


def send(
    api: client.ApiClient, method: str, path: str, body: Any, **query: str
) -> tuple[int, dict[str, Any], Any]:
    """A request through the official client's transport, past its own (pydantic) checks.

    Client 37 validates typed bodies before sending, so a malformed manifest has to be sent
    this way to see what the API server does with it.
    """
    serialized = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=list(query.items()),
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response: Any = api.call_api(*serialized)
    response.read()
    return response.status, json.loads(response.data), response.headers


def job_condition(api: client.ApiClient, ns: str, name: str) -> Any:
    job = batch_v1(api).read_namespaced_job(name, ns)
    done = [c for c in job.status.conditions or [] if c.type in ("Complete", "Failed")]
    return (job, done[0]) if done else None


def job_manifest(name: str, script: str, **pod: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "cairn:test", "command": ["sh", "-c", script]}
    container.update(pod.pop("container", {}))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": pod.pop("backoff_limit", 0),
            "template": {"spec": {"restartPolicy": "Never", "containers": [container], **pod}},
        },
    }


def pvc_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            **spec,
        },
    }


# --- discovery and errors ---


def test_discovery_lists_the_served_resources(api: client.ApiClient) -> None:
    assert client.VersionApi(api).get_code().git_version.startswith("v1.")
    core = {r.name: r for r in core_v1(api).get_api_resources().resources}
    assert core["pods"].namespaced and core["pods"].short_names == ["po"]
    assert core["pods/log"].verbs == ["get"]
    assert core["persistentvolumeclaims"].short_names == ["pvc"]
    assert not core["namespaces"].namespaced
    apps = {r.name: r for r in apps_v1(api).get_api_resources().resources}
    assert apps["deployments/scale"].kind == "Scale"
    assert set(apps["statefulsets"].verbs) >= {"get", "list", "watch", "patch", "update"}
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "batch", "networking.k8s.io", SNAPSHOT_GROUP} <= groups


def test_create_get_and_the_status_errors(api: client.ApiClient, ns: str) -> None:
    core = core_v1(api)
    created = core.create_namespaced_config_map(
        ns, {"metadata": {"name": "settings", "labels": {"app": "web"}}, "data": {"a": "1"}}
    )
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert int(created.metadata.resource_version) > 0
    assert core.read_namespaced_config_map("settings", ns).data == {"a": "1"}

    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", ns)
    assert missing.value.status == 404
    assert status_of(missing.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "configmaps"},
        "code": 404,
    }

    with pytest.raises(ApiException) as duplicate:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"}})
    assert duplicate.value.status == 409
    assert status_of(duplicate.value)["reason"] == "AlreadyExists"
    assert status_of(duplicate.value)["message"] == 'configmaps "settings" already exists'

    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_config_map("absent", {"metadata": {"name": "x"}})
    assert no_namespace.value.status == 404
    assert status_of(no_namespace.value)["message"] == 'namespaces "absent" not found'

    with pytest.raises(ApiException) as bad_name:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "Bad_Name"}})
    assert bad_name.value.status == 422
    cause = status_of(bad_name.value)["details"]["causes"][0]
    assert cause["field"] == "metadata.name" and cause["reason"] == "FieldValueInvalid"

    apps_missing = pytest.raises(ApiException)
    with apps_missing as gone:
        batch_v1(api).read_namespaced_job("nope", ns)
    assert status_of(gone.value)["details"] == {"name": "nope", "group": "batch", "kind": "jobs"}
    assert status_of(gone.value)["message"] == 'jobs.batch "nope" not found'


def test_stale_resource_version_is_a_conflict(api: client.ApiClient, ns: str) -> None:
    core = core_v1(api)
    first = core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"v": "1"}})
    first.data = {"v": "2"}
    second = core.replace_namespaced_config_map("c", ns, first)
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    first.data = {"v": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("c", ns, first)
    assert stale.value.status == 409
    body = status_of(stale.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "c": the object has been modified; please'
        " apply your changes to the latest version and try again"
    )
    assert core.read_namespaced_config_map("c", ns).data == {"v": "2"}


def test_lists_carry_their_kind_revision_and_selectors(api: client.ApiClient, ns: str) -> None:
    core = core_v1(api)
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        core.create_namespaced_secret(
            ns, {"metadata": {"name": name, "labels": {"tier": tier}}, "stringData": {"k": name}}
        )
    raw = core.list_namespaced_secret(ns, _preload_content=False)
    listed = json.loads(raw.data)
    assert listed["kind"] == "SecretList" and listed["apiVersion"] == "v1"
    revisions = [int(i["metadata"]["resourceVersion"]) for i in listed["items"]]
    assert max(revisions) <= int(listed["metadata"]["resourceVersion"])
    assert listed["items"][0]["data"] == {"k": "YQ=="}  # stringData is stored as data

    def names(**query: Any) -> list[str]:
        return [s.metadata.name for s in core.list_namespaced_secret(ns, **query).items]

    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier!=web") == ["b"]
    assert names(label_selector="tier in (db,cache)") == ["b"]
    assert names(label_selector="!tier") == []
    assert names(field_selector="metadata.name=c") == ["c"]
    page = core.list_namespaced_secret(ns, limit=2)
    assert len(page.items) == 2 and page.metadata._continue
    rest = core.list_namespaced_secret(ns, limit=2, _continue=page.metadata._continue)
    assert [s.metadata.name for s in rest.items] == ["c"]
    with pytest.raises(ApiException) as unsupported:
        core.list_namespaced_secret(ns, field_selector="data.k=a")
    assert status_of(unsupported.value)["message"] == "field label not supported: data.k"


def test_patches_merge_strategic_and_json(api: client.ApiClient, ns: str) -> None:
    apps = apps_v1(api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "app", "image": "web:1"},
                            {"name": "sidecar", "image": "proxy:1"},
                        ]
                    },
                },
            },
        },
    )
    # Strategic merge: containers merge by name, the other container stays.
    patched = apps.patch_namespaced_deployment(
        "web",
        ns,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}},
    )
    images = {c.name: c.image for c in patched.spec.template.spec.containers}
    assert images == {"app": "web:2", "sidecar": "proxy:1"}
    assert patched.metadata.generation == 2
    # JSON patch (a list) and merge patch (forced content type).
    apps.patch_namespaced_deployment(
        "web", ns, [{"op": "add", "path": "/metadata/annotations", "value": {"a": "1"}}]
    )
    merged = apps.patch_namespaced_deployment(
        "web",
        ns,
        {"metadata": {"annotations": {"a": None, "b": "2"}}},
        _content_type="application/merge-patch+json",
    )
    assert merged.metadata.annotations == {"b": "2"}


def test_custom_resources_refuse_strategic_merge_patch(api: client.ApiClient, ns: str) -> None:
    custom = custom_objects(api)
    custom.create_cluster_custom_object(
        SNAPSHOT_GROUP,
        "v1",
        "volumesnapshotclasses",
        {"metadata": {"name": f"c-{ns}"}, "driver": CSI_DRIVER, "deletionPolicy": "Delete"},
    )
    with pytest.raises(ApiException) as refused:
        custom.patch_cluster_custom_object(
            SNAPSHOT_GROUP,
            "v1",
            "volumesnapshotclasses",
            f"c-{ns}",
            {"metadata": {"labels": {"a": "b"}}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert refused.value.status == 415
    patched = custom.patch_cluster_custom_object(
        SNAPSHOT_GROUP,
        "v1",
        "volumesnapshotclasses",
        f"c-{ns}",
        {"metadata": {"labels": {"a": "b"}}},
        _content_type="application/merge-patch+json",
    )
    assert patched["metadata"]["labels"] == {"a": "b"}
    custom.delete_cluster_custom_object(SNAPSHOT_GROUP, "v1", "volumesnapshotclasses", f"c-{ns}")


# --- watches ---


def test_watch_streams_events_from_a_resource_version(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    core = core_v1(api)
    start = core.list_namespaced_config_map(ns).metadata.resource_version

    def writes() -> None:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "w", "labels": {"x": "1"}}})
        core.patch_namespaced_config_map("w", ns, {"data": {"k": "v"}})
        core.create_namespaced_config_map(ns, {"metadata": {"name": "other"}})
        core.delete_namespaced_config_map("w", ns)

    writer = threading.Thread(target=writes)
    writer.start()
    seen: list[tuple[str, str]] = []
    stream = watch_events(
        core.list_namespaced_config_map,
        ns,
        resource_version=start,
        label_selector="x=1",
        timeout_seconds=10,
    )
    for event in stream:
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            break
    writer.join(10)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]

    # A history the server no longer has is 410 Gone, as after an etcd compaction.
    fake.compact()
    with pytest.raises(ApiException) as expired:
        for _ in watch_events(
            core.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=5
        ):
            pass
    assert expired.value.status == 410


def test_watch_ends_at_its_timeout(api: client.ApiClient, ns: str) -> None:
    core = core_v1(api)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "present"}})
    events = list(watch_events(core.list_namespaced_config_map, ns, timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "present")]


# --- scale ---


def test_scale_subresource(api: client.ApiClient, ns: str) -> None:
    apps = apps_v1(api)
    labels = {"app": "db"}
    apps.create_namespaced_stateful_set(
        ns,
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 2,
                "serviceName": "db",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "db", "image": "postgres:17"}]},
                },
            },
        },
    )
    wait_for(lambda: apps.read_namespaced_stateful_set("db", ns).status.replicas == 2, "2 replicas")
    scale = apps.read_namespaced_stateful_set_scale("db", ns)
    assert (scale.kind, scale.spec.replicas, scale.status.selector) == ("Scale", 2, "app=db")
    apps.patch_namespaced_stateful_set_scale("db", ns, {"spec": {"replicas": 0}})
    sts = wait_for(
        lambda: (s := apps.read_namespaced_stateful_set("db", ns)).status.replicas == 0 and s,
        "scaled to zero",
    )
    assert sts.spec.replicas == 0 and sts.metadata.generation == 2
    assert sts.status.observed_generation == 2
    scale.spec.replicas = 3  # read before the patch: stale
    with pytest.raises(ApiException) as stale:
        apps.replace_namespaced_stateful_set_scale("db", ns, scale)
    assert stale.value.status == 409


# --- validation ---


def test_malformed_job_is_rejected_like_the_api_server(api: client.ApiClient, ns: str) -> None:
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"
    nameless = job_manifest("bad", "true")
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]
    code, body, _ = send(api, "POST", jobs, nameless)
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["message"] == (
        'Job.batch "bad" is invalid: spec.template.spec.containers[0].name: Required value'
    )
    assert body["details"]["kind"] == "Job" and body["details"]["group"] == "batch"
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueRequired",
            "message": "Required value",
            "field": "spec.template.spec.containers[0].name",
        }
    ]

    wrong_type = job_manifest("bad", "true")
    wrong_type["spec"]["backoffLimit"] = "six"
    code, body, _ = send(api, "POST", jobs, wrong_type)
    assert (code, body["reason"]) == (400, "BadRequest")
    assert body["message"].startswith('Job in version "v1" cannot be handled as a Job: json:')
    assert "cannot unmarshal string" in body["message"]

    always = job_manifest("bad", "true")
    del always["spec"]["template"]["spec"]["restartPolicy"]  # defaults to Always
    with pytest.raises(ApiException) as unsupported:
        batch_v1(api).create_namespaced_job(ns, always)
    cause = status_of(unsupported.value)["details"]["causes"][0]
    assert cause["field"] == "spec.template.spec.restartPolicy"
    assert cause["message"] == 'Unsupported value: "Always": supported values: "OnFailure", "Never"'

    unknown = job_manifest("bad", "true")
    unknown["spec"]["template"]["spec"]["containers"][0]["comand"] = ["typo"]
    code, body, _ = send(api, "POST", jobs, unknown, fieldValidation="Strict")
    assert (code, body["message"]) == (
        400,
        'strict decoding error: unknown field "spec.template.spec.containers[0].comand"',
    )
    assert batch_v1(api).list_namespaced_job(ns).items == []


def test_unknown_fields_are_dropped_with_a_warning_by_default(
    api: client.ApiClient, ns: str
) -> None:
    path = f"/api/v1/namespaces/{ns}/configmaps"
    code, body, headers = send(api, "POST", path, {"metadata": {"name": "c"}, "dta": {"a": "1"}})
    assert code == 201 and "dta" not in body
    assert headers["Warning"] == r'299 - "unknown field \"dta\""'


def test_volume_snapshot_is_checked_against_the_crd_schema(api: client.ApiClient, ns: str) -> None:
    custom = custom_objects(api)
    with pytest.raises(ApiException) as invalid:
        custom.create_namespaced_custom_object(
            SNAPSHOT_GROUP,
            "v1",
            ns,
            "volumesnapshots",
            {
                "apiVersion": f"{SNAPSHOT_GROUP}/v1",
                "kind": "VolumeSnapshot",
                "metadata": {"name": "s"},
                "spec": {"volumeSnapshotClassName": "x"},
            },
        )
    assert invalid.value.status == 422
    assert status_of(invalid.value)["details"]["causes"][0]["field"] == "spec.source"


# --- kubelet: jobs that move data ---


def test_job_writes_into_a_pvc_with_secrets_and_config(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    core = core_v1(api)
    core.create_namespaced_persistent_volume_claim(ns, pvc_manifest("data"))
    core.create_namespaced_secret(
        ns, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cret", "token": "t0k"}}
    )
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"MODE": "full"}})
    script = (
        'echo "$MODE:$PASSWORD:$(cat /secrets/token)" > /data/out/result.txt;'
        " echo wrote /data/out/result.txt; echo second line"
    )
    job = job_manifest(
        "writer",
        script,
        volumes=[
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "secrets", "secret": {"secretName": "creds"}},
        ],
        container={
            "env": [
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                }
            ],
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data/out"},
                {"name": "secrets", "mountPath": "/secrets", "readOnly": True},
            ],
        },
        # the claim's root is root's (a new filesystem): the image's user writes through
        # the group the kubelet gives the volume
        securityContext={"fsGroup": 2000},
    )
    batch_v1(api).create_namespaced_job(ns, job)
    finished, condition = wait_for(lambda: job_condition(api, ns, "writer"), "job to finish")
    assert condition.type == "Complete"
    assert finished.status.succeeded == 1 and not finished.status.active
    result = fake.pvc_path(ns, "data") / "result.txt"
    assert result.read_text() == "full:s3cret:t0k\n"
    assert (result.stat().st_uid, result.stat().st_gid) == (IMAGE_USER, 2000)  # setgid folder
    (pod,) = core.list_namespaced_pod(ns, label_selector="job-name=writer").items
    assert pod.status.phase == "Succeeded"
    assert pod.metadata.owner_references[0].kind == "Job"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    log = core.read_namespaced_pod_log(pod.metadata.name, ns)
    assert log == "wrote /data/out/result.txt\nsecond line\n"  # the path as the container sees it
    assert core.read_namespaced_pod_log(pod.metadata.name, ns, tail_lines=1) == "second line\n"
    followed = core.read_namespaced_pod_log(pod.metadata.name, ns, follow=True)
    assert followed == log


def test_nfs_volumes_are_the_mapped_storage_folders_and_cephfs_has_no_plugin(
    api: client.ApiClient, ns: str, fake: FakeKube, tmp_path: Path
) -> None:
    """The in-tree cephfs plugin was removed in 1.31: the fake reports 1.33."""
    nfs_root = tmp_path / "nfs"
    (nfs_root / "repos" / "sub").mkdir(parents=True)
    os.chown(nfs_root / "repos" / "sub", IMAGE_USER, IMAGE_GROUP)  # the export's owner
    fake.map_nfs("192.0.2.10", "/export/backups", nfs_root)
    job = job_manifest(
        "mover",
        "echo data > /repo/file",
        volumes=[
            {"name": "repo", "nfs": {"server": "192.0.2.10", "path": "/export/backups/repos"}}
        ],
        container={"volumeMounts": [{"name": "repo", "mountPath": "/repo", "subPath": "sub"}]},
    )
    batch_v1(api).create_namespaced_job(ns, job)
    _, condition = wait_for(lambda: job_condition(api, ns, "mover"), "the mover to finish")
    assert condition.type == "Complete"
    assert (nfs_root / "repos" / "sub" / "file").read_text() == "data\n"

    ceph = {"name": "ceph", "cephfs": {"monitors": ["192.0.2.20:6789"], "path": "/volumes/cairn"}}
    batch_v1(api).create_namespaced_job(ns, job_manifest("ceph", "true", volumes=[ceph]))
    core = core_v1(api)

    def mount_refused() -> str | None:
        pods = core.list_namespaced_pod(ns, label_selector="job-name=ceph").items
        statuses = pods[0].status.container_statuses if pods else None
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.message if waiting and waiting.message else None

    message = wait_for(mount_refused, "the cephfs mount to fail")
    assert 'volume "ceph" err=no volume plugin matched' in message


def test_a_job_s_pods_need_their_service_account(api: client.ApiClient, ns: str) -> None:
    """The ServiceAccount admission plugin: a pod naming an account its namespace lacks is
    refused (the Job says so in a FailedCreate event); once the account exists it runs."""
    core = core_v1(api)
    batch_v1(api).create_namespaced_job(
        ns, job_manifest("as-mover", "true", serviceAccountName="mover")
    )

    def refused() -> str | None:
        events = core.list_namespaced_event(
            ns, field_selector="involvedObject.name=as-mover,reason=FailedCreate"
        ).items
        return events[0].message if events else None

    assert wait_for(refused, "the pod to be refused").endswith(
        f"is forbidden: error looking up service account {ns}/mover:"
        ' serviceaccount "mover" not found'
    )
    core.create_namespaced_service_account(ns, {"metadata": {"name": "mover"}})
    _, done = wait_for(lambda: job_condition(api, ns, "as-mover"), "the Job to end")
    assert done.type == "Complete"


def test_the_scheduler_keeps_pods_off_a_node_they_or_their_volumes_do_not_match(
    api: client.ApiClient, fake: FakeKube, ns: str
) -> None:
    """Pods are scheduled by their required node affinity and by their volumes' (a volume
    provisioned for another node's selected-node annotation): no match, no start."""
    core = core_v1(api)
    elsewhere = {
        "nodeSelectorTerms": [
            {
                "matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["other-node"]}
                ]
            }
        ]
    }
    here = {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "Exists"}]}
        ]
    }
    core.create_namespaced_persistent_volume_claim(
        ns,
        {
            **pvc_manifest("far"),
            "metadata": {
                "name": "far",
                "annotations": {"volume.kubernetes.io/selected-node": "other-node"},
            },
        },
    )
    claim = wait_for(
        lambda: core.read_namespaced_persistent_volume_claim("far", ns).spec.volume_name,
        "the claim to be bound",
    )
    volume = core.read_persistent_volume(claim)
    assert volume.spec.node_affinity.required.node_selector_terms[0].match_expressions[
        0
    ].values == ["other-node"]
    far_volume = [{"name": "v", "persistentVolumeClaim": {"claimName": "far"}}]
    for name, pod in (
        (
            "by-affinity",
            {
                "affinity": {
                    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": elsewhere}
                }
            },
        ),
        ("by-volume", {"volumes": far_volume}),
        (
            "matching",
            {
                "affinity": {
                    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": here}
                }
            },
        ),
    ):
        batch_v1(api).create_namespaced_job(ns, job_manifest(name, "true", **pod))
    _, done = wait_for(lambda: job_condition(api, ns, "matching"), "the matching Job to end")
    assert done.type == "Complete"

    def unscheduled(job: str) -> str | None:
        pods = core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items
        conditions = (pods[0].status.conditions or []) if pods else []
        return next((c.message for c in conditions if c.reason == "Unschedulable"), None)

    assert wait_for(lambda: unscheduled("by-affinity"), "by-affinity unscheduled") == (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    )
    assert wait_for(lambda: unscheduled("by-volume"), "by-volume unscheduled") == (
        "0/1 nodes are available: 1 node(s) had volume node affinity conflict."
    )


def test_pod_security_restricted_refuses_the_job_s_pods_with_the_api_server_s_reasons(
    api: client.ApiClient, ns: str
) -> None:
    core = core_v1(api)
    core.patch_namespace(
        ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    scratch = {"name": "scratch", "nfs": {"server": "192.0.2.10", "path": "/x"}}
    batch_v1(api).create_namespaced_job(ns, job_manifest("loose", "true", volumes=[scratch]))

    def refused() -> str | None:
        events = core.list_namespaced_event(
            ns, field_selector="involvedObject.name=loose,reason=FailedCreate"
        ).items
        return events[0].message if events else None

    message = wait_for(refused, "the pod to be refused")
    assert message.startswith('Error creating: pods "loose-')
    assert message.endswith(
        'is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation !='
        ' false (container "main" must set securityContext.allowPrivilegeEscalation=false),'
        ' unrestricted capabilities (container "main" must set'
        ' securityContext.capabilities.drop=["ALL"]), restricted volume types (volume'
        ' "scratch" uses restricted volume type "nfs"), runAsNonRoot != true (pod or container'
        ' "main" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container'
        ' "main" must set securityContext.seccompProfile.type to "RuntimeDefault" or'
        ' "Localhost")'
    )
    assert not core.list_namespaced_pod(ns, label_selector="job-name=loose").items
    with pytest.raises(client.ApiException) as refused_pod:
        core.create_namespaced_pod(
            ns, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
        )
    assert refused_pod.value.status == 403

    strict = job_manifest(
        "strict",
        "true",
        container={
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            }
        },
    )
    strict["spec"]["template"]["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    batch_v1(api).create_namespaced_job(ns, strict)
    _, condition = wait_for(lambda: job_condition(api, ns, "strict"), "the strict Job to finish")
    assert condition.type == "Complete"


def test_the_termination_message_is_the_file_or_a_failure_s_last_log_lines(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    """The file at terminationMessagePath (last 4096 bytes); FallbackToLogsOnError gives a
    failure that wrote none its log's tail; neither policy touches a success's empty file."""
    scripts = {
        "wrote": "echo noise; printf '%05000d' 7 > /dev/termination-log",
        "fell-back": "echo first; echo last words; exit 3",
        "quiet": "echo only in the log",
    }
    for name, script in scripts.items():
        container = {"terminationMessagePolicy": "FallbackToLogsOnError"}
        batch_v1(api).create_namespaced_job(ns, job_manifest(name, script, container=container))
    core = core_v1(api)
    messages = {}
    for name in scripts:
        wait_for(partial(job_condition, api, ns, name), f"{name} to finish")
        (pod,) = core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
        messages[name] = pod.status.container_statuses[0].state.terminated.message
    assert messages["wrote"] == "0" * 4095 + "7"  # the last 4096 of 5000 bytes
    assert messages["fell-back"] == "first\nlast words\n"
    assert messages["quiet"] is None

    fake.refuse_logs(1)
    (pod,) = core.list_namespaced_pod(ns, label_selector="job-name=quiet").items
    with pytest.raises(ApiException) as refused:
        core.read_namespaced_pod_log(pod.metadata.name, ns)
    assert refused.value.status == 500
    assert status_of(refused.value)["message"] == (
        f'Get "https://127.0.0.1:10250/containerLogs/{ns}/{pod.metadata.name}/main": dial tcp'
        " 127.0.0.1:10250: connect: connection refused"
    )
    assert core.read_namespaced_pod_log(pod.metadata.name, ns) == "only in the log\n"


def test_a_mover_job_runs_restic_on_the_mapped_storage(
    api: client.ApiClient, ns: str, fake: FakeKube, tmp_path: Path
) -> None:
    """The mount convention with a real tool: restic's repository and its JSON output."""
    storage = tmp_path / "storage"
    (storage / "app").mkdir(parents=True)
    os.chown(storage / "app", IMAGE_USER, IMAGE_GROUP)  # the export's owner
    fake.map_nfs("192.0.2.11", "/export", storage)
    core = core_v1(api)
    core.create_namespaced_secret(
        ns, {"metadata": {"name": "run"}, "stringData": {"RESTIC_PASSWORD": "pw"}}
    )
    script = (
        "restic init --quiet && echo payload |"
        " restic backup --json --stdin --stdin-filename db.dump | tail -n 1"
    )
    job = job_manifest(
        "restic",
        script,
        volumes=[{"name": "repo", "nfs": {"server": "192.0.2.11", "path": "/export/app"}}],
        container={
            "env": [{"name": "RESTIC_REPOSITORY", "value": "/repo/restic"}],
            "envFrom": [{"secretRef": {"name": "run"}}],
            "volumeMounts": [{"name": "repo", "mountPath": "/repo"}],
        },
    )
    batch_v1(api).create_namespaced_job(ns, job)
    _, condition = wait_for(lambda: job_condition(api, ns, "restic"), "restic", timeout=60)
    (pod,) = core.list_namespaced_pod(ns, label_selector="job-name=restic").items
    log = core.read_namespaced_pod_log(pod.metadata.name, ns)
    assert condition.type == "Complete", log
    assert (storage / "app" / "restic" / "config").is_file()
    summary = json.loads(log.splitlines()[-1])
    assert summary["message_type"] == "summary" and summary["snapshot_id"]
    assert str(storage) not in log


def test_a_pod_whose_volume_cannot_mount_waits_in_container_creating(
    api: client.ApiClient, ns: str
) -> None:
    core = core_v1(api)
    job = job_manifest(
        "stuck",
        "true",
        volumes=[{"name": "repo", "nfs": {"server": "198.51.100.1", "path": "/unknown"}}],
        container={"volumeMounts": [{"name": "repo", "mountPath": "/repo"}]},
    )
    batch_v1(api).create_namespaced_job(ns, job)

    def waiting() -> Any:
        pods = core.list_namespaced_pod(ns, label_selector="job-name=stuck").items
        statuses = pods[0].status.container_statuses if pods else None
        state = statuses[0].state.waiting if statuses else None
        # a new pod waits in ContainerCreating before the kubelet has tried its mounts
        return state if state and state.message else None

    state = wait_for(waiting, "the pod to report its mount problem")
    assert state.reason == "ContainerCreating"
    assert 'MountVolume.SetUp failed for volume "repo"' in state.message
    (pod,) = core.list_namespaced_pod(ns, label_selector="job-name=stuck").items
    assert pod.status.phase == "Pending"
    events = core.list_namespaced_event(
        ns, field_selector=f"involvedObject.name={pod.metadata.name}"
    ).items
    assert [(e.type, e.reason) for e in events] == [("Warning", "FailedMount")]
    with pytest.raises(ApiException) as waiting_log:
        core.read_namespaced_pod_log(pod.metadata.name, ns)
    assert status_of(waiting_log.value)["message"] == (
        f'container "main" in pod "{pod.metadata.name}" is waiting to start: ContainerCreating'
    )


def test_failing_job_reaches_its_backoff_limit(api: client.ApiClient, ns: str) -> None:
    core = core_v1(api)
    job = job_manifest("fails", "echo starting; echo 'disk full' >&2; exit 3", backoff_limit=1)
    batch_v1(api).create_namespaced_job(ns, job)
    finished, condition = wait_for(lambda: job_condition(api, ns, "fails"), "job to fail")
    assert (condition.type, condition.reason) == ("Failed", "BackoffLimitExceeded")
    assert condition.message == "Job has reached the specified backoff limit"
    assert finished.status.failed == 2  # the first try and one retry
    pods = core.list_namespaced_pod(ns, label_selector="job-name=fails").items
    assert len(pods) == 2 and {p.status.phase for p in pods} == {"Failed"}
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert core.read_namespaced_pod_log(pods[0].metadata.name, ns) == "starting\ndisk full\n"


def test_a_job_past_its_deadline_is_failed_and_its_pod_stopped(
    api: client.ApiClient, ns: str, tmp_path: Path
) -> None:
    marker = tmp_path / "terminated"
    job = job_manifest(
        "slow",
        f"trap 'touch {marker}; exit 143' TERM; while true; do sleep 0.1; done",
        securityContext={"runAsUser": 0},  # root, to write the marker outside any volume
    )
    job["spec"]["activeDeadlineSeconds"] = 1
    batch_v1(api).create_namespaced_job(ns, job)
    finished, condition = wait_for(lambda: job_condition(api, ns, "slow"), "the deadline")
    assert (condition.type, condition.reason) == ("Failed", "DeadlineExceeded")
    assert finished.status.failed == 1 and not finished.status.active
    wait_for(
        lambda: not core_v1(api).list_namespaced_pod(ns, label_selector="job-name=slow").items,
        "the pod to be gone",
    )
    assert marker.exists()  # it got SIGTERM first, as a kubelet sends


# --- kubelet: who a container runs as, and the volumes' ownership ---


def _pod_run(api: client.ApiClient, ns: str, name: str, script: str, **pod: Any) -> tuple[Any, str]:
    batch_v1(api).create_namespaced_job(ns, job_manifest(name, script, **pod))
    _, condition = wait_for(lambda: job_condition(api, ns, name), f"{name} to finish")
    (found,) = core_v1(api).list_namespaced_pod(ns, label_selector=f"job-name={name}").items
    return condition, core_v1(api).read_namespaced_pod_log(found.metadata.name, ns)


def test_containers_run_as_their_security_context_says(api: client.ApiClient, ns: str) -> None:
    """The image's user by default (cairn's: 10001:10001); the pod's runAsUser/runAsGroup,
    overridden by the container's; supplementalGroups and fsGroup as supplementary groups; a
    runAsUser the image does not know without a runAsGroup runs with group 0."""
    script = "echo $(id -u) $(id -g) $(id -G)"
    _, log = _pod_run(api, ns, "image-user", script)
    assert log == f"{IMAGE_USER} {IMAGE_GROUP} {IMAGE_GROUP}\n"
    _, log = _pod_run(
        api,
        ns,
        "pod-user",
        script,
        securityContext={
            "runAsUser": 1000,
            "runAsGroup": 1001,
            "supplementalGroups": [3000],
            "fsGroup": 2000,
        },
    )
    assert log == "1000 1001 1001 2000 3000\n"
    _, log = _pod_run(
        api,
        ns,
        "container-user",
        script,
        securityContext={"runAsUser": 1000, "runAsGroup": 1001},
        container={"securityContext": {"runAsUser": 1500}},
    )
    assert log == "1500 1001 1001\n"
    _, log = _pod_run(api, ns, "unknown-user", script, securityContext={"runAsUser": 1234})
    assert log == "1234 0 0\n"


def test_the_fake_refuses_to_start_unless_root() -> None:
    """Its kubelet runs containers as other users: not as root, it says so and stops."""
    done = subprocess.run(
        [sys.executable, "-c", "from tests.fakes.kube import FakeKube; FakeKube().start()"],
        user=IMAGE_USER,
        group=IMAGE_GROUP,
        extra_groups=[],
        cwd=Path.cwd(),
        env={"PATH": os.environ["PATH"], "HOME": "/tmp"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert (
        "RuntimeError: the fake Kubernetes API runs each container as its pod's user"
        f" (runAsUser, runAsGroup, fsGroup): it must run as root, and runs as uid {IMAGE_USER}"
    ) in done.stderr


def test_a_non_root_pod_that_would_run_as_root_is_not_started(
    api: client.ApiClient, ns: str
) -> None:
    job = job_manifest("rooted", "true", securityContext={"runAsNonRoot": True, "runAsUser": 0})
    batch_v1(api).create_namespaced_job(ns, job)

    def refused() -> Any:
        pods = core_v1(api).list_namespaced_pod(ns, label_selector="job-name=rooted").items
        statuses = (pods and pods[0].status.container_statuses) or []
        waiting = statuses and statuses[0].state.waiting
        return waiting if waiting and waiting.reason == "CreateContainerConfigError" else None

    waiting = wait_for(refused, "the kubelet's refusal")
    assert waiting.message.startswith("container's runAsUser breaks non-root policy (pod: ")


def test_fs_group_is_applied_to_claims_and_empty_dirs_not_to_nfs(
    api: client.ApiClient, ns: str, fake: FakeKube, tmp_path: Path
) -> None:
    """A claim's files of another user, mode 0600/0700, become group-owned by the fsGroup,
    group-readable and writable, folders setgid; the image's user can then read and write
    them. An nfs volume keeps its owners: the same user cannot read there."""
    core_v1(api).create_namespaced_persistent_volume_claim(ns, pvc_manifest("data"))
    volume = wait_for(lambda: _bound(fake, ns, "data"), "the claim to bind")
    (volume / "private").mkdir(mode=0o700)
    (volume / "private" / "secret.txt").write_text("app data\n")
    (volume / "private" / "secret.txt").chmod(0o600)
    for owned in (volume / "private", volume / "private" / "secret.txt"):
        os.chown(owned, 1000, 1000)
    share = tmp_path / "share"
    share.mkdir()
    (share / "secret.txt").write_text("nfs data\n")
    (share / "secret.txt").chmod(0o600)
    os.chown(share / "secret.txt", 1000, 1000)
    fake.map_nfs("192.0.2.30", "/export", share)
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "share", "nfs": {"server": "192.0.2.30", "path": "/export"}},
    ]
    mounts = [
        {"name": "data", "mountPath": "/data"},
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "share", "mountPath": "/share"},
    ]
    script = (
        "cat /data/private/secret.txt && echo more >> /data/private/secret.txt"
        " && touch /data/private/new /scratch/x && stat -c %g /scratch/x"
        " && ! cat /share/secret.txt 2>/dev/null && echo nfs refused"
    )
    condition, log = _pod_run(
        api,
        ns,
        "grouped",
        script,
        volumes=volumes,
        container={"volumeMounts": mounts},
        securityContext={"fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch"},
    )
    assert condition.type == "Complete", log
    assert log == "app data\n2000\nnfs refused\n"
    private = (volume / "private").stat()
    assert (private.st_uid, private.st_gid, private.st_mode & 0o7777) == (1000, 2000, 0o2770)
    assert (volume / "private" / "secret.txt").stat().st_mode & 0o777 == 0o660
    assert (volume / "private" / "new").stat().st_gid == 2000  # the setgid folder's group
    assert volume.stat().st_gid == 2000 and volume.stat().st_mode & 0o2000
    assert (share / "secret.txt").stat().st_gid == 1000  # nfs: no ownership management
    # OnRootMismatch: the root matches now, so a file of another group is left alone
    (volume / "later.txt").write_text("x")
    os.chown(volume / "later.txt", 0, 0)  # not the setgid folder's group
    _pod_run(
        api,
        ns,
        "again",
        "true",
        volumes=volumes[:1],
        container={"volumeMounts": mounts[:1]},
        securityContext={"fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch"},
    )
    assert (volume / "later.txt").stat().st_gid == 0
    _pod_run(  # the default policy, Always, walks the volume each time
        api,
        ns,
        "always",
        "true",
        volumes=volumes[:1],
        container={"volumeMounts": mounts[:1]},
        securityContext={"fsGroup": 2000},
    )
    assert (volume / "later.txt").stat().st_gid == 2000


def test_a_root_squash_export_makes_a_root_container_nobody(
    api: client.ApiClient, ns: str, fake: FakeKube, tmp_path: Path
) -> None:
    """An export marked root_squash: a container that mounts it as uid 0 runs as nobody
    (65534, group 65534 for gid 0), its other supplementary groups kept, so root's own
    files there are closed to it and its group's open; the same export unsquashed lets root
    in; a non-root container is not changed."""
    for name, squash in (("squashed", True), ("open", False)):
        export = tmp_path / name
        (export / "team").mkdir(parents=True)
        (export / "root-only.txt").write_text("root's\n")
        (export / "root-only.txt").chmod(0o600)
        os.chown(export / "team", 0, 3000)
        (export / "team").chmod(0o770)
        fake.map_nfs("192.0.2.40", f"/export/{name}", export, root_squash=squash)
    script = (
        "echo $(id -u) $(id -g) $(id -G); cat /share/root-only.txt 2>/dev/null || echo closed;"
        " echo x > /share/team/$(id -u) && stat -c '%u:%g' /share/team/$(id -u)"
    )

    def run(name: str, export: str, **security: Any) -> str:
        condition, log = _pod_run(
            api,
            ns,
            name,
            script,
            volumes=[{"name": "share", "nfs": {"server": "192.0.2.40", "path": export}}],
            container={"volumeMounts": [{"name": "share", "mountPath": "/share"}]},
            securityContext=security,
        )
        assert condition.type == "Complete", log
        return log

    squashed_root = run("root-squashed", "/export/squashed", runAsUser=0, supplementalGroups=[3000])
    assert squashed_root == "65534 65534 65534 3000\nclosed\n65534:65534\n"
    open_root = run("root-open", "/export/open", runAsUser=0, supplementalGroups=[3000])
    assert open_root == "0 0 0 3000\nroot's\n0:0\n"
    user = run("user-squashed", "/export/squashed", runAsUser=1000, runAsGroup=3000)
    assert user == "1000 3000 3000\nclosed\n1000:3000\n"


def test_without_fs_group_a_new_claim_is_roots(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    """A new volume's root is root's, mode 0755, as a new filesystem's: the image's user
    cannot write there without an fsGroup."""
    core_v1(api).create_namespaced_persistent_volume_claim(ns, pvc_manifest("fresh"))
    volume = wait_for(lambda: _bound(fake, ns, "fresh"), "the claim to bind")
    condition, log = _pod_run(
        api,
        ns,
        "denied",
        "touch /fresh/x",
        volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "fresh"}}],
        container={"volumeMounts": [{"name": "v", "mountPath": "/fresh"}]},
    )
    assert condition.type == "Failed"
    assert "Permission denied" in log
    assert not (volume / "x").exists()


def test_missing_command_fails_like_a_start_error(api: client.ApiClient, ns: str) -> None:
    core = core_v1(api)
    job = job_manifest("nocmd", "", container={"command": ["/nonexistent/tool"]})
    batch_v1(api).create_namespaced_job(ns, job)
    _, condition = wait_for(lambda: job_condition(api, ns, "nocmd"), "job to fail")
    assert condition.type == "Failed"
    (pod,) = core.list_namespaced_pod(ns, label_selector="job-name=nocmd").items
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (128, "StartError")


def test_a_mesh_s_sidecar_keeps_a_job_s_pod_running_until_it_is_deleted(
    api: client.ApiClient, fake: FakeKube, ns: str
) -> None:
    """The injected proxy runs on after the Job's own container has ended: the pod stays
    Running, the Job never completes; deleting the Job stops the proxy."""
    core = core_v1(api)
    fake.inject_sidecar(ns)
    try:
        batch_v1(api).create_namespaced_job(ns, job_manifest("meshed", "echo done"))
        (pod,) = wait_for(
            lambda: core.list_namespaced_pod(ns, label_selector="job-name=meshed").items,
            "the pod",
        )
    finally:
        fake.inject_sidecar(ns, enabled=False)

    def states() -> dict[str, Any] | None:
        found = core.read_namespaced_pod(pod.metadata.name, ns).status.container_statuses
        by_name = {s.name: s.state for s in found or []}
        main = by_name.get("main")
        return by_name if main and main.terminated and by_name.get("mesh-proxy") else None

    ended = wait_for(states, "the job's container to end")
    assert ended["main"].terminated.exit_code == 0 and ended["mesh-proxy"].running
    assert core.read_namespaced_pod(pod.metadata.name, ns).status.phase == "Running"
    job = batch_v1(api).read_namespaced_job("meshed", ns)
    assert job.status.active == 1 and not job.status.conditions
    batch_v1(api).delete_namespaced_job("meshed", ns, propagation_policy="Background")
    wait_for(
        lambda: not core.list_namespaced_pod(ns, label_selector="job-name=meshed").items,
        "the pod to be gone",
    )


def test_deleting_a_job_orphans_or_removes_its_pods(api: client.ApiClient, ns: str) -> None:
    batch, core = batch_v1(api), core_v1(api)
    for name in ("kept", "removed"):
        batch.create_namespaced_job(ns, job_manifest(name, "true"))
        wait_for(partial(job_condition, api, ns, name), f"{name} to finish")
    raw = batch.delete_namespaced_job("kept", ns, _preload_content=False)
    assert "child pods are preserved by default" in raw.headers["Warning"]
    (orphan,) = core.list_namespaced_pod(ns, label_selector="job-name=kept").items
    assert not orphan.metadata.owner_references
    batch.delete_namespaced_job("removed", ns, propagation_policy="Background")
    assert core.list_namespaced_pod(ns, label_selector="job-name=removed").items == []


def test_a_claim_in_use_outlives_its_deletion(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    core = core_v1(api)
    core.create_namespaced_persistent_volume_claim(ns, pvc_manifest("busy"))
    job = job_manifest(
        "user",
        "until [ -f /v/release ]; do sleep 0.05; done",
        volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "busy"}}],
        container={"volumeMounts": [{"name": "v", "mountPath": "/v"}]},
    )
    batch_v1(api).create_namespaced_job(ns, job)
    wait_for(
        lambda: [p for p in core.list_namespaced_pod(ns).items if p.status.phase == "Running"],
        "the pod to run",
    )
    folder = fake.pvc_path(ns, "busy")
    core.delete_namespaced_persistent_volume_claim("busy", ns)
    held = core.read_namespaced_persistent_volume_claim("busy", ns)
    assert held.metadata.deletion_timestamp and held.metadata.finalizers == [
        "kubernetes.io/pvc-protection"
    ]
    (folder / "release").touch()
    wait_for(lambda: job_condition(api, ns, "user"), "the job to finish")
    wait_for(lambda: fake.get("", "persistentvolumeclaims", ns, "busy") is None, "the claim to go")
    assert not folder.exists()


def test_a_claim_gets_a_persistent_volume_its_class_reclaims_or_retains(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    """Dynamic provisioning: a PV ``pvc-<claim uid>`` bound through ``claimRef``. Deleting
    the claim deletes PV and storage under ``Delete``; under ``Retain`` the PV is Released
    and keeps its storage until its policy is patched to Delete."""
    core, storage = core_v1(api), client.StorageV1Api(api)
    retain = f"retain-{ns}"
    storage.create_storage_class(
        client.V1StorageClass(
            metadata=client.V1ObjectMeta(name=retain),
            provisioner=CSI_DRIVER,
            reclaim_policy="Retain",
        )
    )
    try:
        core.create_namespaced_persistent_volume_claim(ns, pvc_manifest("gone"))
        core.create_namespaced_persistent_volume_claim(
            ns, pvc_manifest("kept", storageClassName=retain)
        )
        folders = {
            name: wait_for(partial(_bound, fake, ns, name), name) for name in ("gone", "kept")
        }
        claim = core.read_namespaced_persistent_volume_claim("kept", ns)
        volume = core.read_persistent_volume(claim.spec.volume_name)
        assert volume.metadata.name == f"pvc-{claim.metadata.uid}"
        assert (volume.spec.claim_ref.name, volume.spec.claim_ref.uid) == (
            "kept",
            claim.metadata.uid,
        )
        assert (volume.spec.persistent_volume_reclaim_policy, volume.status.phase) == (
            "Retain",
            "Bound",
        )
        assert volume.spec.csi.driver == CSI_DRIVER and volume.spec.capacity == {"storage": "1Gi"}

        gone = core.read_namespaced_persistent_volume_claim("gone", ns).spec.volume_name
        for name in ("gone", "kept"):
            core.delete_namespaced_persistent_volume_claim(name, ns)
        wait_for(lambda: not folders["gone"].exists(), "the Delete volume's storage to go")
        with pytest.raises(ApiException):
            core.read_persistent_volume(gone)
        released = wait_for(
            lambda: core.read_persistent_volume(volume.metadata.name).status.phase == "Released",
            "the Retain volume to be Released",
        )
        assert released and folders["kept"].exists()

        core.patch_persistent_volume(
            volume.metadata.name, {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}
        )
        wait_for(lambda: not folders["kept"].exists(), "the Released volume to be reclaimed")
        assert fake.get("", "persistentvolumes", "", volume.metadata.name) is None
    finally:
        storage.delete_storage_class(retain)


def test_a_claim_naming_a_volume_is_bound_to_it_only_when_it_fits(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    """Static binding through ``spec.volumeName``: a volume reserved for another claim, too
    small or of other access modes leaves the claim Pending; a Released one whose claimRef
    is re-pointed (no uid) is Available, pre-bound; an Available one that fits is bound, and
    a bound claim's volumeName cannot change."""
    core = core_v1(api)
    core.create_namespaced_persistent_volume_claim(ns, pvc_manifest("source"))
    folder = wait_for(partial(_bound, fake, ns, "source"), "the source claim")
    (folder / "data.txt").write_text("moved\n")
    volume = core.read_namespaced_persistent_volume_claim("source", ns).spec.volume_name
    core.patch_persistent_volume(volume, {"spec": {"persistentVolumeReclaimPolicy": "Retain"}})
    core.delete_namespaced_persistent_volume_claim("source", ns)
    wait_for(lambda: core.read_persistent_volume(volume).status.phase == "Released", "Released")
    core.create_namespaced_persistent_volume_claim(ns, pvc_manifest("late", volumeName=volume))
    assert fake.controllers is not None
    fake.controllers.wait_synced()
    assert core.read_namespaced_persistent_volume_claim("late", ns).status.phase == "Pending"

    wider = pvc_manifest("wider", volumeName=volume)
    wider["spec"]["accessModes"] = ["ReadWriteMany"]
    core.create_namespaced_persistent_volume_claim(ns, wider)
    # An administrator frees it for the new claim (claimRef without the old uid).
    core.patch_persistent_volume(
        volume, {"spec": {"claimRef": {"namespace": ns, "name": "late", "uid": None}}}
    )
    wait_for(lambda: _bound(fake, ns, "late"), "the claim to bind to the freed volume")
    assert (fake.pvc_path(ns, "late") / "data.txt").read_text() == "moved\n"
    assert core.read_persistent_volume(volume).status.phase == "Bound"
    with pytest.raises(client.ApiException) as immutable:
        core.patch_namespaced_persistent_volume_claim(
            "late", ns, {"spec": {"volumeName": "another"}}
        )
    assert immutable.value.status == 422
    core.delete_namespaced_persistent_volume_claim("late", ns)
    core.patch_persistent_volume(
        volume, {"spec": {"claimRef": {"namespace": ns, "name": "wider", "uid": None}}}
    )
    wait_for(lambda: core.read_persistent_volume(volume).status.phase == "Available", "freed")
    fake.controllers.wait_synced()
    assert core.read_namespaced_persistent_volume_claim("wider", ns).status.phase == "Pending"

    small = f"small-{ns}"
    core.create_persistent_volume(
        {
            "metadata": {"name": small},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "csi": {"driver": CSI_DRIVER, "volumeHandle": small},
            },
        }
    )
    wait_for(lambda: core.read_persistent_volume(small).status.phase == "Available", "Available")
    big = pvc_manifest("big", volumeName=small)
    big["spec"]["resources"]["requests"]["storage"] = "2Gi"
    core.create_namespaced_persistent_volume_claim(ns, big)
    assert fake.controllers is not None
    fake.controllers.wait_synced()
    assert core.read_namespaced_persistent_volume_claim("big", ns).status.phase == "Pending"
    core.delete_persistent_volume(small)


# --- CSI: snapshots and restores ---


def snapshot_manifest(name: str, claim: str, snapshot_class: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{SNAPSHOT_GROUP}/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name},
        "spec": {
            "volumeSnapshotClassName": snapshot_class,
            "source": {"persistentVolumeClaimName": claim},
        },
    }


def make_class(api: client.ApiClient, name: str, driver: str) -> None:
    custom_objects(api).create_cluster_custom_object(
        SNAPSHOT_GROUP,
        "v1",
        "volumesnapshotclasses",
        {"metadata": {"name": name}, "driver": driver, "deletionPolicy": "Delete"},
    )


def test_snapshot_is_a_point_in_time_copy_and_restores(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    core, custom = core_v1(api), custom_objects(api)
    core.create_namespaced_persistent_volume_claim(ns, pvc_manifest("data"))
    volume = wait_for(lambda: _bound(fake, ns, "data"), "the claim to bind")
    (volume / "file.txt").write_text("before")
    (volume / "private").mkdir(mode=0o700)
    (volume / "private" / "key").write_text("k")
    for owned in (volume / "private", volume / "private" / "key"):
        os.chown(owned, 1000, 1001)
    make_class(api, f"csi-{ns}", CSI_DRIVER)
    custom.create_namespaced_custom_object(
        SNAPSHOT_GROUP, "v1", ns, "volumesnapshots", snapshot_manifest("snap", "data", f"csi-{ns}")
    )

    def ready() -> dict[str, Any] | None:
        snap = custom.get_namespaced_custom_object(
            SNAPSHOT_GROUP, "v1", ns, "volumesnapshots", "snap"
        )
        return snap if (snap.get("status") or {}).get("readyToUse") else None

    status = wait_for(ready, "the snapshot to be ready")["status"]
    assert status["restoreSize"] == "1Gi" and status["creationTime"]
    content = custom.get_cluster_custom_object(
        SNAPSHOT_GROUP, "v1", "volumesnapshotcontents", status["boundVolumeSnapshotContentName"]
    )
    assert content["spec"]["volumeSnapshotRef"]["name"] == "snap"
    assert content["spec"]["driver"] == CSI_DRIVER and content["status"]["readyToUse"]

    (volume / "file.txt").write_text("after")  # written after the snapshot was taken
    assert (fake.snapshot_path(ns, "snap") / "file.txt").read_text() == "before"

    restored = pvc_manifest(
        "restored",
        dataSource={"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": "snap"},
    )
    core.create_namespaced_persistent_volume_claim(ns, restored)
    folder = wait_for(lambda: _bound(fake, ns, "restored"), "the restored claim to bind")
    assert (folder / "file.txt").read_text() == "before"
    for copy in (fake.snapshot_path(ns, "snap"), folder):  # owners and modes kept
        info = (copy / "private").stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (1000, 1001, 0o700)
        assert (copy / "private" / "key").stat().st_uid == 1000
    job = job_manifest(
        "reader",
        "cat /restore/file.txt",
        volumes=[
            {"name": "r", "persistentVolumeClaim": {"claimName": "restored", "readOnly": True}}
        ],
        container={"volumeMounts": [{"name": "r", "mountPath": "/restore", "readOnly": True}]},
    )
    batch_v1(api).create_namespaced_job(ns, job)
    wait_for(lambda: job_condition(api, ns, "reader"), "the reader to finish")
    (pod,) = core.list_namespaced_pod(ns, label_selector="job-name=reader").items
    assert core.read_namespaced_pod_log(pod.metadata.name, ns) == "before"

    too_small = pvc_manifest(
        "small",
        dataSource={"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": "snap"},
    )
    too_small["spec"]["resources"]["requests"]["storage"] = "1Mi"
    core.create_namespaced_persistent_volume_claim(ns, too_small)
    refused = wait_for(
        lambda: core.list_namespaced_event(ns, field_selector="involvedObject.name=small").items,
        "the provisioner's refusal",
    )
    assert refused[0].reason == "ProvisioningFailed"
    assert "requested volume size 1048576 is less than the size 1073741824" in refused[0].message
    assert core.read_namespaced_persistent_volume_claim("small", ns).status.phase == "Pending"

    custom.delete_namespaced_custom_object(SNAPSHOT_GROUP, "v1", ns, "volumesnapshots", "snap")
    wait_for(
        lambda: (
            fake.get(SNAPSHOT_GROUP, "volumesnapshotcontents", "", content["metadata"]["name"])
            is None
        ),
        "the content to be deleted with its snapshot",
    )
    custom.delete_cluster_custom_object(SNAPSHOT_GROUP, "v1", "volumesnapshotclasses", f"csi-{ns}")


def test_a_snapshot_is_imported_into_another_namespace_through_a_pre_provisioned_content(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    """Static provisioning across namespaces: a VolumeSnapshotContent pointing at another
    snapshot's handle, pre-bound to a VolumeSnapshot of another namespace, is ready there and
    restores; a snapshot the content does not name is refused; a Retain content leaves the
    storage's snapshot, a Delete one takes it."""
    core, custom = core_v1(api), custom_objects(api)
    core.create_namespaced_persistent_volume_claim(ns, pvc_manifest("data"))
    (wait_for(lambda: _bound(fake, ns, "data"), "the claim") / "f.txt").write_text("taken")
    make_class(api, f"csi-{ns}", CSI_DRIVER)
    custom.create_namespaced_custom_object(
        SNAPSHOT_GROUP, "v1", ns, "volumesnapshots", snapshot_manifest("snap", "data", f"csi-{ns}")
    )
    wait_for(lambda: _ready_snapshot(custom, ns, "snap"), "the snapshot")
    original = custom.get_namespaced_custom_object(
        SNAPSHOT_GROUP, "v1", ns, "volumesnapshots", "snap"
    )["status"]["boundVolumeSnapshotContentName"]
    handle = custom.get_cluster_custom_object(
        SNAPSHOT_GROUP, "v1", "volumesnapshotcontents", original
    )["status"]["snapshotHandle"]
    other = f"{ns}-imp"
    core.create_namespace({"metadata": {"name": other}})
    imported = f"imported-{ns}"
    try:
        custom.create_cluster_custom_object(
            SNAPSHOT_GROUP,
            "v1",
            "volumesnapshotcontents",
            {
                "metadata": {"name": imported},
                "spec": {
                    "deletionPolicy": "Retain",
                    "driver": CSI_DRIVER,
                    "source": {"snapshotHandle": handle},
                    "volumeSnapshotRef": {"name": "copy", "namespace": other},
                },
            },
        )
        for name in ("copy", "intruder"):
            custom.create_namespaced_custom_object(
                SNAPSHOT_GROUP,
                "v1",
                other,
                "volumesnapshots",
                {
                    "metadata": {"name": name},
                    "spec": {"source": {"volumeSnapshotContentName": imported}},
                },
            )
        status = wait_for(lambda: _ready_snapshot(custom, other, "copy"), "the import")["status"]
        assert (status["boundVolumeSnapshotContentName"], status["restoreSize"]) == (
            imported,
            "1Gi",
        )
        content = custom.get_cluster_custom_object(
            SNAPSHOT_GROUP, "v1", "volumesnapshotcontents", imported
        )
        assert content["spec"]["volumeSnapshotRef"]["uid"]
        intruder = wait_for(
            lambda: (
                custom.get_namespaced_custom_object(
                    SNAPSHOT_GROUP, "v1", other, "volumesnapshots", "intruder"
                ).get("status")
                or {}
            ).get("error"),
            "the intruder's error",
        )
        assert intruder["message"] == (
            f"VolumeSnapshotContent [{imported}] is bound to a different snapshot"
        )
        restored = pvc_manifest(
            "restored",
            dataSource={"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": "copy"},
        )
        core.create_namespaced_persistent_volume_claim(other, restored)
        folder = wait_for(lambda: _bound(fake, other, "restored"), "the restored claim")
        assert (folder / "f.txt").read_text() == "taken"

        storage_snapshot = fake.snapshot_path(ns, "snap")
        custom.delete_namespaced_custom_object(
            SNAPSHOT_GROUP, "v1", other, "volumesnapshots", "copy"
        )
        custom.delete_cluster_custom_object(
            SNAPSHOT_GROUP, "v1", "volumesnapshotcontents", imported
        )
        assert fake.controllers is not None
        fake.controllers.wait_synced()
        assert storage_snapshot.is_dir()  # Retain: the storage's snapshot stays
        custom.delete_namespaced_custom_object(SNAPSHOT_GROUP, "v1", ns, "volumesnapshots", "snap")
        wait_for(lambda: not storage_snapshot.exists(), "the Delete content to take it")
    finally:
        core.delete_namespace(other)


def _ready_snapshot(custom: Any, ns: str, name: str) -> dict[str, Any] | None:
    snap: dict[str, Any] = custom.get_namespaced_custom_object(
        SNAPSHOT_GROUP, "v1", ns, "volumesnapshots", name
    )
    return snap if (snap.get("status") or {}).get("readyToUse") else None


def test_snapshot_of_a_driver_nobody_serves_never_becomes_ready(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    custom = custom_objects(api)
    core_v1(api).create_namespaced_persistent_volume_claim(ns, pvc_manifest("data"))
    wait_for(lambda: _bound(fake, ns, "data"), "the claim to bind")
    make_class(api, f"stuck-{ns}", "absent.csi.example.com")
    custom.create_namespaced_custom_object(
        SNAPSHOT_GROUP,
        "v1",
        ns,
        "volumesnapshots",
        snapshot_manifest("snap", "data", f"stuck-{ns}"),
    )

    def bound() -> dict[str, Any] | None:
        snap = fake.get(SNAPSHOT_GROUP, "volumesnapshots", ns, "snap")
        return (
            snap
            if ((snap or {}).get("status") or {}).get("boundVolumeSnapshotContentName")
            else None
        )

    snap = wait_for(bound, "the snapshot to be bound")
    assert fake.controllers is not None
    fake.controllers.wait_synced()
    assert fake.get(SNAPSHOT_GROUP, "volumesnapshots", ns, "snap")["status"]["readyToUse"] is False  # type: ignore[index]
    assert "restoreSize" not in snap["status"]
    with pytest.raises(LookupError):
        fake.snapshot_path(ns, "snap")
    custom.delete_cluster_custom_object(
        SNAPSHOT_GROUP, "v1", "volumesnapshotclasses", f"stuck-{ns}"
    )


def test_snapshot_with_an_unknown_class_reports_an_error(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    custom = custom_objects(api)
    core_v1(api).create_namespaced_persistent_volume_claim(ns, pvc_manifest("data"))
    custom.create_namespaced_custom_object(
        SNAPSHOT_GROUP, "v1", ns, "volumesnapshots", snapshot_manifest("snap", "data", "missing")
    )
    snap = wait_for(
        lambda: (
            (fake.get(SNAPSHOT_GROUP, "volumesnapshots", ns, "snap") or {}).get("status") or {}
        ).get("error"),
        "the error",
    )
    assert snap["message"] == (
        "Failed to get snapshot class with error"
        ' volumesnapshotclass.snapshot.storage.k8s.io "missing" not found'
    )


def _bound(fake: FakeKube, ns: str, name: str) -> Path | None:
    try:
        return fake.pvc_path(ns, name)
    except LookupError:
        return None


# --- namespaces and the request log ---


def test_deleting_a_namespace_removes_what_it_holds(api: client.ApiClient, fake: FakeKube) -> None:
    core = core_v1(api)
    name = f"gone-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_persistent_volume_claim(name, pvc_manifest("v"))
    folder = wait_for(lambda: _bound(fake, name, "v"), "the claim to bind")
    held = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    core.create_namespaced_config_map(name, held)
    code, deleted, _ = send(api, "DELETE", f"/api/v1/namespaces/{name}", None)
    assert (code, deleted["kind"], deleted["status"]["phase"]) == (200, "Namespace", "Terminating")
    wait_for(lambda: fake.get("", "persistentvolumeclaims", name, "v") is None, "the claim to go")
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_config_map(name, {"metadata": {"name": "late"}})
    assert refused.value.status == 403
    assert status_of(refused.value)["message"] == (
        f'configmaps "late" is forbidden: unable to create new content in namespace {name}'
        " because it is being terminated"
    )
    assert core.read_namespace(name).status.phase == "Terminating"  # the finalizer holds it
    core.patch_namespaced_config_map("held", name, {"metadata": {"finalizers": None}})
    wait_for(lambda: fake.get("", "namespaces", "", name) is None, "the namespace to go")
    assert fake.list("", "persistentvolumeclaims", name) == [] and not folder.exists()


def test_the_request_log_names_verbs_and_resources(
    api: client.ApiClient, ns: str, fake: FakeKube
) -> None:
    core = core_v1(api)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    core.list_namespaced_config_map(ns)
    apps_v1(api).list_namespaced_deployment(ns)
    used = fake.used_permissions()
    assert {
        ("create", "", "configmaps"),
        ("list", "", "configmaps"),
        ("list", "apps", "deployments"),
    } <= used
    assert any(r.namespace == ns and r.verb == "create" for r in fake.requests)


def test_requests_without_the_token_are_unauthorized(fake: FakeKube) -> None:
    configuration = client.Configuration()
    configuration.host = fake.url
    configuration.ssl_ca_cert = str(fake.ca_path)
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(client.ApiClient(configuration)).list_namespace()
    assert denied.value.status == 401


# --- a second client: kubectl ---


@pytest.fixture(scope="module")
def kubectl() -> str:
    """``CAIRN_TEST_KUBECTL`` or the kubectl on PATH (Debian's kubernetes-client)."""
    path = os.environ.get("CAIRN_TEST_KUBECTL") or shutil.which("kubectl")
    assert path, "kubectl is missing: scripts/system-deps.sh installs Debian's kubernetes-client"
    return path


def run_kubectl(
    kubectl: str, fake: FakeKube, tmp: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(tmp), "KUBECONFIG": str(fake.kubeconfig)}
    return subprocess.run(
        [kubectl, "--kubeconfig", str(fake.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )


def test_kubectl_gets_jobs_claims_and_snapshots(
    api: client.ApiClient, ns: str, fake: FakeKube, kubectl: str, tmp_path: Path
) -> None:
    core, custom = core_v1(api), custom_objects(api)
    core.create_namespaced_persistent_volume_claim(ns, pvc_manifest("data"))
    wait_for(lambda: _bound(fake, ns, "data"), "the claim to bind")
    make_class(api, f"k-{ns}", CSI_DRIVER)
    custom.create_namespaced_custom_object(
        SNAPSHOT_GROUP, "v1", ns, "volumesnapshots", snapshot_manifest("snap", "data", f"k-{ns}")
    )
    batch_v1(api).create_namespaced_job(ns, job_manifest("hello", "echo hi"))
    wait_for(lambda: job_condition(api, ns, "hello"), "the job to finish")
    result = run_kubectl(
        kubectl, fake, tmp_path, "get", "jobs,pvc,volumesnapshots", "-n", ns, "-o", "json"
    )
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    assert sorted((i["kind"], i["metadata"]["name"]) for i in items) == [
        ("Job", "hello"),
        ("PersistentVolumeClaim", "data"),
        ("VolumeSnapshot", "snap"),
    ]
    job = next(i for i in items if i["kind"] == "Job")
    assert job["apiVersion"] == "batch/v1" and job["status"]["succeeded"] == 1
    custom.delete_cluster_custom_object(SNAPSHOT_GROUP, "v1", "volumesnapshotclasses", f"k-{ns}")


def test_kubectl_apply_creates_configures_and_validates(
    api: client.ApiClient, ns: str, fake: FakeKube, kubectl: str, tmp_path: Path
) -> None:
    manifest = job_manifest("applied", "echo applied")
    manifest["metadata"].update(namespace=ns, labels={"app": "mover"})
    path = tmp_path / "job.json"
    path.write_text(json.dumps(manifest))
    created = run_kubectl(kubectl, fake, tmp_path, "apply", "-f", str(path))
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "job.batch/applied created"
    _, condition = wait_for(lambda: job_condition(api, ns, "applied"), "the applied job to run")
    assert condition.type == "Complete"

    manifest["metadata"]["labels"]["tier"] = "backup"
    path.write_text(json.dumps(manifest))
    configured = run_kubectl(kubectl, fake, tmp_path, "apply", "-f", str(path))
    assert configured.returncode == 0, configured.stderr
    assert configured.stdout.strip() == "job.batch/applied configured"
    job = batch_v1(api).read_namespaced_job("applied", ns)
    assert job.metadata.labels == {"app": "mover", "tier": "backup"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in job.metadata.annotations
    assert ("patch", "batch", "jobs") in fake.used_permissions()

    broken = job_manifest("broken", "true")
    broken["metadata"]["namespace"] = ns
    del broken["spec"]["template"]["spec"]["containers"][0]["name"]
    path.write_text(json.dumps(broken))
    rejected = run_kubectl(kubectl, fake, tmp_path, "apply", "-f", str(path))
    assert rejected.returncode != 0
    assert "name" in rejected.stderr  # client-side (openapi v2) or server-side (422) rejection
    typo = job_manifest("typo", "true", container={"comand": ["true"]})
    typo["metadata"]["namespace"] = ns
    path.write_text(json.dumps(typo))
    rejected = run_kubectl(kubectl, fake, tmp_path, "apply", "-f", str(path))
    assert rejected.returncode != 0
    assert 'unknown field "' in rejected.stderr and "comand" in rejected.stderr
    assert fake.get("batch", "jobs", ns, "broken") is None
    assert fake.get("batch", "jobs", ns, "typo") is None
