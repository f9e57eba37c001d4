"""Reindex in ranges: every row in exactly one range, each range's work committed once however
often its task runs, and the run moved on (full sweep, then closed) exactly once.

Range tasks are called in this process (``task.call``), as a worker would run them; the race of
two workers finishing the last two ranges together runs on two real PostgreSQL connections.
"""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connection, connections
from django_tasks_db.models import DBTaskResult
from hypothesis import given
from hypothesis import strategies as st

from moderation import full_sweep, refingerprint, reindex
from moderation.models import ReindexRun, Sweep, WorkRange
from moderation.reindex import reindex_range_task, sweep_range_task
from moderation.work_ranges import plan_ranges, split_ranges
from profiles.models import Profile
from tests import images
from tests.helpers import run_command
from tests.test_reindex import make_stale

DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}


# --- cutting ranges ---------------------------------------------------------------------


@given(
    pks=st.sets(st.integers(min_value=1, max_value=10**9), max_size=300),
    size=st.integers(min_value=1, max_value=40),
)
def test_ranges_cover_every_primary_key_exactly_once_and_hold_at_most_size_rows(pks, size):
    ordered = sorted(pks)

    ranges = list(split_ranges(iter(ordered), size))

    covered = [[pk for pk in ordered if lo <= pk <= hi] for lo, hi, _ in ranges]
    assert [pk for chunk in covered for pk in chunk] == ordered  # each once, in order
    assert [len(chunk) for chunk in covered] == [rows for _, _, rows in ranges]
    assert all(rows == size for _, _, rows in ranges[:-1])
    assert all(0 < rows <= size for _, _, rows in ranges)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_ranges_refuse_a_size_below_one_and_keys_out_of_order():
    with pytest.raises(ValueError, match="at least one row"):
        list(split_ranges([1, 2], 0))
    with pytest.raises(ValueError, match="ascending"):
        list(split_ranges([1, 3, 2], 2))


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(4))
def test_planned_ranges_cover_every_stored_row_with_gaps_exactly_once(seed, django_user_model):
    rng = random.Random(seed)
    django_user_model.objects.bulk_create(
        django_user_model(username=f"u{i}") for i in range(rng.randint(1, 120))
    )
    pks = list(django_user_model.objects.values_list("pk", flat=True))
    django_user_model.objects.filter(pk__in=rng.sample(pks, len(pks) // 3)).delete()  # gaps
    kept = set(django_user_model.objects.values_list("pk", flat=True))
    size = rng.randint(1, 25)

    ranges = plan_ranges(django_user_model.objects.all(), kind="users", size=size, run=None)

    owners = {pk: [r for r in ranges if r.lo <= pk <= r.hi] for pk in kept}
    assert all(len(found) == 1 for found in owners.values())
    assert sum(r.rows for r in ranges) == len(kept)
    assert all(r.rows <= size and r.cursor == r.lo - 1 for r in ranges)


# --- one range, run again ---------------------------------------------------------------


@pytest.fixture
def stale_profiles(make_profile):
    """Seven profiles whose stored hashes are stale: each reindexed row counts as changed."""
    profiles = [make_profile(f"user{i}", images.photo(200 + i)) for i in range(7)]
    for profile in profiles:
        make_stale(profile)
    return profiles


@pytest.fixture
def reads(monkeypatch):
    """The pks of the stored photos reindex reads; ``fail_at = n`` makes read n fail."""

    class Reads(list):
        fail_at: int | None = None

    log = Reads()
    real = refingerprint._read_fingerprints

    def counting(fieldfile):
        log.append(fieldfile.instance.pk)
        if log.fail_at == len(log):
            raise ConnectionError("storage went away")
        return real(fieldfile)

    monkeypatch.setattr(refingerprint, "_read_fingerprints", counting)
    return log


def open_run(settings, size: int, **options) -> ReindexRun:
    settings.MODERATION_REINDEX_RANGE_SIZE = size
    run, created = reindex.reindex_open_run(**options)
    assert created
    return run


def true_hashes(profiles) -> list[int]:
    return [
        refingerprint._read_fingerprints(p.photo)[0].frames[0].signed
        for p in Profile.objects.filter(pk__in=[p.pk for p in profiles]).order_by("pk")
    ]


@pytest.mark.django_db(transaction=True)
def test_a_range_task_run_twice_does_its_rows_once(stale_profiles, reads, settings):
    run = open_run(settings, 100, sweep=False)
    [work] = run.ranges.all()

    first = reindex_range_task.call(work.pk, batch_size=3)
    second = reindex_range_task.call(work.pk, batch_size=3)

    work.refresh_from_db()
    assert (first["processed"], second["processed"]) == (7, 0)
    assert second["note"] == "range finished"
    assert (work.done, work.processed, work.changed, work.attempts) == (True, 7, 7, 1)
    assert sorted(reads) == sorted(p.pk for p in stale_profiles)  # each file read once
    run.refresh_from_db()
    assert run.finished_at is not None and run.counts["processed"] == 7


@pytest.mark.django_db(transaction=True)
def test_a_range_task_that_died_resumes_from_its_cursor_and_repeats_no_committed_batch(
    stale_profiles, reads, settings
):
    run = open_run(settings, 100, sweep=False)
    [work] = run.ranges.all()
    reads.fail_at = 5  # the second read of the second batch of 3

    with pytest.raises(ConnectionError):
        reindex_range_task.call(work.pk, batch_size=3)

    work.refresh_from_db()
    pks = sorted(p.pk for p in stale_profiles)
    assert (work.cursor, work.processed, work.done, work.attempts) == (pks[2], 3, False, 1)
    assert "ConnectionError: storage went away" in work.last_error
    reads.clear()
    reads.fail_at = None

    reindex_range_task.call(work.pk, batch_size=3)

    work.refresh_from_db()
    assert reads == pks[3:]  # the committed batch was not read again
    assert (work.done, work.processed, work.changed, work.attempts) == (True, 7, 7, 2)
    assert work.last_error == ""
    hashes = list(Profile.objects.order_by("pk").values_list("photo_dhash", flat=True))
    assert hashes == true_hashes(stale_profiles)


@pytest.mark.django_db(transaction=True)
def test_two_tasks_on_one_range_commit_each_batch_once(stale_profiles, settings):
    """A range enqueued twice: the second task runs while the first is between batches."""
    run = open_run(settings, 100, sweep=False)
    [work] = run.ranges.all()
    first = reindex.work_reindex_range(work, batch_size=3)
    assert next(first).processed == 3  # the first batch is committed

    reindex_range_task.call(work.pk, batch_size=3)  # the duplicate does the rest and finishes
    rest = list(first)  # the first task goes on: it finds the range done

    work.refresh_from_db()
    assert rest == []
    assert (work.done, work.processed, work.changed) == (True, 7, 7)


@pytest.mark.django_db(transaction=True)
def test_the_last_reindex_range_starts_the_full_sweep_in_ranges_and_the_last_sweep_range_closes(
    stale_profiles, settings
):
    settings.TASKS = DATABASE_TASKS  # queued, for this test to run as a worker would
    run = open_run(settings, 3)  # 7 photos: ranges of 3, 3 and 1
    assert [r.rows for r in run.ranges.order_by("pk")] == [3, 3, 1]

    for work in run.ranges.order_by("pk"):
        reindex_range_task.call(work.pk, batch_size=2)

    run.refresh_from_db()
    sweep = Sweep.objects.get(run=run)
    assert (run.phase, sweep.full, sweep.state) == ("sweeping", True, "queued")
    sweep_ranges = list(sweep.ranges.order_by("pk"))
    assert [r.rows for r in sweep_ranges] == [3, 3, 1]
    queued = DBTaskResult.objects.filter(task_path=sweep_range_task.module_path)
    assert sorted(t.args_kwargs["args"] for t in queued) == [[r.pk] for r in sweep_ranges]
    for work in sweep_ranges:
        sweep_range_task.call(work.pk, batch_size=2)
    run.refresh_from_db()
    sweep.refresh_from_db()
    assert (run.phase, sweep.state, sweep.checked) == ("done", "done", 7)
    assert run.finished_at is not None and run.counts["swept"] == 7


@pytest.mark.django_db(transaction=True)
def test_reindex_background_twice_while_a_run_is_open_adds_no_run_range_or_task(
    stale_profiles, settings
):
    settings.TASKS = DATABASE_TASKS  # enqueued for workers that are not running
    settings.MODERATION_REINDEX_RANGE_SIZE = 4

    first = run_command("reindex", "--background", "--batch-size=2")
    second = run_command("reindex", "--background", "--batch-size=2")

    run = ReindexRun.objects.get()
    assert "2 range task(s) enqueued" in first
    assert f"Reindex run #{run.pk} is already open; nothing was enqueued" in second
    assert "0/2 ranges, 0/7 rows" in second
    assert WorkRange.objects.count() == 2
    assert DBTaskResult.objects.count() == 2

    requeued = run_command("reindex", "--background", "--requeue")

    assert "2 range task(s) enqueued" in requeued
    assert DBTaskResult.objects.count() == 4 and WorkRange.objects.count() == 2


# --- two workers finishing together (PostgreSQL) ----------------------------------------


def _finish_together(ranges: list[WorkRange]) -> None:
    """``finish_range`` for each range at the same moment, each on its own connection."""
    barrier = threading.Barrier(len(ranges))
    errors: list[BaseException] = []

    def finish(work):
        try:
            barrier.wait(timeout=10)
            reindex.finish_range(work, enqueue=False)
        except BaseException as e:  # reported by the test thread
            errors.append(e)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=finish, args=(work,)) for work in ranges]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_finishing_the_last_ranges_together_start_one_sweep_and_close_once(
    stale_profiles, settings
):
    assert connection.vendor == "postgresql"
    for attempt in range(5):
        run = open_run(settings, 4, restart=attempt > 0)  # ranges of 4 and 3 photos
        ranges = list(run.ranges.order_by("pk"))
        for work in ranges:
            list(reindex.work_reindex_range(work, batch_size=4))  # all done but the finish

        _finish_together(ranges)

        run.refresh_from_db()
        assert run.phase == "sweeping", f"attempt {attempt}"
        [sweep] = Sweep.objects.filter(run=run)
        sweep_ranges = list(sweep.ranges.order_by("pk"))
        assert [r.rows for r in sweep_ranges] == [4, 3]
        for work in sweep_ranges:
            list(full_sweep.work_sweep_range(work, batch_size=4))

        _finish_together(sweep_ranges)

        run.refresh_from_db()
        sweep.refresh_from_db()
        assert (run.phase, sweep.state, sweep.checked) == ("done", "done", 7)
        assert run.finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_range_of_a_run_abandoned_by_restart_is_not_worked_on(stale_profiles, reads, settings):
    old = open_run(settings, 100, sweep=False)
    [work] = old.ranges.all()
    reindex.reindex_open_run(restart=True, sweep=False)

    result = reindex_range_task.call(work.pk, batch_size=3)

    assert result["note"] == "run closed" and reads == []
    work.refresh_from_db()
    assert (work.processed, work.done) == (0, False)
