"""Reindex: every stored image re-fingerprinted with the current pipeline, then a full sweep,
both in ranges that any number of workers take.

Run after the fingerprint pipeline changes (``hashing.PIPELINE_VERSION``), after restoring media
from a backup, or whenever stored fingerprints may not match the stored files. A run cuts the
kept originals of flags and every registered kind of stored image into ranges of primary keys
(``work_ranges``, at most ``MODERATION_REINDEX_RANGE_SIZE`` rows each) and enqueues one task per
range: the task queue in PostgreSQL is the coordinator, so any number of ``run_worker`` processes
on any number of hosts share the work. A range is re-fingerprinted in batches
(``refingerprint``), each committed together with the range's cursor and counts, so a range
task that runs again (its worker died, or it was enqueued twice) resumes after the last
committed batch and never repeats committed work; a finished range is a no-op.

When the last range commits, the run moves on exactly once (under the run's row lock): to its
full sweep, also in ranges (``full_sweep``), and when the sweep's last range commits the run is
closed. ``manage.py reindex`` drives the same ranges in its own process (the foreground),
``manage.py reindex --background`` enqueues them.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db import transaction
from django.db.models import F, Sum
from django.db.models.functions import Coalesce
from django.tasks import task
from django.utils import timezone

from moderation import full_sweep
from moderation.background import enqueue_on_commit
from moderation.conf import moderation_settings
from moderation.hashing import PIPELINE_VERSION
from moderation.models import ReindexRun, Sweep, WorkRange
from moderation.refingerprint import (
    ORIGINALS_KEY,
    BatchResult,
    read_batch,
    reindex_keys,
    stored_rows,
    write_batch,
)
from moderation.sweeping import SweepResult
from moderation.work_ranges import Progress, plan_ranges, progress, record_failure, start_attempt

__all__ = ["ORIGINALS_KEY", "BatchResult", "ReindexBatches", "reindex_keys"]

COUNTS = ("processed", "changed", "missing", "unreadable")


# --- runs ------------------------------------------------------------------------------------


def reindex_open_run(
    *, restart: bool = False, sweep: bool = True, batch_size: int = 200
) -> tuple[ReindexRun, bool]:
    """The unfinished run to resume, or a new one with its ranges (``restart`` abandons an
    unfinished run); and whether it is new. Running it twice while a run is open gives the
    same run and no new ranges."""
    with transaction.atomic():
        unfinished = (
            ReindexRun.objects.select_for_update()
            .filter(finished_at__isnull=True, pipeline_version=PIPELINE_VERSION)
            .first()
        )
        if unfinished and not restart:
            if unfinished.phase == ReindexRun.Phase.REINDEXING and not unfinished.ranges.exists():
                # A run from before ranges: what its cursors reached is done.
                _plan(unfinished, after=unfinished.cursors)
            if unfinished.phase == ReindexRun.Phase.REINDEXING and unfinished.sweep_after > sweep:
                # --no-sweep on resuming turns the sweep off; without it the run keeps its own.
                unfinished.sweep_after = False
                unfinished.save(update_fields=["sweep_after"])
            return unfinished, False
        if unfinished:
            unfinished.finished_at = timezone.now()
            unfinished.phase = ReindexRun.Phase.DONE
            unfinished.counts = {**unfinished.counts, "abandoned": True}
            unfinished.save(update_fields=["finished_at", "phase", "counts"])
        run = ReindexRun.objects.create(
            pipeline_version=PIPELINE_VERSION, sweep_after=sweep, batch_size=batch_size
        )
        _plan(run, after={})
    return run, True


def _plan(run: ReindexRun, *, after: dict[str, int]) -> None:
    size = moderation_settings.REINDEX_RANGE_SIZE
    for key in reindex_keys():
        plan_ranges(stored_rows(key), kind=key, size=size, after=after.get(key, 0), run=run)


def current_run() -> ReindexRun | None:
    """The open run, else the latest one (None before the first reindex)."""
    return (
        ReindexRun.objects.filter(finished_at__isnull=True).order_by("-started_at").first()
        or ReindexRun.objects.order_by("-started_at").first()
    )


def run_sweep(run: ReindexRun) -> Sweep | None:
    return run.sweeps.filter(full=True).order_by("-pk").first()


def open_ranges(run: ReindexRun) -> list[WorkRange]:
    """The unfinished ranges of the run's current phase, in order."""
    if run.phase == ReindexRun.Phase.REINDEXING:
        return list(run.ranges.filter(done=False).order_by("pk"))
    sweep = run_sweep(run)
    if run.phase == ReindexRun.Phase.SWEEPING and sweep is not None:
        return list(sweep.ranges.filter(done=False).order_by("pk"))
    return []


def enqueue_ranges(run: ReindexRun) -> int:
    """Enqueue a task for each unfinished range of the run's current phase, on commit (a range
    already queued or running gets a second task: harmless, see ``work_reindex_range``)."""
    work = open_ranges(run)
    for item in work:
        _enqueue_range(run, item)
    return len(work)


def _enqueue_range(run: ReindexRun, item: WorkRange) -> None:
    task_ = sweep_range_task if item.sweep_id else reindex_range_task
    enqueue_on_commit(task_, item.pk, batch_size=run.batch_size)


def totals(run: ReindexRun) -> dict[str, int]:
    """The run's re-fingerprinting counts (a run resumed from before ranges adds the counts its
    cursors committed)."""
    sums = run.ranges.aggregate(**{name: Coalesce(Sum(name), 0) for name in COUNTS})
    if run.phase != ReindexRun.Phase.REINDEXING:
        return {name: run.counts.get(name, 0) for name in COUNTS}
    return {name: run.counts.get(name, 0) + sums[name] for name in COUNTS}


def reindex_progress(run: ReindexRun) -> Progress:
    return progress(run.ranges.all())


def sweep_progress(run: ReindexRun) -> Progress | None:
    sweep = run_sweep(run)
    return progress(sweep.ranges.all()) if sweep is not None else None


# --- one range -------------------------------------------------------------------------------


def work_reindex_range(work: WorkRange, *, batch_size: int) -> Iterator[BatchResult]:
    """Re-fingerprint the range from its committed cursor, one batch at a time; each batch is
    committed with the range's cursor and counts before it is yielded.

    The files are read outside the transaction; the commit locks the range's row and goes
    ahead only if the cursor is still where the batch started. A second task on the same range
    (enqueued twice, or a worker presumed dead that was not) finds the cursor moved, drops its
    batch and goes on after it: committed work is never repeated. Stops when nothing is left in
    the range (the caller then finishes it) or when another task finished it."""
    cursor = work.cursor
    while True:
        batch = read_batch(work.kind, after=cursor, upto=work.hi, batch_size=batch_size)
        if batch.result.done:
            return
        result = batch.result
        with transaction.atomic():
            locked = WorkRange.objects.select_for_update().get(pk=work.pk)
            if locked.done:
                return
            if locked.cursor != cursor:
                cursor = locked.cursor
                continue
            write_batch(batch)
            WorkRange.objects.filter(pk=work.pk).update(
                cursor=result.last_pk,
                processed=F("processed") + result.processed,
                changed=F("changed") + result.changed,
                missing=F("missing") + len(result.missing),
                unreadable=F("unreadable") + len(result.unreadable),
            )
        cursor = result.last_pk
        yield result


def finish_range(work: WorkRange, *, enqueue: bool) -> None:
    """Mark a range done and move its run on if it was the last of its phase.

    Under the run's row lock, so of two workers finishing the last two ranges together exactly
    one sees every range done: it plans the full sweep (``enqueue``: and enqueues its ranges on
    commit; the foreground command sweeps them itself), or closes the run after the sweep."""
    run_id = work.run_id if work.run_id else Sweep.objects.get(pk=work.sweep_id).run_id
    with transaction.atomic():
        run = ReindexRun.objects.select_for_update().get(pk=run_id)
        WorkRange.objects.filter(pk=work.pk, done=False).update(
            done=True, finished_at=timezone.now(), last_error=""
        )
        advance(run, enqueue=enqueue)


def advance(run: ReindexRun, *, enqueue: bool) -> None:
    """Move a run whose phase has no range left on (call with the run's row locked)."""
    if run.phase == ReindexRun.Phase.REINDEXING:
        if run.ranges.filter(done=False).exists():
            return
        run.counts = {**run.counts, **totals(run)}
        run.phase = ReindexRun.Phase.SWEEPING if run.sweep_after else ReindexRun.Phase.DONE
        run.save(update_fields=["counts", "phase"])
        if run.sweep_after:
            sweep = full_sweep.plan_full_sweep(run)
            if enqueue:
                for item in sweep.ranges.order_by("pk"):
                    _enqueue_range(run, item)
    if run.phase == ReindexRun.Phase.SWEEPING:
        sweep = run_sweep(run)
        if sweep.ranges.filter(done=False).exists():
            return
        full_sweep.close_full_sweep(sweep)
        run.phase = ReindexRun.Phase.DONE
        run.counts = {
            **run.counts,
            "swept": sweep.checked,
            "taken_down": sweep.taken_down,
            "queued": sweep.queued,
        }
    if run.phase == ReindexRun.Phase.DONE and run.finished_at is None:
        run.finished_at = timezone.now()
        run.save(update_fields=["phase", "counts", "finished_at"])


def start(run: ReindexRun, *, enqueue: bool) -> None:
    """Move a run with nothing to do on at once (no stored images at all, say)."""
    with transaction.atomic():
        advance(ReindexRun.objects.select_for_update().get(pk=run.pk), enqueue=enqueue)


# --- tasks -----------------------------------------------------------------------------------


@task
def reindex_range_task(range_id: int, batch_size: int = 200) -> dict:
    """Re-fingerprint one range of a reindex run (a finished range: nothing to do)."""
    work = start_attempt(range_id)
    if work is None:
        return {"range": range_id, "done": True, "processed": 0, "note": "range finished"}
    if ReindexRun.objects.filter(pk=work.run_id, finished_at__isnull=False).exists():
        # Its run was abandoned (reindex --restart): the new run has its own ranges.
        return {"range": range_id, "done": False, "processed": 0, "note": "run closed"}
    processed = changed = 0
    try:
        for result in work_reindex_range(work, batch_size=batch_size):
            processed += result.processed
            changed += result.changed
        finish_range(work, enqueue=True)
    except BaseException as e:
        record_failure(range_id, e)
        raise
    return {"range": range_id, "done": True, "processed": processed, "changed": changed}


@task
def sweep_range_task(range_id: int, batch_size: int = 200) -> dict:
    """Sweep one range of a run's full sweep (a finished range: nothing to do)."""
    work = start_attempt(range_id)
    if work is None:
        return {"range": range_id, "done": True, "checked": 0, "note": "range finished"}
    full_sweep.mark_running(work.sweep_id)
    swept = SweepResult()
    try:
        for result in full_sweep.work_sweep_range(work, batch_size=batch_size):
            swept.checked += result.checked
            swept.taken_down += result.taken_down
            swept.queued += result.queued
        finish_range(work, enqueue=True)
    except BaseException as e:
        record_failure(range_id, e)
        full_sweep.mark_failed(work.sweep_id, e)
        raise
    return {
        "range": range_id,
        "done": True,
        "checked": swept.checked,
        "taken_down": len(swept.taken_down),
        "queued": len(swept.queued),
    }


@task
def reindex_task(run_id: int, batch_size: int = 200, sweep: bool = True, **legacy) -> dict:
    """How the previous release queued a reindex (one task re-enqueueing itself): the run gets
    its ranges (after what its cursors reached) and they are enqueued."""
    run = ReindexRun.objects.filter(pk=run_id, finished_at__isnull=True).first()
    if run is None:
        return {"run": run_id, "done": True, "processed": 0, "note": "run missing or finished"}
    with transaction.atomic():
        run = ReindexRun.objects.select_for_update().get(pk=run_id)
        if run.phase == ReindexRun.Phase.REINDEXING and not run.ranges.exists():
            run.sweep_after, run.batch_size = sweep, batch_size
            run.save(update_fields=["sweep_after", "batch_size"])
            _plan(run, after=run.cursors)
        queued = enqueue_ranges(run)
        advance(run, enqueue=True)
    return {"run": run_id, "done": False, "ranges": queued}


# --- the dry run -----------------------------------------------------------------------------


class ReindexBatches:
    """A dry run: every batch of every kind of stored image, in order, read and compared but
    never written. After a kind's last batch comes one result with ``done`` set. ``key`` is the
    kind being worked on (for a caller that reports where a failure happened)."""

    def __init__(self, *, batch_size: int) -> None:
        self.batch_size = batch_size
        self.key = ""

    def __iter__(self) -> Iterator[BatchResult]:
        for key in reindex_keys():
            self.key = key
            after = 0
            while True:
                result = read_batch(key, after=after, batch_size=self.batch_size).result
                yield result
                if result.done:
                    break
                after = result.last_pk
