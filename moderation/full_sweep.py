"""The full sweep after a reindex, in ranges: every stored image against the whole banned set.

A reindex can change both sides of every comparison (stored photos' fingerprints and flags'
variants), so it ends with a sweep of every stored image against the whole banned set. That is
one pass over the stored images, cut into ranges (``work_ranges``) so that any number of
workers share it; each range is swept in batches (``sweeping.sweep_stored_range``, the screening
every sweep uses), each batch's cursor and counts committed after its takedowns, so a range
that runs again resumes after its last committed batch and repeats at most the batch in flight
(harmlessly: a takedown re-reads its row, a pending near miss is not queued twice).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db import transaction
from django.db.models import F, Max, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from moderation import registry
from moderation.conf import moderation_settings
from moderation.models import ReindexRun, Sweep, WorkRange
from moderation.sweeping import SweepResult, sweep_stored_range
from moderation.work_ranges import describe_error, plan_ranges


def plan_full_sweep(run: ReindexRun) -> Sweep:
    """The run's full sweep, queued, with its ranges over every stored image with a hash."""
    sweep = Sweep.objects.create(full=True, run=run)
    size = moderation_settings.REINDEX_RANGE_SIZE
    for target in registry.targets():
        plan_ranges(target.with_hashes(), kind=target.key, size=size, sweep=sweep)
    return sweep


def mark_running(sweep_id: int) -> None:
    """A range of the sweep started: the sweep is running (again, after a failed range)."""
    Sweep.objects.filter(pk=sweep_id).exclude(state=Sweep.State.DONE).update(
        state=Sweep.State.RUNNING, started_at=Coalesce(F("started_at"), Value(timezone.now()))
    )


def mark_failed(sweep_id: int, error: BaseException) -> None:
    """A range of the sweep raised: shown failed, with the error, until a range runs again."""
    Sweep.objects.filter(pk=sweep_id).exclude(state=Sweep.State.DONE).update(
        state=Sweep.State.FAILED, last_error=describe_error(error)
    )


def work_sweep_range(work: WorkRange, *, batch_size: int) -> Iterator[SweepResult]:
    """Sweep the range from its committed cursor, one batch at a time; each batch's cursor and
    counts are committed before it is yielded. Stops when nothing is left in the range (the
    caller then finishes it) or when another task finished it."""
    target = registry.target_by_key(work.kind)
    cursor = work.cursor
    while True:
        result, last = sweep_stored_range(target, after=cursor, upto=work.hi, limit=batch_size)
        if last is None:
            return
        with transaction.atomic():
            locked = WorkRange.objects.select_for_update().get(pk=work.pk)
            if locked.done:
                return
            if locked.cursor != cursor:
                # A second task on this range committed this batch first: go on after it.
                cursor = locked.cursor
                continue
            WorkRange.objects.filter(pk=work.pk).update(
                cursor=last,
                processed=F("processed") + result.checked,
                taken_down=F("taken_down") + len(result.taken_down),
                queued=F("queued") + len(result.queued),
            )
        cursor = last
        yield result


def close_full_sweep(sweep: Sweep) -> Sweep:
    """Sum the ranges into the sweep and mark it done (the caller holds the run's lock)."""
    totals = sweep.ranges.aggregate(
        checked=Coalesce(Sum("processed"), 0),
        taken_down=Coalesce(Sum("taken_down"), 0),
        queued=Coalesce(Sum("queued"), 0),
        attempts=Coalesce(Max("attempts"), 0),
    )
    for name, value in totals.items():
        setattr(sweep, name, value)
    sweep.state = Sweep.State.DONE
    sweep.started_at = sweep.started_at or timezone.now()
    sweep.finished_at = timezone.now()
    sweep.save()
    return sweep
