"""Figures of several runs: median with min-max, and the lines the bench ends with."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from temporalio.client import Client


@dataclass
class Figure:
    name: str  # the RESULT key
    label: str  # what a person reads in the table
    values: list[float]
    unit: str = ""
    goal: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def shown(self) -> str:
        digits = 2 if abs(self.median) < 100 else 0
        text = f"{self.median:.{digits}f}{self.unit}"
        if len(self.values) > 1:
            low, high = min(self.values), max(self.values)
            text += f" ({low:.{digits}f}-{high:.{digits}f}, n={len(self.values)})"
        return text


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(f"  {figure.label}: {figure.shown()}", flush=True)
        return figure

    def print(self) -> None:
        width = max(len(f.label) for f in self.figures)
        print("\n" + "=" * 100)
        print(f"{'measure':<{width}}  {'median (min-max, runs)':<36} goal")
        print("-" * 100)
        for f in self.figures:
            print(f"{f.label:<{width}}  {f.shown():<36} {f.goal}")
        for note in self.notes:
            print(f"note: {note}")
        print("=" * 100)
        for f in self.figures:
            print(f"RESULT {f.name}={f.median:.3f}")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def activity_seconds(client: Client, workflow_id: str) -> dict[str, float]:
    """Seconds from scheduling to completion of each activity of a run, from its history.

    Includes the time an activity waited for a worker slot: that is what a user waits too.
    """
    scheduled: dict[int, tuple[str, float]] = {}
    spent: dict[str, float] = {}
    start = None
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        at = event.event_time.ToDatetime().timestamp()
        start = at if start is None else start
        kind = event.WhichOneof("attributes") or ""
        if kind == "activity_task_scheduled_event_attributes":
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = (name, at)
        elif kind in (
            "activity_task_completed_event_attributes",
            "activity_task_failed_event_attributes",
        ):
            attrs = getattr(event, kind)
            name, began = scheduled[attrs.scheduled_event_id]
            spent[name] = spent.get(name, 0.0) + at - began
        elif kind.startswith("workflow_execution_completed"):
            spent["(whole workflow)"] = at - (start or at)
    return spent
