"""The production worker's bookkeeping, in this process on the real database: the lease that
gives a dead worker's task back, retries with backoff, a result a slow worker must discard,
the failed-task page with its retry button, the dashboard's counts and ``/ready``.

What happens to real processes (killed, stopped, cut from the database) is in
``tests/test_crash_safety.py``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from moderation import worker
from moderation.models import AuditEvent, EmailDelivery, ReviewSubscription, WorkerHeartbeat
from moderation.review import send_unsent_emails
from tests import background_tasks

pytestmark = pytest.mark.django_db

DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}


@pytest.fixture(autouse=True)
def database_tasks(settings):
    settings.TASKS = DATABASE_TASKS
    settings.MODERATION_WORKER_LEASE_SECONDS = 30
    settings.MODERATION_TASK_MAX_ATTEMPTS = 3
    settings.MODERATION_TASK_RETRY_SECONDS = 10


def make_worker(worker_id: str = "w-here") -> worker.Worker:
    return worker.Worker(
        queue_names=["default"],
        interval=0.1,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=worker_id,
        excluded_queue_names=[],
    )


def running_task(*claims: str, started_ago: float = 60) -> DBTaskResult:
    """A task row as a worker left it after claiming it (once per id in ``claims``)."""
    result = background_tasks.always_fails.enqueue()
    row = DBTaskResult.objects.get(pk=result.id)
    for worker_id in claims:
        row.claim(worker_id)
    DBTaskResult.objects.filter(pk=row.pk).update(
        started_at=timezone.now() - timedelta(seconds=started_ago)
    )
    return DBTaskResult.objects.get(pk=row.pk)


def heartbeat(worker_id: str, seconds_ago: float) -> WorkerHeartbeat:
    return WorkerHeartbeat.objects.create(
        worker_id=worker_id,
        host="h",
        pid=1,
        last_seen=timezone.now() - timedelta(seconds=seconds_ago),
    )


def test_a_task_whose_worker_stopped_beating_goes_back_to_the_queue_as_the_same_row():
    heartbeat("dead", seconds_ago=31)
    row = running_task("dead")

    assert worker.requeue_abandoned() == [str(row.pk)]

    row.refresh_from_db()
    assert row.status == "READY"
    assert row.worker_ids == ["dead"]  # the claim stays counted as an attempt


def test_a_task_whose_worker_still_beats_is_left_alone():
    heartbeat("alive", seconds_ago=5)
    row = running_task("alive", started_ago=3600)

    assert worker.requeue_abandoned() == []
    row.refresh_from_db()
    assert row.status == "RUNNING"


def test_a_lease_check_says_when_the_earliest_running_lease_can_run_out(settings):
    settings.MODERATION_WORKER_HEARTBEAT_SECONDS = 5
    assert worker.check_leases().next_expiry is None  # nothing running: nothing to wait for
    beat = heartbeat("quiet", seconds_ago=28)
    running_task("quiet", started_ago=3600)
    running_task("db-worker", started_ago=10)  # no heartbeat: a lease from its claim

    check = worker.check_leases()

    assert check.requeued == []
    assert check.next_expiry == beat.last_seen + timedelta(seconds=30)
    # The worker looks again just after it (2 s away), not a whole 5 s interval later.
    assert 1.5 < make_worker()._until_next_check(check) <= 2.1


def test_a_lease_check_comes_at_least_once_per_heartbeat_interval(settings):
    settings.MODERATION_WORKER_HEARTBEAT_SECONDS = 5
    heartbeat("alive", seconds_ago=1)
    running_task("alive")

    assert make_worker()._until_next_check(worker.check_leases()) == 5


def test_a_task_claimed_by_a_worker_without_heartbeats_gets_one_lease_from_its_claim():
    fresh = running_task("db-worker", started_ago=10)
    old = running_task("db-worker", started_ago=40)

    assert worker.requeue_abandoned() == [str(old.pk)]
    fresh.refresh_from_db()
    assert fresh.status == "RUNNING"


def test_a_task_whose_workers_kept_dying_fails_for_good_after_the_last_attempt():
    heartbeat("third", seconds_ago=300)
    row = running_task("first", "second", "third")

    worker.requeue_abandoned()

    row.refresh_from_db()
    assert row.status == "FAILED" and row.finished_at is not None
    assert row.exception_class_path == "moderation.worker.AbandonedTask"
    assert "worker third stopped" in row.traceback and "attempt 3 of 3" in row.traceback


def test_a_task_that_raises_is_tried_again_later_then_stays_failed_with_its_error():
    result = background_tasks.always_fails.enqueue("disk full")
    me = make_worker()

    assert me._once() is True
    row = DBTaskResult.objects.get(pk=result.id)
    assert row.status == "READY" and row.worker_ids == ["w-here"]
    assert "ValueError: disk full" in row.traceback
    wait = row.run_after - timezone.now()
    assert timedelta(seconds=8) < wait <= timedelta(seconds=10)
    assert me._once() is False  # not before its time

    DBTaskResult.objects.filter(pk=row.pk).update(run_after=timezone.now())
    me._once()
    row.refresh_from_db()
    assert row.status == "READY" and len(row.worker_ids) == 2
    assert timedelta(seconds=18) < row.run_after - timezone.now() <= timedelta(seconds=20)

    DBTaskResult.objects.filter(pk=row.pk).update(run_after=timezone.now())
    me._once()
    row.refresh_from_db()
    assert row.status == "FAILED" and len(row.worker_ids) == 3
    assert row.exception_class_path == "builtins.ValueError"


def test_a_retried_task_that_then_succeeds_is_successful(tmp_path):
    marker = tmp_path / "ready"
    result = background_tasks.fails_until_file_exists.enqueue(str(marker))
    me = make_worker()
    me._once()
    marker.write_text("now")
    DBTaskResult.objects.filter(pk=result.id).update(run_after=timezone.now())

    me._once()

    row = DBTaskResult.objects.get(pk=result.id)
    assert (row.status, row.return_value, len(row.worker_ids)) == ("SUCCESSFUL", "done", 2)


def test_a_worker_that_lost_its_lease_discards_its_result():
    me = make_worker("slow")
    row = running_task("slow")
    DBTaskResult.objects.filter(pk=row.pk).update(status="READY")  # requeued meanwhile

    assert me._record(row, "SUCCESSFUL", "late") is None
    row.refresh_from_db()
    assert row.status == "READY" and row.return_value is None


def test_a_released_task_is_ready_again_without_the_claim_counting_as_an_attempt():
    me = make_worker("stopping")
    row = running_task("earlier", "stopping")

    assert me._record(row, "READY", None) == "READY"
    row.refresh_from_db()
    assert row.status == "READY" and row.worker_ids == ["earlier"]


def test_retry_delays_double_and_stop_at_an_hour(settings):
    settings.MODERATION_TASK_RETRY_SECONDS = 10
    assert [worker.retry_delay(n).total_seconds() for n in (1, 2, 3)] == [10, 20, 40]
    assert worker.retry_delay(20) == timedelta(hours=1)


def test_a_lease_shorter_than_two_heartbeats_is_refused_at_start_up(settings):
    settings.MODERATION_WORKER_HEARTBEAT_SECONDS = 20
    settings.MODERATION_WORKER_LEASE_SECONDS = 30
    assert "moderation.E006" in [e.id for e in run_checks()]


def test_run_worker_refuses_to_autoreload():
    with pytest.raises(CommandError, match="never reloads"):
        call_command("run_worker", "--reload")


def failed_task() -> DBTaskResult:
    result = background_tasks.always_fails.enqueue("smtp down")
    me = make_worker()
    for _ in range(3):
        DBTaskResult.objects.filter(pk=result.id).update(run_after=timezone.now())
        me._once()
    row = DBTaskResult.objects.get(pk=result.id)
    assert row.status == "FAILED"
    return row


def test_the_failed_tasks_page_lists_error_and_attempts_and_retry_queues_it_again(
    client, admin_user
):
    row = failed_task()
    client.force_login(admin_user)

    page = client.get(reverse("admin:moderation_failedtask_changelist")).content.decode()
    assert "always_fails" in page and "ValueError: smtp down" in page
    detail = client.get(reverse("admin:moderation_failedtask_change", args=[row.pk]))
    assert b"Retry this task" in detail.content

    response = client.post(reverse("admin:moderation_failedtask_retry", args=[row.pk]))

    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.status, row.worker_ids, row.finished_at) == ("READY", [], None)
    event = AuditEvent.objects.get(action=AuditEvent.Action.RETRY_TASK)
    assert event.actor == admin_user and str(row.pk) in event.target
    assert event.reason == "failed after 3 attempt(s): ValueError: smtp down"
    # Retried twice (a double click): queued once, audited once.
    client.post(reverse("admin:moderation_failedtask_retry", args=[row.pk]))
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RETRY_TASK).count() == 1


def test_retrying_a_task_needs_the_permission_and_a_post(client, django_user_model):
    from django.contrib.auth.models import Permission

    row = failed_task()
    viewer = django_user_model.objects.create_user(username="v", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_failedtask"))
    client.force_login(viewer)
    detail = client.get(reverse("admin:moderation_failedtask_change", args=[row.pk]))
    assert detail.status_code == 200 and b"Retry this task" not in detail.content
    url = reverse("admin:moderation_failedtask_retry", args=[row.pk])

    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403
    row.refresh_from_db()
    assert row.status == "FAILED"
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.RETRY_TASK).exists()


def test_the_dashboard_counts_failed_tasks_and_stale_workers(client, admin_user):
    failed_task()
    heartbeat("gone", seconds_ago=120)
    heartbeat("here", seconds_ago=1)
    client.force_login(admin_user)

    page = client.get(reverse("admin:moderation_dashboard")).content.decode()

    assert "1 task failed for good" in page
    assert "1 worker alive" in page and "1 stopped without saying goodbye" in page


def test_ready_is_503_without_a_live_worker_and_200_with_one():
    failed_task()
    heartbeat("gone", seconds_ago=120)
    from django.test import Client

    response = Client().get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["task_workers"] == "Unavailable: no task worker alive"
    assert {name for name, state in body["checks"].items() if state != "OK"} == {"task_workers"}
    assert (body["task_backend"], body["failed_tasks"]) == ("DatabaseBackend", 1)
    assert (body["workers_alive"], body["workers_stale"]) == (0, 1)
    heartbeat("here", seconds_ago=1)
    response = Client().get("/ready")
    assert response.status_code == 200 and response.json()["workers_alive"] == 1
    assert set(response.json()["checks"].values()) == {"OK"}


def test_ready_needs_no_worker_when_tasks_run_immediately(settings):
    from django.test import Client

    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    response = Client().get("/ready")
    assert response.status_code == 200 and response.json()["ready"] is True


def test_an_email_claimed_by_a_process_that_died_is_sent_once_by_the_next_check(
    moderator, mailoutbox
):
    # As a worker left it: the claim committed (delivery row written), then it was killed.
    EmailDelivery.objects.create(
        kind=EmailDelivery.Kind.REVIEW_DIGEST,
        user=moderator,
        recipient="mod@example.com",
        subject="[moderation] review queue: 1 waiting",
        body="1 upload waits",
    )

    assert send_unsent_emails() == 1
    assert send_unsent_emails() == 0

    assert [m.to for m in mailoutbox] == [["mod@example.com"]]
    assert EmailDelivery.objects.get().sent_at is not None


def test_an_email_sent_again_after_its_commit_was_lost_is_the_same_message(moderator, mailoutbox):
    """SMTP accepted it, then the sender died before marking the row sent: the row is unsent
    again and goes out again. It must be the same message (Message-ID, Date, subject, body),
    which mail systems collapse, not a second summary; another delivery gets its own id."""
    delivery = EmailDelivery.objects.create(
        kind=EmailDelivery.Kind.REVIEW_DIGEST,
        user=moderator,
        recipient="mod@example.com",
        subject="[moderation] review queue: 1 waiting",
        body="1 upload waits",
        created_at=timezone.now() - timedelta(minutes=3),
    )
    assert send_unsent_emails() == 1
    EmailDelivery.objects.filter(pk=delivery.pk).update(sent_at=None)  # the lost commit
    assert send_unsent_emails() == 1
    other = EmailDelivery.objects.create(
        kind=EmailDelivery.Kind.REVIEW_DIGEST, recipient="mod@example.com", subject="s", body="b"
    )
    assert send_unsent_emails() == 1

    first, again, third = (m.message() for m in mailoutbox)
    assert first["Message-ID"] == again["Message-ID"] == delivery.message_id
    assert first.as_bytes() == again.as_bytes()
    assert first["Date"].datetime == delivery.created_at.replace(microsecond=0)
    assert third["Message-ID"] == other.message_id != delivery.message_id


def test_a_claimed_summary_schedules_one_check_for_unsent_emails_a_lease_later(
    moderator, django_user_model, mailoutbox
):
    from moderation import review
    from moderation.models import ReviewItem

    for name in ("m1", "m2"):
        user = django_user_model.objects.create_user(
            username=name, password="pw", is_staff=True, email=f"{name}@example.com"
        )
        user.user_permissions.add(*moderator.user_permissions.all())
        ReviewSubscription.objects.create(user=user)
    ReviewItem.objects.create(
        target_key="profiles.profile.photo",
        object_id=1,
        file_name="photos/x.jpg",
        dhash=1,
        fingerprint=failed_fingerprint(),
        distance=7,
    )

    assert review.notify_review_subscribers() == 2

    [check] = DBTaskResult.objects.filter(task_path="moderation.review.unsent_emails_task")
    assert timedelta(seconds=25) < check.run_after - timezone.now() <= timedelta(seconds=30)
    assert sorted(d.recipient for d in EmailDelivery.objects.filter(sent_at__isnull=False)) == [
        "m1@example.com",
        "m2@example.com",
    ]


def failed_fingerprint():
    from moderation import flagging
    from moderation.models import FlaggedFingerprint
    from tests import images

    return flagging.flag_image(
        file=images.upload(images.photo(982), "b.png", "PNG"),
        reason="bad",
        source=FlaggedFingerprint.Source.COMMAND,
        keep_original=False,
    ).fingerprint
