"""The alert rules and the dashboard (deploy/) against promtool and cairn's real endpoints.

``promtool`` (Debian's prometheus package, scripts/system-deps.sh) checks and unit-tests the
rules; then the API's /metrics and the worker's own endpoint are scraped after a real backup
and a real drill, and every metric and label a rule or a dashboard panel uses must be in the
scrape, so a renamed metric or label fails here instead of silencing an alert.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from activities.archive import spool_of
from contracts.task_queues import CONTROL_TASK_QUEUE
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.conftest import free_port
from tests.integration.test_offsite import add_target
from tests.integration.test_pitr_api import on_instance, policy, register, until_closed
from tests.support import pg_instance
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.backups import make_app, run_backup
from tests.support.offsite_servers import OffsiteSite
from worker.metrics_endpoint import serve_metrics
from workflows.storage import RefreshStorageUsageWorkflow

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "cairn.json"
JOBS = {"cairn-api", "cairn-worker"}
# labels Prometheus adds to every scraped series
SCRAPE_LABELS = {"job", "instance"}
METRIC = re.compile(r"\b(cairn_[a-z0-9_]+|up)\b(?!\s*\()")
MATCHERS = re.compile(r"\b(cairn_[a-z0-9_]+|up)\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
MATCHING = re.compile(r"\b(?:on|ignoring)\s*\(([^)]*)\)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
INCLUDED = re.compile(r"\bgroup_(?:left|right)\s*\(([^)]*)\)")
TEMPLATE_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: run scripts/system-deps.sh (Debian's prometheus package)"
    return found


def run_promtool(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    run_promtool("check", "rules", "cairn-rules.yml", cwd=PROMETHEUS)
    run_promtool("test", "rules", "cairn-rules.test.yml", cwd=PROMETHEUS)
    # the example configuration loads the rules and names the jobs the rules expect (its
    # token file is the operator's: a stand-in here)
    token = tmp_path / "token"
    token.write_text("t")
    config = (PROMETHEUS / "prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/cairn-metrics-token", str(token))
    )
    shutil.copy(PROMETHEUS / "cairn-rules.yml", tmp_path)
    run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    jobs = {job["job_name"] for job in yaml.safe_load(config)["scrape_configs"]}
    assert jobs == JOBS


@dataclass
class Exported:
    """Label names of every series in the scrapes, by sample and by family name."""

    labels: dict[str, set[str]] = field(default_factory=dict)

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            self.labels.setdefault(family.name, set())
            for sample in family.samples:
                self.labels.setdefault(sample.name, set()).update(sample.labels)
                self.labels[family.name].update(sample.labels)

    def of(self, metric: str) -> set[str]:
        assert metric in self.labels, f"{metric} is not exported by cairn's API or worker"
        assert self.labels[metric] or metric.startswith("cairn_temporal"), (
            f"the scrape has no series of {metric}: the test must make one to check its labels"
        )
        return self.labels[metric] | SCRAPE_LABELS


@pytest.fixture(scope="module")
async def archiving(
    api: ApiClient, world: World, settings: Settings, temporal_client: Client
) -> AsyncIterator[None]:
    """An application with continuous archiving on a server of the test's own, so that the
    in-process worker has the archiver's series; turned off at the end."""
    with pg_instance.running() as server:
        with server.connect("postgres") as conn:
            conn.execute("CREATE DATABASE shop")
        app = await register(api, world, on_instance(server))
        owner = world.auth("owner")
        body = policy(app, continuous_archiving=True)
        await expect(await api.post(app.policy, json=body, headers=owner), 201)
        deadline = time.monotonic() + 120
        sample = "cairn_archiver_last_archived_timestamp_seconds"
        while REGISTRY.get_sample_value(sample, {"application_id": app.id}) is None:
            assert time.monotonic() < deadline, "the archiver never shipped"
            await asyncio.sleep(0.5)
        assert spool_of(settings, app.id).is_dir()
        yield
        body = policy(app, continuous_archiving=False)
        await expect(await api.post(app.policy, json=body, headers=owner), 200)
        await until_closed(temporal_client, app)
    # archiving off: the worker no longer reports it (no alert on an archiver meant to stop)
    assert REGISTRY.get_sample_value(sample, {"application_id": app.id}) is None
    assert not spool_of(settings, app.id).exists()  # its WAL belonged to the dropped slot


@pytest.fixture(scope="module")
async def exported(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path_factory: Any,
    archiving: None,
) -> AsyncIterator[Exported]:
    """Both endpoints scraped after a backup and a drill of an application with both policies
    (and an offsite target named by its backup policy, for the offsite series)."""
    app = await make_app(api, world, database_server, tmp_path_factory.mktemp("alerts"))
    owner = world.auth("owner")
    assert (await run_backup(api, world, app))["status"] == "succeeded"
    drills = f"/api/v1/applications/{app.id}/drills"
    policy = {"schedule": "0 4 * * 0"}
    await expect(await api.put(f"{drills[:-1]}-policy", json=policy, headers=owner), 201)
    drill = await expect(await api.post(drills, headers=owner), 202)
    await wait_for(
        api,
        f"{drills}/{drill['id']}",
        owner,
        lambda d: d["status"] in ("succeeded", "failed", "cancelled"),
        seconds=120,
    )
    site = OffsiteSite.started(tmp_path_factory.mktemp("alerts-offsite"))
    try:
        target_id = await add_target(api, world, app.workspace, site)
    finally:
        site.stop()  # no backup follows: no copy is started
    policy = {"storage_id": app.storage, "schedule": "0 3 * * *", "offsite_target_id": target_id}
    await expect(await api.post(app.policy, json=policy, headers=owner), 200)
    # one usage refresh, as its schedule runs it, reads the storages' file systems
    temporal: Client = await api.app.state.temporal.get()  # type: ignore[attr-defined]
    await temporal.execute_workflow(
        RefreshStorageUsageWorkflow.run,
        id=f"test-alerts-usage-{secrets.token_hex(4)}",
        task_queue=CONTROL_TASK_QUEUE,
    )
    found = Exported()
    found.add((await api.get("/metrics", headers=world.auth("platform_admin"))).text)
    token = secrets.token_urlsafe(16)
    port = free_port()
    server = serve_metrics("127.0.0.1", port, token)
    try:
        async with httpx.AsyncClient() as client:
            scraped = await client.get(
                f"http://127.0.0.1:{port}/", headers={"Authorization": f"Bearer {token}"}
            )
        assert scraped.status_code == 200, scraped.text
        found.add(scraped.text)
    finally:
        server.shutdown()
        server.server_close()
    yield found


def names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def check_expression(expr: str, exported: Exported, used_in_text: Iterable[str] = ()) -> None:
    """Every metric of ``expr`` exported; the labels two sides match ``on`` on each of its
    metrics, grouping, included and templated labels on one of them, matchers' labels on the
    metric they match."""
    metrics = set(METRIC.findall(expr))
    assert metrics, f"no metric in {expr!r}"
    ours = {m: exported.of(m) for m in metrics if m != "up"}
    for metric, body in MATCHERS.findall(expr):
        for label in MATCHER_LABEL.findall(body):
            if metric == "up":
                assert label == "job" and any(job in body for job in JOBS), expr
            else:
                assert label in ours[metric], f"{metric} has no label {label!r} ({expr!r})"
    for label in (n for group in MATCHING.findall(expr) for n in names(group)):
        for metric, labels in ours.items():
            assert label in labels, f"{metric} has no label {label!r} to match on ({expr!r})"
    everywhere = set().union(*ours.values()) if ours else set(SCRAPE_LABELS)
    grouped = [n for group in GROUPING.findall(expr) for n in names(group)]
    included = [n for group in INCLUDED.findall(expr) for n in names(group)]
    for label in [*grouped, *included, *used_in_text]:
        assert label in everywhere, f"no metric of {expr!r} has the label {label!r}"


def test_every_metric_and_label_the_rules_use_is_exported(exported: Exported) -> None:
    rules = yaml.safe_load((PROMETHEUS / "cairn-rules.yml").read_text())
    checked = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            text = " ".join(rule.get("annotations", {}).values())
            check_expression(rule["expr"], exported, TEMPLATE_LABEL.findall(text))
            checked += 1
    assert checked >= 10


def panels(dashboard: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_every_dashboard_query_uses_exported_metrics(exported: Exported) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    queries += [
        v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        for v in dashboard["templating"]["list"]
        if v.get("type") == "query"
    ]
    assert len(queries) >= 8
    for query in queries:
        check_expression(query.replace("label_values(", "("), exported)


def test_a_renamed_metric_or_label_fails_the_check(exported: Exported) -> None:
    """The check itself: what a rename would look like is refused."""
    check_expression('cairn_backup_overdue{workspace_id="w"} == 1', exported)
    for renamed in (
        "cairn_backups_overdue == 1",
        'cairn_backup_overdue{app_id="a"} == 1',
        "sum by (tenant) (cairn_storage_used_bytes)",
        "cairn_applications_overdue * on (workspace) cairn_workspace_quota_bytes",
        "cairn_backup_overdue * on (application_id) group_left (app) cairn_application_info",
    ):
        with pytest.raises(AssertionError):
            check_expression(renamed, exported)
