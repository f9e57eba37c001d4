"""Ranges of stored images, one task each: how they are cut, counted as attempted, and measured.

Work that grows with the site (a reindex, the full sweep after it) is cut into ranges of primary
keys holding at most ``MODERATION_REINDEX_RANGE_SIZE`` rows, recorded as ``WorkRange`` rows and
enqueued one task each, so any number of ``run_worker`` processes on any number of hosts share
it: the task queue in PostgreSQL is the coordinator, nothing here schedules. What a range task
commits (its cursor and counts, with its work) is what a re-run resumes from. ``Progress`` is
what the operator sees: ranges and rows done, the rate and the time left.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.db import models
from django.db.models import Count, F, Max, Min, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from moderation.models import WorkRange

# Primary keys are read in chunks of this many while ranges are cut (a server-side cursor on
# PostgreSQL): 10M stored photos are cut without holding 10M ints in memory at once.
PLAN_CHUNK = 20_000


def split_ranges(pks: Iterable[int], size: int) -> Iterator[tuple[int, int, int]]:
    """``(lo, hi, rows)`` for ascending ``pks``: every pk in exactly one range, ranges in
    order, at most ``size`` pks each (the last may hold fewer), each range from its first pk to
    its last, so the gaps between ranges hold no pk."""
    if size < 1:
        raise ValueError(f"a range holds at least one row, got size={size}")
    lo = hi = None
    rows = 0
    for pk in pks:
        if hi is not None and pk <= hi:
            raise ValueError(f"primary keys must be strictly ascending: {pk} after {hi}")
        if lo is None:
            lo = pk
        hi, rows = pk, rows + 1
        if rows == size:
            yield lo, hi, rows
            lo, rows = None, 0
    if lo is not None:
        yield lo, hi, rows


def plan_ranges(
    queryset: models.QuerySet, *, kind: str, size: int, after: int = 0, **owner
) -> list[WorkRange]:
    """Record the ranges of ``queryset``'s rows past pk ``after`` (``owner``: ``run=`` or
    ``sweep=``); each range's cursor starts just below its first pk."""
    pks = (
        queryset.filter(pk__gt=after)
        .order_by("pk")
        .values_list("pk", flat=True)
        .iterator(chunk_size=PLAN_CHUNK)
    )
    return WorkRange.objects.bulk_create(
        WorkRange(kind=kind, lo=lo, hi=hi, rows=rows, cursor=lo - 1, **owner)
        for lo, hi, rows in split_ranges(pks, size)
    )


def start_attempt(range_id: int) -> WorkRange | None:
    """Count an attempt at an unfinished range, committed at once (the task holds no
    transaction), so a range whose worker died shows that it was tried; None when the range is
    finished or gone: nothing to do."""
    updated = WorkRange.objects.filter(pk=range_id, done=False).update(
        attempts=F("attempts") + 1, started_at=Coalesce(F("started_at"), Value(timezone.now()))
    )
    return WorkRange.objects.filter(pk=range_id).first() if updated else None


def describe_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().rstrip(":")
    return text[:2000]


def record_failure(range_id: int, error: BaseException) -> None:
    """Keep a range task's error on its row (the task then re-raises, so the queue says so)."""
    WorkRange.objects.filter(pk=range_id).update(last_error=describe_error(error))


@dataclass(frozen=True)
class Progress:
    """Where a set of ranges stands: ``rows_done`` counts a finished range as its planned
    rows (rows deleted meanwhile are done too), an open one by what it has processed."""

    ranges_done: int
    ranges_total: int
    rows_done: int
    rows_total: int
    processed: int  # rows actually read, for the rate
    elapsed: timedelta | None  # since the first range started

    @property
    def rate(self) -> float | None:
        """Rows per second since the first range started (None before anything was done)."""
        seconds = self.elapsed.total_seconds() if self.elapsed else 0
        return self.processed / seconds if seconds > 0 and self.processed else None

    @property
    def eta(self) -> timedelta | None:
        rate = self.rate
        if self.ranges_done == self.ranges_total:
            return timedelta(0)
        if rate is None:
            return None
        return timedelta(seconds=round(max(self.rows_total - self.rows_done, 0) / rate))

    def line(self) -> str:
        rate = f"{self.rate:,.0f} rows/s" if self.rate is not None else "rate unknown yet"
        eta = f"ETA {self.eta}" if self.eta is not None else "ETA unknown yet"
        return (
            f"{self.ranges_done}/{self.ranges_total} ranges, "
            f"{self.rows_done:,}/{self.rows_total:,} rows, {rate}, {eta}"
        )


def progress(ranges: models.QuerySet) -> Progress:
    """The progress of ``ranges`` (one phase of one run), in one aggregate query."""
    totals = ranges.aggregate(
        ranges_total=Count("pk"),
        ranges_done=Count("pk", filter=Q(done=True)),
        rows_total=Coalesce(Sum("rows"), 0),
        done_rows=Coalesce(Sum("rows", filter=Q(done=True)), 0),
        open_rows=Coalesce(Sum("processed", filter=Q(done=False)), 0),
        processed=Coalesce(Sum("processed"), 0),
        first=Min("started_at"),
        last=Max("finished_at"),
    )
    first, all_done = totals["first"], totals["ranges_done"] == totals["ranges_total"]
    until = totals["last"] if all_done and totals["last"] else timezone.now()
    return Progress(
        ranges_done=totals["ranges_done"],
        ranges_total=totals["ranges_total"],
        rows_done=min(totals["done_rows"] + totals["open_rows"], totals["rows_total"]),
        rows_total=totals["rows_total"],
        processed=totals["processed"],
        elapsed=until - first if first else None,
    )
