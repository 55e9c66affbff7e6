"""Small applications: one backup's latency, many at once, and API reads under load.

A tiny application is 5,000 rows in one table and 1 MB of files in one volume.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from bench.database import Databases
from bench.figures import Figure, Report, activity_seconds, percentile
from bench.stack import Stack

# Seconds of load before the measured pass; its p99 is reported as the cold figure.
WARM_UP_SECONDS = 3.0


def _files(folder: Path, total: int = 1024 * 1024, count: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"file-{i:02d}.bin").write_bytes(os.urandom(total // count))
    return folder


async def latency(stack: Stack, dbs: Databases, backups: int, report: Report) -> str:
    """``backups`` backups of one tiny app in a row; returns the app (it then has that many)."""
    name = dbs.tiny("tiny")
    app = await stack.new_app("tiny", dbs.url(name), _files(stack.volume_root / "tiny"))
    times = []
    steps: dict[str, list[float]] = defaultdict(list)
    for _ in range(backups):
        elapsed, done = await stack.backup(app)
        times.append(elapsed)
        await stack.workflow_closed(done["workflow_id"])  # the next one would be refused (409)
        for step, seconds in (await activity_seconds(stack.temporal, done["workflow_id"])).items():
            steps[step].append(seconds)
    report.add(
        Figure(
            "tiny_backup_p50_s",
            f"tiny app: POST -> succeeded, {backups} in a row, p50",
            times,
            " s",
            "p50 <= 1 s",
        )
    )
    report.add(Figure("tiny_backup_max_s", "tiny app: POST -> succeeded, max", [max(times)], " s"))
    print("  where a tiny backup's seconds go (activity scheduled -> completed):")
    for step, values in sorted(steps.items(), key=lambda kv: -max(kv[1])):
        print(f"    {step:<28} {Figure(step, step, values).shown()} s")
    return app


async def at_once(stack: Stack, dbs: Databases, count: int, report: Report) -> None:
    """``count`` tiny apps (one backup each may run at a time) triggered together."""
    template = dbs.tiny(f"template{count}")
    source = _files(stack.volume_root / f"template-{count}")
    apps = []
    for i in range(count):
        name = dbs.create(dbs.name(f"many{count}_{i}"), template=template)
        folder = stack.volume_root / f"many-{count}-{i}"
        shutil.copytree(source, folder)
        apps.append(await stack.new_app(f"many-{count}-{i}", dbs.url(name), folder))
    start = time.perf_counter()
    ids = await asyncio.gather(*(stack.start_backup(app) for app in apps))
    done = await asyncio.gather(
        *(
            stack.until_final(f"/api/v1/applications/{a}/backups/{b}", poll=0.5)
            for a, b in zip(apps, ids, strict=True)
        )
    )
    elapsed = time.perf_counter() - start
    failed = [d["error_message"] for d in done if d["status"] != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} of {count} backups failed: {failed[0]}")
    report.add(
        Figure(
            f"backups_{count}_at_once_s",
            f"{count} tiny backups at once, last done",
            [elapsed],
            " s",
            "50 at once <= 30 s",
        )
    )
    for d in done:
        await stack.workflow_closed(d["workflow_id"])


async def api_reads(stack: Stack, app: str, rate: float, seconds: float, report: Report) -> None:
    """Open-loop load: ``rate`` requests a second for ``seconds``, half the list, half a
    backup's detail, at most 64 in flight (the client's connections).

    A first pass of :data:`WARM_UP_SECONDS` at the same rate warms the API processes (their
    database connections, a closed run's timeline read once from Temporal); its p99 is
    printed as the cold figure, and the measured pass follows.
    """
    path = f"/api/v1/applications/{app}/backups"
    listed = (await stack.api.get(path, headers=stack.owner)).json()["items"]
    for kind, url in (("list", path), ("detail", f"{path}/{listed[0]['id']}")):
        alone = []  # one request at a time: what a read costs without queueing
        for _ in range(20):
            start = time.perf_counter()
            (await stack.api.get(url, headers=stack.owner)).raise_for_status()
            alone.append((time.perf_counter() - start) * 1000)
        report.add(
            Figure(f"api_{kind}_alone_ms", f"API {kind}, one at a time: median", alone, " ms")
        )
    cold, _, _ = await _offer(stack, path, listed, rate, WARM_UP_SECONDS)
    report.add(
        Figure(
            "api_cold_p99_ms",
            f"API reads, first {WARM_UP_SECONDS:.0f} s of load (cold processes): p99",
            [percentile(cold["list"] + cold["detail"], 99)],
            " ms",
        )
    )
    latencies, failed, achieved = await _offer(stack, path, listed, rate, seconds)
    report.notes.append(
        f"API reads: {len(listed)} backups in the list; {int(rate * seconds)} requests offered"
        f" at {rate:.0f} req/s for {seconds:.0f} s (after {WARM_UP_SECONDS:.0f} s of warm-up)"
        f" from one asyncio/httpx client (64 in flight) on the same machine; {failed} failed"
        f" or unanswered within {seconds:.0f} s"
    )
    report.add(
        Figure("api_reads_per_s", "API reads: answered req/s", [achieved], "", f">= {rate:.0f}")
    )
    for kind in ("list", "detail"):
        values = latencies[kind]
        report.add(
            Figure(f"api_{kind}_p50_ms", f"API {kind}: p50", [percentile(values, 50)], " ms")
        )
        report.add(
            Figure(
                f"api_{kind}_p99_ms",
                f"API {kind}: p99",
                [percentile(values, 99)],
                " ms",
                "p99 <= 50 ms at 200 req/s",
            )
        )


async def _offer(
    stack: Stack, path: str, listed: list[dict[str, Any]], rate: float, seconds: float
) -> tuple[dict[str, list[float]], int, float]:
    """Latencies by kind, requests failed, and requests answered a second.

    Latency counts from when a request was due, so waiting behind slow answers is included
    (no coordinated omission). A request not answered within ``seconds`` of its due time
    counts as failed, so an API slower than the offered rate shows as a low answered rate.
    """
    latencies: dict[str, list[float]] = {"list": [], "detail": []}
    failed = 0
    slots = asyncio.Semaphore(64)
    began = time.perf_counter()
    deadline = began + 2 * seconds

    async def one(kind: str, due: float) -> None:
        nonlocal failed
        url = path if kind == "list" else f"{path}/{random.choice(listed)['id']}"
        async with slots:
            left = min(due + seconds, deadline) - time.perf_counter()
            if left <= 0:
                failed += 1
                return
            try:
                response = await asyncio.wait_for(stack.api.get(url, headers=stack.owner), left)
            except (httpx.TransportError, TimeoutError):
                failed += 1
                return
        if response.status_code != 200:
            failed += 1
            return
        latencies[kind].append((time.perf_counter() - due) * 1000)

    tasks = []
    for i in range(int(rate * seconds)):
        due = began + i / rate
        if due > time.perf_counter():
            await asyncio.sleep(due - time.perf_counter())
        tasks.append(asyncio.create_task(one("list" if i % 2 == 0 else "detail", due)))
    await asyncio.gather(*tasks)
    answered = len(latencies["list"]) + len(latencies["detail"])
    return latencies, failed, answered / (time.perf_counter() - began)
