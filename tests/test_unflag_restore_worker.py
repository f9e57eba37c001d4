"""Unflagging with many photos to put back: the request hands them to the task worker, and the
worker's work survives being killed part-way. ``manage.py run_worker`` runs as a separate
process on the test database (as in ``tests/test_worker.py``); the takedowns themselves are
set up in this process, with tasks run immediately, before the queue is switched to the
database."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from moderation import flagging
from moderation.models import AuditEvent, EmailDelivery, Notice
from tests import images
from tests.admin_pages import FINGERPRINTS
from tests.helpers import ban
from tests.processes import ManageProcess, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WORKER_TIMEOUT = 60
SCENE = 2301  # tests/test_unflag_restore.py: its re-compressed copy takes the photo down
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
IMMEDIATE_TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
BACK_SUBJECT = "Your profile photo is back"


@pytest.fixture
def mail_dir(tmp_path) -> Path:
    path = tmp_path / "worker-mail"
    path.mkdir()
    return path


@pytest.fixture
def start_worker(mail_dir):
    """Start ``manage.py run_worker`` (short heartbeat and lease); always stopped afterwards."""
    procs: list[ManageProcess] = []

    def start() -> ManageProcess:
        proc = ManageProcess(
            "run_worker",
            "--no-reload",
            "--no-startup-delay",
            "--interval=0.1",
            f"--worker-id=restore-{os.getpid()}",
            "--verbosity=2",
            MODERATION_TASKS_BACKEND="database",
            MODERATION_WORKER_HEARTBEAT_SECONDS="1",
            MODERATION_WORKER_LEASE_SECONDS="2",
            MODERATION_TASK_RETRY_SECONDS="0",
            DJANGO_EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
            DJANGO_EMAIL_FILE_PATH=str(mail_dir),
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()
        print(proc.describe())  # shown by pytest when the test failed
        proc.cleanup()


@pytest.fixture
def taken_down(make_profile, settings):
    """Five people's copies of one picture, taken down by a flag's sweep (run here, at once);
    each person has a confirmed address. Returns (profiles, flag)."""
    settings.TASKS = IMMEDIATE_TASKS
    profiles = []
    for i in range(5):
        profile = make_profile(f"owner{i}", images.photo(SCENE))
        profile.user.email = f"owner{i}@example.com"
        profile.user.save(update_fields=["email"])
        profiles.append(profile)
    flagged = ban(images.recompressed(images.photo(SCENE), 85))
    for profile in profiles:
        profile.refresh_from_db()
        assert not profile.photo
    assert Notice.objects.kept_takedowns().filter(fingerprint=flagged).count() == 5
    settings.TASKS = DATABASE_TASKS  # from here on, the worker runs what is queued
    return profiles, flagged


def restore_rows() -> list[DBTaskResult]:
    return list(
        DBTaskResult.objects.filter(task_path=flagging.restore_takedowns_task.module_path)
    )


def wait_until_finished(worker: ManageProcess) -> DBTaskResult:
    def finished():
        rows = [r for r in restore_rows() if r.finished_at is not None]
        return rows[0] if rows else None

    row = wait_for(finished, timeout=WORKER_TIMEOUT, what="the restore task", process=worker)
    assert row.status == "SUCCESSFUL", f"{row.status}: {row.traceback}\n{worker.describe()}"
    return row


def mails_sent(mail_dir: Path) -> list[str]:
    """The recipients of every "your photo is back" mail the worker sent."""
    recipients = []
    for path in sorted(mail_dir.iterdir()):
        for message in path.read_text().split("\n" + "-" * 79 + "\n"):
            if f"Subject: {BACK_SUBJECT}" in message:
                [to] = [line for line in message.splitlines() if line.startswith("To: ")]
                recipients.append(to.removeprefix("To: "))
    return sorted(recipients)


def assert_each_put_back_exactly_once(profiles, flagged):
    for profile in profiles:
        profile.refresh_from_db()
        assert profile.photo and profile.photo.storage.exists(profile.photo.name), profile
        events = AuditEvent.objects.filter(
            action=AuditEvent.Action.RESTORE, target__endswith=f"(#{profile.pk})"
        )
        assert events.count() == 1, list(events.values("pk", "target", "created_at"))
        assert events.get().fingerprint_id == flagged.pk
        owed = EmailDelivery.objects.filter(user=profile.user, subject=BACK_SUBJECT)
        assert owed.count() == 1
    assert not Notice.objects.kept_takedowns().filter(fingerprint=flagged).exists()


def unflag_with_restore(client, moderator, flagged):
    """The moderator unflags ``flagged`` in the admin, ticking "put back the photos"."""
    client.force_login(moderator)
    return client.post(
        reverse(FINGERPRINTS),
        {
            "action": "unflag_selected",
            ACTION_CHECKBOX_NAME: [flagged.pk],
            "confirm": "yes",
            "reason": "not the bad image",
            "restore_photos": "on",
        },
        follow=True,
    )


def test_an_unflag_with_more_photos_than_the_limit_puts_them_back_in_the_worker(
    taken_down, moderator, client, settings, start_worker, mail_dir
):
    profiles, flagged = taken_down
    settings.MODERATION_RESTORE_INLINE_MAX = 4
    response = unflag_with_restore(client, moderator, flagged)
    page = response.content.decode()
    assert "5 photos will be put back in the background" in page
    assert "Put back" not in page  # nothing was put back by the request itself
    flagged.refresh_from_db()
    assert not flagged.active
    for profile in profiles:
        profile.refresh_from_db()
        assert not profile.photo
    [queued] = restore_rows()
    assert queued.status == "READY"
    assert queued.args_kwargs == {"args": [flagged.pk, moderator.pk], "kwargs": {}}

    worker = start_worker()
    row = wait_until_finished(worker)
    assert row.return_value == {"flag": flagged.pk, "restored": 5, "still_matched": 0, "skipped": 0}
    assert_each_put_back_exactly_once(profiles, flagged)
    restores = AuditEvent.objects.filter(action=AuditEvent.Action.RESTORE)
    assert {event.actor for event in restores} == {moderator}
    wait_for(
        lambda: len(mails_sent(mail_dir)) >= 5, timeout=WORKER_TIMEOUT, what="five mails"
    )
    assert mails_sent(mail_dir) == sorted(p.user.email for p in profiles)


def test_a_limit_of_photos_or_fewer_is_put_back_in_the_request(
    taken_down, moderator, client, settings
):
    profiles, flagged = taken_down
    settings.MODERATION_RESTORE_INLINE_MAX = 5
    response = unflag_with_restore(client, moderator, flagged)
    assert "Put back 5 photos" in response.content.decode()
    assert restore_rows() == []
    assert_each_put_back_exactly_once(profiles, flagged)


def test_a_restore_whose_worker_was_killed_part_way_is_finished_by_the_next_without_repeats(
    taken_down, moderator, start_worker, mail_dir
):
    """As a SIGKILLed worker leaves it: two photos already put back (each committed with its
    notice's mark and its owner's email), the task row still RUNNING under the dead worker's
    claim. A new worker takes the task back after the lease and puts back the other three."""
    profiles, flagged = taken_down
    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="not the bad image")
    flagging.restore_takedowns_later(flagged=flagged, actor=moderator)
    [row] = restore_rows()
    row.claim("killed-worker")  # no heartbeat row: the worker is gone
    DBTaskResult.objects.filter(pk=row.pk).update(started_at=timezone.now() - timedelta(minutes=1))
    reason = f"restored from the kept copy: flag {flagged.hex} was unflagged"
    first = Notice.objects.kept_takedowns().filter(fingerprint=flagged).order_by("pk")[:2]
    for notice in first:
        outcome = flagging.restore_takedown(notice=notice, actor=moderator, reason=reason)
        assert outcome == flagging.RESTORED
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RESTORE).count() == 2

    worker = start_worker()
    row = wait_until_finished(worker)
    assert row.worker_ids == ["killed-worker", f"restore-{os.getpid()}"]
    # The retry looked only at the three still down.
    assert row.return_value == {"flag": flagged.pk, "restored": 3, "still_matched": 0, "skipped": 0}
    assert_each_put_back_exactly_once(profiles, flagged)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RESTORE).count() == 5
