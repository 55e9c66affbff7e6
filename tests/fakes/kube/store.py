"""The object store: one global resourceVersion counter, an event history for watches.

Like etcd behind the API server, every write gets the next revision, which becomes the
object's ``metadata.resourceVersion``; a list reports the revision it was read at; a watch
replays the history after a revision (410 ``Expired`` once ``compact`` dropped it).
"""

from __future__ import annotations

import bisect
import builtins
import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.fakes.kube.errors import gone
from tests.fakes.kube.resources import ResourceType

ObjectKey = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True)
class WatchEvent:
    revision: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: ResourceType
    object: dict[str, Any]
    old: dict[str, Any] | None


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.revision = 1
        self._objects: dict[tuple[str, str], dict[ObjectKey, dict[str, Any]]] = {}
        self._history: list[WatchEvent] = []
        self._compacted = 0  # events at or below this revision are gone
        self.closed = False

    # reads (copies, so callers never alias stored objects)

    def get(self, resource: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self._objects.get(resource.key, {}).get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: ResourceType, namespace: str | None) -> list[dict[str, Any]]:
        """Objects in etcd key order (namespace, name); ``namespace=None`` is all of them."""
        with self.lock:
            items = self._objects.get(resource.key, {})
            return [
                copy.deepcopy(obj)
                for key, obj in sorted(items.items())
                if namespace is None or key[0] == namespace
            ]

    # writes: each one is a new revision and an event

    def _record(
        self, kind: str, resource: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self._history.append(
            WatchEvent(self.revision, kind, resource, copy.deepcopy(obj), copy.deepcopy(old))
        )
        self.changed.notify_all()
        return copy.deepcopy(obj)

    def add(self, resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            self._objects.setdefault(resource.key, {})[key] = obj
            return self._record("ADDED", resource, obj, None)

    def replace(self, resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            bucket = self._objects.setdefault(resource.key, {})
            old = bucket.get(key)
            bucket[key] = obj
            return self._record("MODIFIED", resource, obj, old)

    def remove(self, resource: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self._objects.get(resource.key, {}).pop((namespace, name), None)
            if obj is None:
                return None
            return self._record("DELETED", resource, obj, copy.deepcopy(obj))

    # watches

    def compact(self) -> None:
        """Forgets the history so far: watches from an older revision get 410 Expired."""
        with self.lock:
            self._compacted = self.revision
            self._history.clear()

    def events_after(self, revision: int) -> builtins.list[WatchEvent]:
        with self.lock:
            if revision < self._compacted:
                raise gone(f"too old resource version: {revision} ({self._compacted + 1})")
            # The history is in revision order: find the first newer event by bisection.
            first = bisect.bisect_right(self._history, revision, key=lambda e: e.revision)
            return self._history[first:]

    def follow(self, revision: int, deadline: float, stop: threading.Event) -> Iterator[WatchEvent]:
        """Events after ``revision`` as they happen, until ``deadline`` (monotonic) or ``stop``."""
        while not stop.is_set() and not self.closed:
            with self.lock:
                events = self.events_after(revision)
                if not events:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self.changed.wait(min(remaining, 0.5))
                    continue
            for event in events:
                revision = event.revision
                yield event

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.changed.notify_all()
