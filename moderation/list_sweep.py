"""List sweeps: the photos already stored, against the entries a hash list just gained.

An import (or an entry added in the admin) makes a list's PDQ, MD5 and SHA-256 entries block
new uploads at once; this carries them to stored photos too, as a flag's sweep does for dHash.
It is owed when an enabled list gains active entries (``signal_lists``: the entries an import
added, or the one an admin added) and when a list is switched on or from shadow to enforce
(``hash_lists``: every active entry). The ``Sweep`` row (``hash_list`` set) is created queued
in the transaction that makes it owed; after commit a task cuts the stored images into ranges
(``work_ranges``, as the full sweep after a reindex) and enqueues one task per range, so any
number of workers share it and the operator sees its progress where the other sweeps' is.

A range is read in batches of stored images with their signals rows (``StoredSignal``: the PDQ
and file digests kept when each photo was stored; no file is read). Each batch looks the
images' PDQs up in a ``PdqIndex`` of the sweep's entries (built once per process and sweep) and
their digests in two dicts; each photo with candidates is then decided and acted on as the
recheck after an upload does it (``list_takedowns``: only entries still active, of a list still
on, within its PDQ distance, count; the upload rule; the allowlist of list entries; a block
taken down with a notice under the list's flood guard, a review queued, a shadow match
recorded).

Each batch's cursor and counts commit after its work; a range that runs again (its worker
died) resumes after the last committed batch and repeats at most the batch in flight, which is
harmless: a takedown re-reads and locks its row (a photo already taken down has no image), a
pending review or a shadow hit is not recorded twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from django.db import models, transaction
from django.db.models import F
from django.tasks import task
from django.utils import timezone

from moderation import list_takedowns, registry, stored_hashes
from moderation.background import enqueue_on_commit
from moderation.conf import moderation_settings
from moderation.full_sweep import close_full_sweep, mark_failed, mark_running
from moderation.models import (
    HashList,
    ReviewItem,
    SignalEntry,
    SignalImport,
    SignalType,
    StoredSignal,
    Sweep,
    WorkRange,
)
from moderation.pdq_index import PdqIndex, parse_hex, parse_hex_many
from moderation.sweeping import SweepResult
from moderation.work_ranges import plan_ranges, record_failure, start_attempt

logger = logging.getLogger(__name__)

# Stored images read per committed batch of a range.
BATCH_SIZE = 500


# --- owing a sweep ----------------------------------------------------------------------------


def sweep_list_after_commit(
    *,
    hash_list: HashList,
    signal_import: SignalImport | None = None,
    entry_ids: list[int] | None = None,
    guarded: bool = True,
) -> Sweep | None:
    """Owe a sweep of the stored images against ``hash_list``'s entries that ``signal_import``
    added (or ``entry_ids``; neither: every active entry), planned and run by the task worker
    once the caller's transaction commits. None when the list is switched off (it matches
    nothing; switching it on sweeps). ``guarded=False``: a moderator resumed a list the flood
    guard held."""
    if not hash_list.enabled:
        return None
    sweep = Sweep.objects.create(
        hash_list=hash_list,
        signal_import=signal_import,
        signal_entry_ids=sorted(entry_ids or []),
        guarded=guarded,
    )
    enqueue_on_commit(plan_list_sweep_task, sweep.pk)
    return sweep


def entries_of(sweep: Sweep) -> models.QuerySet:
    """The active entries a list sweep compares stored images with."""
    rows = SignalEntry.objects.active().filter(hash_list_id=sweep.hash_list_id)
    if sweep.signal_import_id is not None:
        return rows.filter(imported_by_id=sweep.signal_import_id)
    if sweep.signal_entry_ids:
        return rows.filter(pk__in=sweep.signal_entry_ids)
    return rows


def plan(sweep: Sweep) -> list[WorkRange]:
    """Cut the sweep's ranges (once; a second call finds them) and return the open ones; a
    sweep with nothing to look at is closed at once."""
    with transaction.atomic():
        locked = Sweep.objects.select_for_update().get(pk=sweep.pk)
        if locked.state == Sweep.State.DONE:
            return []
        if not locked.ranges.exists():
            size = moderation_settings.REINDEX_RANGE_SIZE
            for target in registry.targets():
                plan_ranges(target.with_hashes(), kind=target.key, size=size, sweep=locked)
        open_ranges = list(locked.ranges.filter(done=False))
        if not open_ranges:
            close_full_sweep(locked)
    return open_ranges


@task
def plan_list_sweep_task(sweep_id: int) -> dict:
    """Plan list sweep ``sweep_id`` and enqueue its open ranges (again, if it ran before:
    a range already finished does nothing, and two tasks on one range share its cursor)."""
    sweep = Sweep.objects.filter(pk=sweep_id, hash_list__isnull=False).first()
    if sweep is None:
        return {"sweep": sweep_id, "note": "sweep missing"}
    open_ranges = plan(sweep)
    with transaction.atomic():
        for work in open_ranges:
            enqueue_on_commit(list_sweep_range_task, work.pk)
    return {"sweep": sweep_id, "ranges": len(open_ranges)}


# --- the entries, in each worker's memory -----------------------------------------------------


@dataclass(frozen=True)
class SweepEntries:
    """A list sweep's entries as a worker holds them: the PDQs in an index, the digests in
    dicts (value -> entry ids), and the widest PDQ distance to look within."""

    pdq: PdqIndex
    md5: dict[str, list[int]]
    sha256: dict[str, list[int]]
    radius: int

    def candidates(self, signal: StoredSignal) -> dict[int, int]:
        """Entry id -> distance of the entries that may match a stored image's signals."""
        found: dict[int, int] = {}
        if signal.pdq and len(self.pdq):
            keys, dists = self.pdq.query(parse_hex(signal.pdq), self.radius)
            found.update(zip(keys.tolist(), dists.tolist(), strict=True))
        for ids in (self.md5.get(signal.md5, ()), self.sha256.get(signal.sha256, ())):
            found.update(dict.fromkeys(ids, 0))
        return found


# The last sweep's entries, by (sweep id, created): an id SQLite reuses is another sweep.
_held: dict[tuple[int, object], SweepEntries] = {}
_held_lock = threading.Lock()


def sweep_entries(sweep: Sweep) -> SweepEntries:
    """The sweep's entries, loaded and indexed once per process (the last sweep's only)."""
    key = (sweep.pk, sweep.created_at)
    with _held_lock:
        if key in _held:
            return _held[key]
    entries = entries_of(sweep)
    pdq_rows = list(entries.filter(signal_type=SignalType.PDQ).values_list("pk", "value"))
    index = PdqIndex()
    index.build(
        np.array([pk for pk, _ in pdq_rows], dtype=np.int64),
        parse_hex_many([value for _, value in pdq_rows]),
    )
    digests: dict[str, dict[str, list[int]]] = {SignalType.MD5: {}, SignalType.SHA256: {}}
    for pk, kind, value in entries.exclude(signal_type=SignalType.PDQ).values_list(
        "pk", "signal_type", "value"
    ):
        digests[kind].setdefault(value, []).append(pk)
    held = SweepEntries(
        pdq=index,
        md5=digests[SignalType.MD5],
        sha256=digests[SignalType.SHA256],
        radius=HashList.objects.filter(pk=sweep.hash_list_id).values_list(
            "pdq_distance", flat=True
        )[0],
    )
    with _held_lock:
        _held.clear()
        _held[key] = held
    return held


# --- one batch --------------------------------------------------------------------------------


@dataclass
class ListBatch:
    """What one batch did (``SweepResult``'s counts) and how many stored images in it had no
    signals row (stored before they were kept, not reindexed since): not compared."""

    result: SweepResult
    unsigned: int = 0
    last: int | None = None  # the last pk read; None: nothing was left in the range


def sweep_list_batch(
    sweep: Sweep, target: registry.ImageTarget, *, after: int, upto: int, limit: int
) -> ListBatch:
    """Sweep the next ``limit`` stored images of ``target`` with ``after < pk <= upto``
    against the sweep's entries (see the module docstring)."""
    images = list(
        target.with_hashes()
        .filter(pk__gt=after, pk__lte=upto)
        .order_by("pk")
        .values_list("pk", target.hash_field)[:limit]
    )
    batch = ListBatch(SweepResult())
    if not images:
        return batch
    batch.last = images[-1][0]
    current = dict(images)
    signal_rows = StoredSignal.objects.filter(
        target_id=stored_hashes.marker_id(target.key), object_pk__in=list(current)
    )
    held = sweep_entries(sweep)
    found: dict[int, dict[int, int]] = {}
    signal_of: dict[int, StoredSignal] = {}
    for signal in signal_rows:
        if current.get(signal.object_pk) != signal.dhash:
            continue  # written for an earlier picture of this row
        batch.result.checked += 1
        signal_of[signal.object_pk] = signal
        candidates = held.candidates(signal)
        if candidates:
            found[signal.object_pk] = candidates
    batch.unsigned = len(images) - batch.result.checked
    if found:
        _act(sweep, target, found, signal_of, batch.result)
    return batch


def _act(sweep, target, found, signal_of, result: SweepResult) -> None:
    """Decide each image's candidates as every list path does (``list_takedowns``), and act."""
    in_force = list_takedowns.entries_in_force(
        {pk for candidates in found.values() for pk in candidates}
    )
    instances = target.objects.in_bulk(list(found))
    decisions = [
        decision
        for pk, candidates in found.items()
        if (
            decision := list_takedowns.decide(
                target, instances.get(pk), signal_of[pk], candidates, in_force
            )
        )
        is not None
    ]
    done = list_takedowns.act(
        target,
        decisions,
        in_force=in_force,
        guarded=sweep.guarded,
        found_by=ReviewItem.FoundBy.LIST_SWEEP,
    )
    result.taken_down += done.taken_down
    result.queued += done.queued
    result.held += done.held


# --- ranges -----------------------------------------------------------------------------------


def work_list_range(work: WorkRange, *, batch_size: int = BATCH_SIZE) -> Iterator[ListBatch]:
    """Sweep the range from its committed cursor, one batch at a time; each batch's cursor and
    counts are committed before it is yielded (as ``full_sweep.work_sweep_range``)."""
    target = registry.target_by_key(work.kind)
    sweep = Sweep.objects.get(pk=work.sweep_id)
    cursor = work.cursor
    while True:
        batch = sweep_list_batch(sweep, target, after=cursor, upto=work.hi, limit=batch_size)
        if batch.last is None:
            return
        with transaction.atomic():
            locked = WorkRange.objects.select_for_update().get(pk=work.pk)
            if locked.done:
                return
            if locked.cursor != cursor:
                cursor = locked.cursor  # a second task on this range committed it first
                continue
            WorkRange.objects.filter(pk=work.pk).update(
                cursor=batch.last,
                processed=F("processed") + batch.result.checked,
                missing=F("missing") + batch.unsigned,
                taken_down=F("taken_down") + len(batch.result.taken_down),
                queued=F("queued") + len(batch.result.queued),
            )
        cursor = batch.last
        yield batch


def finish_range(work: WorkRange) -> Sweep:
    """Mark the range done; the last one closes the sweep (under its row's lock, once)."""
    with transaction.atomic():
        sweep = Sweep.objects.select_for_update().get(pk=work.sweep_id)
        WorkRange.objects.filter(pk=work.pk, done=False).update(
            done=True, finished_at=timezone.now()
        )
        if sweep.state != Sweep.State.DONE and not sweep.ranges.filter(done=False).exists():
            close_full_sweep(sweep)
    return sweep


@task
def list_sweep_range_task(range_id: int, batch_size: int = BATCH_SIZE) -> dict:
    """Sweep one range of a list sweep (resumes after its last committed batch)."""
    work = start_attempt(range_id)
    if work is None:
        return {"range": range_id, "note": "already done"}
    mark_running(work.sweep_id)
    checked = taken_down = 0
    try:
        for batch in work_list_range(work, batch_size=batch_size):
            checked += batch.result.checked
            taken_down += len(batch.result.taken_down)
    except BaseException as e:
        record_failure(range_id, e)
        mark_failed(work.sweep_id, e)
        raise
    sweep = finish_range(work)
    return {"range": range_id, "sweep": sweep.pk, "checked": checked, "taken_down": taken_down}
