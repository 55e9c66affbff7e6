"""Connecting to Temporal the same way from the API, the worker and the CLI."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from core.settings import Settings


async def connect(settings: Settings, wait_seconds: float = 5.0) -> Client:
    return await asyncio.wait_for(
        Client.connect(settings.temporal_address, namespace=settings.temporal_namespace),
        timeout=wait_seconds,
    )


class LazyClient:
    """Connects on first use, so the API starts (and reports readiness) while Temporal is down."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        async with self._lock:
            if self._client is None:
                self._client = await connect(self._settings)
            return self._client


async def register_search_attributes(settings: Settings) -> list[str]:
    """Adds the missing Keyword search attributes; returns the names it added."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )

    from core.search_attributes import SEARCH_ATTRIBUTE_KEYS

    client = await connect(settings)
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=settings.temporal_namespace)
    )
    missing = [k.name for k in SEARCH_ATTRIBUTE_KEYS if k.name not in existing.custom_attributes]
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=settings.temporal_namespace,
                search_attributes={
                    name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing
                },
            )
        )
    return missing
