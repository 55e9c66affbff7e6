"""Which moments an application's archive can restore, read from its snapshots' tags alone.

Every WAL shipment names its first and last segment, whether the last one is still a
``.partial``, and the server time up to which every commit is inside it (``until``). A
moment ``t`` is restorable from a base backup when the backup is consistent at or before
``t`` and every segment from the backup's first one up to a shipment reaching past ``t`` is
present: complete, or the ``.partial`` of that shipment itself. A segment missing from the
storage therefore shows as a gap, and a restore into it is refused instead of restoring less.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from adapters.restic import Snapshot
from repository import names

SEGMENT_BYTES = 16 * 1024 * 1024
"""The only WAL segment size this slice archives (PostgreSQL's default); others are refused."""
_PER_LOG = 2**32 // SEGMENT_BYTES
SEGMENT_NAME = re.compile(r"^[0-9A-F]{24}$")
ZERO = timedelta(0)


def segment_number(name: str) -> int:
    """A segment's position in the WAL, whatever its timeline."""
    return int(name[8:16], 16) * _PER_LOG + int(name[16:24], 16)


def segment_name(timeline: int, lsn: int) -> str:
    """The name of the segment holding ``lsn``."""
    number = lsn // SEGMENT_BYTES
    return f"{timeline:08X}{number // _PER_LOG:08X}{number % _PER_LOG:08X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def stamp(moment: datetime) -> str:
    """A moment as a tag value: UTC, microseconds, no comma."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Shipment:
    """One WAL snapshot: segments ``first``..``last``; ``last`` only up to ``until`` if partial."""

    snapshot_id: str
    first: str
    last: str
    partial: bool
    until: datetime

    def complete(self) -> range:
        end = segment_number(self.last) + (0 if self.partial else 1)
        return range(segment_number(self.first), end)


@dataclass(frozen=True)
class BaseBackup:
    snapshot_id: str
    first: str  # the segment recovery starts reading at (at or before its checkpoint)
    consistent_from: datetime
    major: int


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Archive:
    bases: list[BaseBackup]
    shipments: list[Shipment]  # by ``until``


def read_archive(snapshots: Iterable[Snapshot]) -> Archive:
    """The archive snapshots among ``snapshots``; any other snapshot is left out."""
    bases, shipments = [], []
    for snapshot in snapshots:
        tags = names.read_tags(snapshot.tags)
        if tags.get("part") == names.WAL:
            shipments.append(
                Shipment(
                    snapshot.id,
                    tags["wal-first"],
                    tags["wal-last"],
                    tags["wal-partial"] == "yes",
                    read_stamp(tags["until"]),
                )
            )
        elif tags.get("part") == names.BASE_BACKUP:
            bases.append(
                BaseBackup(
                    snapshot.id, tags["wal-first"], read_stamp(tags["from"]), int(tags["major"])
                )
            )
    bases.sort(key=lambda b: b.consistent_from)
    shipments.sort(key=lambda s: s.until)
    return Archive(bases, shipments)


def _reach(archive: Archive, base: BaseBackup) -> list[Shipment]:
    """The shipments a recovery from ``base`` reads, in order, up to the first hole.

    A shipment whose ``until`` is before the backup's consistency still counts when it holds
    a segment from the backup's first one on: the segment the backup ends in is completed
    by the backup's own WAL switch and may be shipped before ``from`` was read, and a
    recovery that left that shipment out would miss it.
    """
    complete: set[int] = set()
    for shipment in archive.shipments:
        complete.update(shipment.complete())
    start = present = segment_number(base.first)  # every segment before ``present`` is there
    reached = []
    for shipment in archive.shipments:
        last = segment_number(shipment.last)
        if last < start:
            continue
        while present < last and present in complete:
            present += 1
        if present < last:
            break
        reached.append(shipment)
    return reached


def spans(archive: Archive) -> list[tuple[BaseBackup, Span]]:
    """What each base backup restores: from its consistency to the last shipment it reaches."""
    found = []
    for base in archive.bases:
        reached = _reach(archive, base)
        if reached and reached[-1].until >= base.consistent_from:
            found.append((base, Span(base.consistent_from, reached[-1].until)))
    return found


class OutsideWindow(ValueError):
    """The moment is not restorable; the message names the window."""


@dataclass(frozen=True)
class Window:
    earliest: datetime | None
    latest: datetime | None
    gaps: list[Span]

    def contains(self, moment: datetime) -> bool:
        if self.earliest is None or self.latest is None:
            return False
        inside = self.earliest <= moment <= self.latest
        return inside and not any(gap.start < moment < gap.end for gap in self.gaps)

    def moment_at(self, fraction: float) -> datetime:
        """The moment ``fraction`` (0 to 1) of the way through the restorable time, the gaps
        left out: a drill's "random" moment (``fraction`` drawn by its caller)."""
        if self.earliest is None or self.latest is None:
            raise OutsideWindow("nothing is restorable yet")
        pieces, start = [], self.earliest
        for gap in self.gaps:
            pieces.append(Span(start, gap.start))
            start = gap.end
        pieces.append(Span(start, self.latest))
        restorable = sum((piece.end - piece.start for piece in pieces), ZERO)
        left = restorable * min(max(fraction, 0.0), 1.0)
        for piece in pieces:
            if left <= piece.end - piece.start:
                return piece.start + left
            left -= piece.end - piece.start
        return self.latest

    def describe(self) -> str:
        if self.earliest is None or self.latest is None:
            return "nothing is restorable yet"
        text = f"from {stamp(self.earliest)} to {stamp(self.latest)}"
        holes = ", ".join(f"{stamp(g.start)} to {stamp(g.end)}" for g in self.gaps)
        return text + (f", except {holes}" if holes else "")


def window(archive: Archive) -> Window:
    """The union of the base backups' spans, with the holes between them."""
    covered = sorted((span for _, span in spans(archive)), key=lambda s: s.start)
    if not covered:
        return Window(None, None, [])
    gaps, end = [], covered[0].end
    for span in covered[1:]:
        if span.start > end:
            gaps.append(Span(end, span.start))
        end = max(end, span.end)
    return Window(covered[0].start, end, gaps)


@dataclass(frozen=True)
class Plan:
    """What a recovery to ``target`` (None: the latest moment) restores."""

    base: BaseBackup
    shipments: list[Shipment]
    target: datetime | None

    @property
    def reaches(self) -> datetime:
        """The moment the recovery ends at: the target, or for the latest moment the last
        shipment's ``until`` (the base backup's ``from`` without one)."""
        if self.target is not None:
            return self.target
        return self.shipments[-1].until if self.shipments else self.base.consistent_from


def plan(archive: Archive, target: datetime | None) -> Plan:
    """The newest base backup whose span holds ``target``, and the shipments to replay."""
    choices = spans(archive)
    if target is None:
        choices.sort(key=lambda c: (c[1].end, c[0].consistent_from))
        if not choices:
            raise OutsideWindow("nothing is restorable yet")
        base = choices[-1][0]
        return Plan(base, _reach(archive, base), None)
    holding = [base for base, span in choices if span.start <= target <= span.end]
    if not holding:
        raise OutsideWindow(
            f"{stamp(target)} is not restorable: the window is {window(archive).describe()}"
        )
    base = max(holding, key=lambda b: b.consistent_from)
    reached = _reach(archive, base)
    needed = next(i for i, s in enumerate(reached) if s.until >= target)
    return Plan(base, reached[: needed + 1], target)


def unneeded(archive: Archive, window_start: datetime, *, archiving: bool) -> list[str]:
    """The snapshots no moment from ``window_start`` on needs: what pruning to the window
    forgets.

    Kept: the newest base backup consistent at or before ``window_start`` (or the oldest, when
    none is), every newer one, and every shipment holding a segment from the kept base
    backups' first one on; so every moment of the window restorable before stays restorable,
    and the window's ``earliest`` becomes that base backup's ``from``. With archiving turned
    off and nothing restorable from ``window_start`` on, everything goes. While archiving is on,
    the newest base backup and what follows it are kept however old (an archiver down longer
    than the window must not lose its last restorable moments).
    """
    everything = [b.snapshot_id for b in archive.bases] + [s.snapshot_id for s in archive.shipments]
    latest = window(archive).latest
    if not archiving and (latest is None or latest < window_start):
        return everything
    if not archive.bases:
        return []  # the first base backup is yet to come: its WAL is being shipped already
    older = [b for b in archive.bases if b.consistent_from <= window_start]
    kept = archive.bases[archive.bases.index(older[-1]) :] if older else archive.bases
    start = min(segment_number(b.first) for b in kept)
    return [b.snapshot_id for b in archive.bases if b not in kept] + [
        s.snapshot_id for s in archive.shipments if segment_number(s.last) < start
    ]
