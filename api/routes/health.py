"""Liveness and readiness; readiness names the dependency that is down."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from api.problems import problem_response
from db.migrate import head_revision

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check_database(request: Request) -> str | None:
    try:
        async with request.app.state.engine.connect() as conn:
            version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception as exc:
        return f"cannot query the database ({type(exc).__name__})"
    head = head_revision()
    if version != head:
        return f"schema is at revision {version}, expected {head}: run 'cairn migrate'"
    return None


async def _check_temporal(request: Request) -> str | None:
    namespace = request.app.state.settings.temporal_namespace
    try:
        client = await request.app.state.temporal.get()
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=CHECK_TIMEOUT)
        )
    except Exception as exc:
        return f"namespace {namespace!r} not reachable ({type(exc).__name__})"
    return None


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> JSONResponse | dict[str, Any]:
    database, temporal = await asyncio.gather(
        asyncio.wait_for(_check_database(request), CHECK_TIMEOUT * 2),
        asyncio.wait_for(_check_temporal(request), CHECK_TIMEOUT * 2),
        return_exceptions=True,
    )
    failures = {
        name: (result if isinstance(result, str) else "timed out")
        for name, result in (("database", database), ("temporal", temporal))
        if result is not None
    }
    if failures:
        detail = "; ".join(f"{name}: {why}" for name, why in failures.items())
        return problem_response(
            request,
            503,
            "not-ready",
            "Not ready",
            detail,
            failing=sorted(failures),
            checks=failures,
        )
    return {"status": "ready", "checks": {"database": "ok", "temporal": "ok"}}
