"""Reindex ranges in real ``db_worker`` processes: a worker killed mid-range loses at most the
batch in flight, and the worker that takes the range next resumes from its cursor.

The stored photos are real files on disk with stale hashes, written straight to storage and
the rows (fast, and what an older pipeline left behind), so every row reindexed is counted as
changed: a batch done twice would show in the counts, a batch skipped in the hashes.
"""

from __future__ import annotations

import os

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django_tasks_db.models import DBTaskResult

from moderation.hashing import PIPELINE_VERSION
from moderation.models import ReindexRun
from moderation.reindex import reindex_range_task
from profiles.models import Profile
from tests import images
from tests.processes import ManageProcess, wait_for

DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
TIMEOUT = 60
PHOTOS = 40


def start_worker(name: str) -> ManageProcess:
    return ManageProcess(
        "db_worker",
        "--no-reload",
        "--no-startup-delay",
        "--interval=0.05",
        f"--worker-id={name}-{os.getpid()}",
        "--verbosity=2",
        MODERATION_TASKS_BACKEND="database",
    )


@pytest.fixture
def stale_photos(django_user_model, isolated_storage) -> list[int]:
    """``PHOTOS`` stored profile photos (a few distinct pictures) with stale hashes."""
    storage = Profile.photo.field.storage
    contents = [
        images.encode(images.photo(300 + i, (320, 240)), "JPEG", quality=85) for i in range(4)
    ]
    users = django_user_model.objects.bulk_create(
        django_user_model(username=f"w{i}") for i in range(PHOTOS)
    )
    profiles = [
        Profile(
            user=user,
            photo=storage.save(f"photos/w{i}.jpg", ContentFile(contents[i % 4])),
            photo_dhash=i + 1,  # far from any real hash
            photo_pipeline_version=0,
        )
        for i, user in enumerate(users)
    ]
    return [p.pk for p in Profile.objects.bulk_create(profiles)]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_range_loses_nothing_and_the_next_resumes_from_the_cursor(
    stale_photos, settings
):
    settings.TASKS = DATABASE_TASKS
    call_command("reindex", "--background", "--no-sweep", "--batch-size=2", verbosity=0)
    run = ReindexRun.objects.get()
    work = run.ranges.get()  # no flags: one range of photos
    assert work.rows == PHOTOS

    first = start_worker("first")
    try:

        def some_batches_committed():
            work.refresh_from_db()
            return work.processed >= 6

        wait_for(some_batches_committed, timeout=TIMEOUT, what="a few batches", process=first)
        first.proc.kill()  # SIGKILL: no cleanup, as an out-of-memory kill or a reboot
        first.proc.wait(10)
    finally:
        first.cleanup()
    work.refresh_from_db()
    cursor, processed = work.cursor, work.processed
    assert not work.done and 0 < processed < PHOTOS, "the worker was not killed mid-range"
    assert [pk for pk in stale_photos if pk <= cursor] == stale_photos[:processed]
    committed = dict(Profile.objects.filter(pk__lte=cursor).values_list("pk", "photo_checked_at"))
    assert all(checked is not None for checked in committed.values())
    # Its task stays RUNNING (a dead worker's task is given back by the lease, where the
    # backend has one); the operator's --requeue enqueues the unfinished range again now.
    assert DBTaskResult.objects.filter(status="RUNNING").count() == 1
    call_command("reindex", "--background", "--requeue", verbosity=0)

    second = start_worker("second")
    try:

        def finished():
            run.refresh_from_db()
            return run.finished_at

        wait_for(finished, timeout=TIMEOUT, what="the run to finish", process=second)
    finally:
        second.cleanup()

    work.refresh_from_db()
    assert (work.done, work.attempts) == (True, 2)
    # Every row once: a repeated batch would count twice, a skipped one keep its stale hash.
    assert (work.processed, work.changed) == (PHOTOS, PHOTOS)
    assert run.counts["processed"] == PHOTOS
    assert not Profile.objects.exclude(photo_pipeline_version=PIPELINE_VERSION).exists()
    # The batches committed before the kill were not done again.
    assert (
        dict(Profile.objects.filter(pk__lte=cursor).values_list("pk", "photo_checked_at"))
        == committed
    )
    assert reindex_range_task.module_path in set(
        DBTaskResult.objects.values_list("task_path", flat=True)
    )
