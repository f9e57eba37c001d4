"""Review-queue emails: moderators opt in; a queued upload mails them a summary of
the queue, at most once per MODERATION_REVIEW_NOTIFY_MINUTES each, even with several processes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from moderation import flagging, review
from moderation.models import FlaggedFingerprint, ReviewItem, ReviewSubscription
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from tests import images

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("narrow_distances")]

SUBSCRIBE = "admin:moderation_review_subscription"


@pytest.fixture
def moderator_client(moderator):
    moderator.email = "mod@example.com"
    moderator.save()
    client = Client()
    client.force_login(moderator)
    return client


@pytest.fixture
def queue_one(user, django_capture_on_commit_callbacks):
    """A callable: store a near miss of a banned scene as alice's photo (queued after commit)."""

    def queue():
        original = images.photo(980)
        flagging.flag_image(
            file=images.upload(original, "b.png", "PNG"),
            reason="bad",
            source=FlaggedFingerprint.Source.COMMAND,
            keep_original=False,
        )
        near = images.near_miss(original)
        with django_capture_on_commit_callbacks(execute=True):
            profile_set_photo(profile=profile_for(user=user), upload=images.upload(near))

    return queue


def test_a_moderator_opts_in_and_out_from_the_queue_page(moderator_client, moderator):
    page = moderator_client.get(reverse("admin:moderation_reviewitem_changelist"))
    assert "Email me when the queue grows" in page.content.decode()

    moderator_client.post(reverse(SUBSCRIBE), {"subscribe": "1"})
    assert ReviewSubscription.objects.filter(user=moderator).exists()
    page = moderator_client.get(reverse("admin:moderation_reviewitem_changelist"))
    assert "Stop these emails" in page.content.decode()

    moderator_client.post(reverse(SUBSCRIBE), {"subscribe": "0"})
    assert not ReviewSubscription.objects.exists()


def test_a_subscribed_moderator_gets_an_email_when_an_upload_is_queued(moderator_client, queue_one):
    moderator_client.post(reverse(SUBSCRIBE), {"subscribe": "1"})

    queue_one()

    [message] = mail.outbox
    assert message.to == ["mod@example.com"]
    assert "1 waiting" in message.subject
    assert "/admin/moderation/reviewitem/" in message.body
    assert "1 upload waits in the review queue; the oldest has waited" in message.body
    assert message.body.count("http://") == 1  # an absolute link (MODERATION_SITE_URL)


def test_nobody_is_mailed_without_opting_in(moderator_client, queue_one):
    queue_one()
    assert mail.outbox == []


def test_a_subscriber_who_lost_the_review_permission_is_not_mailed(
    moderator_client, moderator, queue_one
):
    moderator_client.post(reverse(SUBSCRIBE), {"subscribe": "1"})
    moderator.user_permissions.remove(*moderator.user_permissions.filter(codename="review_upload"))

    queue_one()

    assert mail.outbox == []


def test_opting_in_needs_post_and_the_review_permission(django_user_model):
    staff = django_user_model.objects.create_user(username="s", password="pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.post(reverse(SUBSCRIBE), {"subscribe": "1"}).status_code == 403
    assert not ReviewSubscription.objects.exists()


def test_the_local_default_prints_mail_to_the_console():
    import config.settings as project_settings

    backend = project_settings.MAILERS["default"]["BACKEND"]
    assert backend == "django.core.mail.backends.console.EmailBackend"


# --- the throttle ---------------------------------------------------------------------------


@pytest.fixture
def queue_near_miss(django_user_model, django_capture_on_commit_callbacks):
    """A callable: a new user stores a near miss (distinct per call) of one banned scene; the
    after-commit work (recheck, queueing, emails) runs."""
    original = images.photo(980)
    flagging.flag_image(
        file=images.upload(original, "b.png", "PNG"),
        reason="bad",
        source=FlaggedFingerprint.Source.COMMAND,
        keep_original=False,
    )
    made = {"n": 0}

    def queue():
        made["n"] += 1
        owner = django_user_model.objects.create_user(username=f"up{made['n']}", password="pw")
        near = images.near_miss(original, seed=made["n"] + 4)
        with django_capture_on_commit_callbacks(execute=True):
            profile_set_photo(profile=profile_for(user=owner), upload=images.upload(near))
        assert ReviewItem.objects.pending().count() == made["n"], "not queued"

    return queue


@pytest.fixture
def subscribed(moderator_client):
    moderator_client.post(reverse(SUBSCRIBE), {"subscribe": "1"})
    return ReviewSubscription.objects.get()


def period_ended(subscription) -> None:
    """As if the period had passed since the last email."""
    ReviewSubscription.objects.filter(pk=subscription.pk).update(
        last_notified_at=timezone.now() - timedelta(minutes=61)
    )


def test_a_second_upload_queued_within_the_period_sends_no_second_email(
    subscribed, queue_near_miss
):
    queue_near_miss()
    queue_near_miss()

    assert len(mail.outbox) == 1
    subscribed.refresh_from_db()
    assert subscribed.pending_since is not None  # a summary is owed


def test_after_the_period_the_next_queued_upload_mails_one_summary_of_the_whole_queue(
    subscribed, queue_near_miss
):
    queue_near_miss()
    queue_near_miss()
    ReviewItem.objects.filter(pk=ReviewItem.objects.first().pk).update(
        created_at=timezone.now() - timedelta(hours=3)
    )
    period_ended(subscribed)

    queue_near_miss()

    assert len(mail.outbox) == 2
    summary = mail.outbox[1]
    assert "3 waiting" in summary.subject
    assert "3 uploads wait in the review queue; the oldest has waited 3\xa0hours" in summary.body
    assert "/admin/moderation/reviewitem/?status__exact=pending" in summary.body
    subscribed.refresh_from_db()
    assert subscribed.pending_since is None


def test_the_owed_summary_is_sent_by_the_digest_task_once_the_period_is_over(
    subscribed, queue_near_miss
):
    from moderation.review import review_digest_task

    queue_near_miss()
    queue_near_miss()
    assert review_digest_task.call() == 0  # still inside the period: nothing yet
    period_ended(subscribed)

    assert review_digest_task.call() == 1

    assert len(mail.outbox) == 2 and "2 waiting" in mail.outbox[1].subject
    assert review_digest_task.call() == 0  # owed once, sent once


def test_with_a_worker_backend_the_owed_summary_is_scheduled_for_the_end_of_the_period(
    subscribed, queue_near_miss, settings, django_capture_on_commit_callbacks
):
    from django_tasks_db.models import DBTaskResult

    queue_near_miss()  # mailed at once
    subscribed.refresh_from_db()
    first_mail = subscribed.last_notified_at
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}
    }

    with django_capture_on_commit_callbacks(execute=True):
        review.notify_review_subscribers()  # another upload queued: throttled, owed

    [digest] = DBTaskResult.objects.filter(task_path="moderation.review.review_digest_task")
    assert digest.run_after == first_mail + timedelta(minutes=60)
    assert len(mail.outbox) == 1
    with django_capture_on_commit_callbacks(execute=True):
        review.notify_review_subscribers()  # already owed: no second digest
    assert DBTaskResult.objects.filter(task_path=digest.task_path).count() == 1


def test_zero_minutes_mails_every_queued_upload(subscribed, queue_near_miss, settings):
    settings.MODERATION_REVIEW_NOTIFY_MINUTES = 0
    queue_near_miss()
    queue_near_miss()
    assert [m.subject for m in mail.outbox] == [
        "[moderation] review queue: 1 waiting",
        "[moderation] review queue: 2 waiting",
    ]


def test_each_subscriber_has_their_own_period(
    subscribed, queue_near_miss, django_user_model, moderator
):
    queue_near_miss()
    other = django_user_model.objects.create_user(
        username="mod2", password="pw", is_staff=True, email="mod2@example.com"
    )
    other.user_permissions.add(*moderator.user_permissions.all())
    ReviewSubscription.objects.create(user=other)

    queue_near_miss()

    assert [m.to for m in mail.outbox] == [["mod@example.com"], ["mod2@example.com"]]


def test_a_mail_that_cannot_be_sent_gives_the_period_back(subscribed, queue_near_miss, settings):
    # A real SMTP backend aimed at a port nobody listens on: the send fails.
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": 9, "timeout": 2},
        }
    }
    queue_near_miss()  # the upload still goes through

    subscribed.refresh_from_db()
    assert subscribed.last_notified_at is None and subscribed.pending_since is not None


_NOTIFY = (
    "from moderation import review; "
    "print('SENT', review.notify_review_subscribers())"
)


@pytest.mark.django_db(transaction=True)
def test_several_processes_notifying_at_once_send_one_email(moderator, user):
    import subprocess
    import sys

    from tests.processes import MANAGE, subprocess_env

    moderator.email = "mod@example.com"
    moderator.save()
    ReviewSubscription.objects.create(user=moderator)
    flagged = flagging.flag_image(
        file=images.upload(images.photo(981), "b.png", "PNG"),
        reason="bad",
        source=FlaggedFingerprint.Source.COMMAND,
        keep_original=False,
    ).fingerprint
    ReviewItem.objects.create(
        target_key="profiles.profile.photo",
        object_id=1,
        file_name="photos/x.jpg",
        dhash=flagged.dhash,
        fingerprint=flagged,
        distance=7,
    )
    env = subprocess_env(
        MODERATION_TASKS_BACKEND="immediate",
        DJANGO_EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, str(MANAGE), "shell", "-c", _NOTIFY],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]

    sent = [int(line.split()[1]) for out in outputs for line in out.splitlines()
            if line.startswith("SENT ")]
    assert len(sent) == 4, outputs
    assert sum(sent) == 1, outputs


def test_a_digest_that_runs_before_the_period_ends_schedules_itself_again(
    subscribed, queue_near_miss, settings, django_capture_on_commit_callbacks
):
    from django_tasks_db.models import DBTaskResult

    from moderation.review import review_digest_task

    queue_near_miss()  # mailed at once
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}
    }
    with django_capture_on_commit_callbacks(execute=True):
        review.notify_review_subscribers()  # owed; a digest is scheduled
    with django_capture_on_commit_callbacks(execute=True):
        assert review_digest_task.call() == 0  # ran early (e.g. a clock skew): nothing sent

    digests = DBTaskResult.objects.filter(task_path="moderation.review.review_digest_task")
    assert digests.count() == 2  # ...and it is due again at the end of the period
    assert len(mail.outbox) == 1
