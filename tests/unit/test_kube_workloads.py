"""Scale-down quiesce against the Kubernetes API fake: counts recorded before scaling, restored
after, every call idempotent, a crash between the record and the scale loses nothing."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from adapters.kubernetes.workloads import (
    ANNOTATION,
    PodIdentity,
    pod_identity,
    scale_down,
    scale_up,
)
from adapters.platform import PlatformError
from tests.fakes.kube import FakeKube
from tests.support import kube as fixtures
from tests.support.kube import CairnCalls, apps, core, eventually
from tests.support.kube_rbac import uncovered

kube, kube_api, namespace, cairn = (
    fixtures.kube,
    fixtures.kube_api,
    fixtures.namespace,
    fixtures.cairn,
)
rbac_equals_what_cairn_used = fixtures.rbac_equals_what_cairn_used


def make(
    api: client.ApiClient,
    ns: str,
    kind: str,
    name: str,
    replicas: int,
    pod: dict[str, Any] | None = None,
    **labels: str,
) -> None:
    selector = {"app": name}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": {**selector, **labels}},
            "spec": pod or {"containers": [{"name": "main", "image": "app:1"}]},
        },
    }
    body = {"metadata": {"name": name, "labels": {**selector, **labels}}, "spec": spec}
    if kind == "statefulset":
        spec["serviceName"] = name
        apps(api).create_namespaced_stateful_set(ns, body)
    else:
        apps(api).create_namespaced_deployment(ns, body)


def state(api: client.ApiClient, ns: str, kind: str, name: str) -> tuple[int, str | None]:
    read = (
        apps(api).read_namespaced_stateful_set
        if kind == "statefulset"
        else apps(api).read_namespaced_deployment
    )
    obj = read(name, ns)
    return obj.spec.replicas, (obj.metadata.annotations or {}).get(ANNOTATION)


def test_scale_down_records_then_scale_up_restores(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    make(kube_api, namespace, "deployment", "web", 3)
    make(kube_api, namespace, "statefulset", "db", 2)
    make(kube_api, namespace, "deployment", "other", 1)
    selection = {"names": ["deployment/web", "statefulset/db"]}

    said = cairn(scale_down, kube_api, namespace, selection)
    assert "deployment/web (3 → 0)" in said and "statefulset/db (2 → 0)" in said
    assert state(kube_api, namespace, "deployment", "web") == (0, "3")
    assert state(kube_api, namespace, "statefulset", "db") == (0, "2")
    assert state(kube_api, namespace, "deployment", "other") == (1, None)
    assert apps(kube_api).read_namespaced_stateful_set("db", namespace).status.replicas == 0

    # Retried: the record of 3 is kept, not overwritten by the 0 it sees now.
    cairn(scale_down, kube_api, namespace, selection)
    assert state(kube_api, namespace, "deployment", "web") == (0, "3")

    said = cairn(scale_up, kube_api, namespace, selection)
    assert "deployment/web (→ 3)" in said and "statefulset/db (→ 2)" in said
    assert state(kube_api, namespace, "deployment", "web") == (3, None)
    assert state(kube_api, namespace, "statefulset", "db") == (2, None)
    # Repeated: nothing left to restore, nothing changed.
    assert cairn(scale_up, kube_api, namespace, selection) == (
        f"no workload to scale up in {namespace}"
    )
    assert state(kube_api, namespace, "deployment", "web") == (3, None)


def test_a_crash_after_the_record_loses_no_count(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    """The first attempt recorded 4 and scaled to zero, then died; whatever runs next
    (a retry of the quiesce, or the cleanup's scale-up) still knows 4."""
    make(kube_api, namespace, "deployment", "web", 4)
    apps(kube_api).patch_namespaced_deployment(
        "web", namespace, {"metadata": {"annotations": {ANNOTATION: "4"}}}
    )
    apps(kube_api).patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 0}})
    selection = {"names": ["deployment/web"]}
    assert "(4 → 0)" in cairn(scale_down, kube_api, namespace, selection)
    cairn(scale_up, kube_api, namespace, selection)
    assert state(kube_api, namespace, "deployment", "web") == (4, None)


def test_selector_picks_deployments_and_statefulsets(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    make(kube_api, namespace, "deployment", "web", 2, tier="shop")
    make(kube_api, namespace, "statefulset", "db", 1, tier="shop")
    make(kube_api, namespace, "deployment", "admin", 1, tier="ops")
    selection = {"selector": "tier=shop"}
    cairn(scale_down, kube_api, namespace, selection)
    assert state(kube_api, namespace, "deployment", "web") == (0, "2")
    assert state(kube_api, namespace, "statefulset", "db") == (0, "1")
    assert state(kube_api, namespace, "deployment", "admin") == (1, None)
    cairn(scale_up, kube_api, namespace, selection)
    assert state(kube_api, namespace, "deployment", "web") == (2, None)
    assert state(kube_api, namespace, "statefulset", "db") == (1, None)


def test_a_workload_scaled_to_zero_by_its_owner_stays_at_zero(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    make(kube_api, namespace, "deployment", "idle", 0)
    selection = {"names": ["deployment/idle"]}
    cairn(scale_down, kube_api, namespace, selection)
    assert state(kube_api, namespace, "deployment", "idle") == (0, "0")
    cairn(scale_up, kube_api, namespace, selection)
    assert state(kube_api, namespace, "deployment", "idle") == (0, None)


def test_a_missing_workload_is_a_clear_error_and_scale_up_skips_it(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    selection = {"names": ["deployment/gone"]}
    with pytest.raises(PlatformError) as missing:
        cairn(scale_down, kube_api, namespace, selection)
    assert str(missing.value) == f"deployment/gone does not exist in namespace {namespace}"
    assert not missing.value.retryable
    assert cairn(scale_up, kube_api, namespace, selection) == (
        f"no workload to scale up in {namespace}"
    )


def writer(claim: str, *, after_term: int) -> dict[str, Any]:
    """A pod that appends to a file of ``claim`` and, told to stop, goes on for a while."""
    script = (
        f"trap 'i=0; while [ $i -lt {after_term} ]; do echo late >> /data/log; sleep 0.2;"
        " i=$((i+1)); done; exit 0' TERM; while true; do echo on >> /data/log; sleep 0.1; done"
    )
    return {
        "containers": [
            {
                "name": "main",
                "image": "app:1",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        "securityContext": {"fsGroup": 1000},  # the claim writable by the image's user
    }


def claim(api: client.ApiClient, ns: str, name: str) -> None:
    core(api).create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Mi"}},
            },
        },
    )


def pods(api: client.ApiClient, ns: str) -> list[str]:
    return sorted(p.metadata.name for p in core(api).list_namespaced_pod(ns).items)


def test_quiesce_waits_until_terminating_pods_are_gone(
    kube: FakeKube, kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    """A Deployment's status stops counting a pod once it is terminating; the pod's process
    still writes until it exits. The quiesce ends only when nothing of it is left."""
    claim(kube_api, namespace, "data")
    make(kube_api, namespace, "deployment", "web", 1, pod=writer("data", after_term=8))
    log = kube.pvc_path(namespace, "data") / "log"
    eventually(lambda: log.exists() or None, "the pod to write")

    cairn(scale_down, kube_api, namespace, {"names": ["deployment/web"]}, ["data"])

    assert pods(kube_api, namespace) == []
    # Everything it wrote while stopping was written before the quiesce said it was quiet.
    assert log.read_text().count("late") == 8


def test_quiesce_names_the_pods_that_do_not_stop(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    """A pod no listed workload owns (a CronJob's, say) still mounts the claim: cairn cannot
    stop it, so it says which one keeps the application from being quiet."""
    claim(kube_api, namespace, "data")
    make(kube_api, namespace, "deployment", "web", 1)
    core(kube_api).create_namespaced_pod(
        namespace, {"metadata": {"name": "report-29"}, "spec": writer("data", after_term=0)}
    )
    core(kube_api).create_namespaced_pod(
        namespace,
        {"metadata": {"name": "unrelated"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
    )
    with pytest.raises(PlatformError) as stuck:
        cairn(scale_down, kube_api, namespace, {"names": ["deployment/web"]}, ["data"], timeout=1)
    assert "still running pod report-29 mounting claim data" in str(stuck.value)
    assert "unrelated" not in str(stuck.value) and "deployment/web" not in str(stuck.value)
    assert not stuck.value.retryable


def test_a_statefulset_stuck_on_unhealthy_pods_is_stopped_by_deleting_them_in_order(
    kube: FakeKube, kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    """OrderedReady: with its pods stuck unready (a volume that cannot mount), the controller
    deletes none (the highest is unhealthy and not the lowest unhealthy one). cairn deletes
    them itself, highest ordinal first, and the quiesce ends."""
    pod = {
        "containers": [
            {"name": "main", "image": "db:1", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}
        ],
        "volumes": [{"name": "d", "nfs": {"server": "192.0.2.99", "path": "/gone"}}],
    }
    make(kube_api, namespace, "statefulset", "db", 3, pod=pod)
    eventually(lambda: pods(kube_api, namespace) == ["db-0", "db-1", "db-2"] or None, "3 pods")
    # The controller alone: scaled to zero, it deletes nothing.
    apps(kube_api).patch_namespaced_stateful_set_scale("db", namespace, {"spec": {"replicas": 0}})
    assert kube.controllers is not None
    kube.controllers.wait_synced()
    listed = core(kube_api).list_namespaced_pod(namespace).items
    assert sorted((p.metadata.name, p.metadata.deletion_timestamp) for p in listed) == [
        ("db-0", None),
        ("db-1", None),
        ("db-2", None),
    ]
    apps(kube_api).patch_namespaced_stateful_set_scale("db", namespace, {"spec": {"replicas": 3}})

    said = cairn(scale_down, kube_api, namespace, {"names": ["statefulset/db"]}, timeout=60)

    assert pods(kube_api, namespace) == []
    # db-0, the lowest unhealthy pod, the controller may delete itself before cairn does.
    assert said.startswith(
        f"scaled down in {namespace}: statefulset/db (3 → 0); deleted by cairn, their"
        " StatefulSet waiting for unhealthy pods: db-2, db-1"
    )


def test_rbac_covers_every_call(cairn: CairnCalls) -> None:
    assert cairn.used, "the tests above ran no cairn call"
    assert uncovered(cairn.used) == set()


def test_the_identity_of_the_pods_that_mount_a_claim(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    """Who a volume's movers run as: the first container mounting the claim (its
    securityContext over the pod's) of the listed workload whose template mounts it, a
    StatefulSet's claims by their template's name; None for a claim nobody mounts."""
    web = {
        "securityContext": {
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 3000,
            "supplementalGroups": [4000],
        },
        "containers": [
            {"name": "proxy", "image": "proxy:1"},
            {
                "name": "main",
                "image": "app:1",
                "securityContext": {"runAsUser": 1500},
                "volumeMounts": [{"name": "d", "mountPath": "/d"}],
            },
        ],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "uploads"}}],
    }
    make(kube_api, namespace, "deployment", "web", 0, pod=web)
    labels = {"app": "db"}
    apps(kube_api).create_namespaced_stateful_set(
        namespace,
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 0,
                "serviceName": "db",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {"runAsUser": 999, "fsGroup": 999},
                        "containers": [
                            {
                                "name": "pg",
                                "image": "postgres:16",
                                "volumeMounts": [{"name": "pgdata", "mountPath": "/var/lib"}],
                            }
                        ],
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "pgdata"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        },
    )
    listed = {"names": ["deployment/web", "statefulset/db"]}
    found = cairn(pod_identity, kube_api, namespace, listed, "uploads")
    assert found == PodIdentity("deployment/web", 1500, 1000, 3000, (4000,))
    found = cairn(pod_identity, kube_api, namespace, listed, "pgdata-db-0")
    assert found == PodIdentity("statefulset/db", 999, None, 999, ())
    assert cairn(pod_identity, kube_api, namespace, listed, "pgdata-db-x") is None
    assert cairn(pod_identity, kube_api, namespace, listed, "other") is None
    assert cairn(pod_identity, kube_api, namespace, {"selector": "app=web"}, "uploads") == (
        PodIdentity("deployment/web", 1500, 1000, 3000, (4000,))
    )
