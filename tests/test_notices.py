"""Statements of reasons: a person whose photo is taken down or refused is told what happened,
on what ground (the list's public description, never which image or how close), when, and how
to appeal; on their profile page, and once by email if they confirmed an address. Taken-down
photos are kept privately for the keep period, then purged."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from moderation import appeals, notices, review
from moderation.models import (
    AuditEvent,
    EmailDelivery,
    FlaggedFingerprint,
    HashList,
    Notice,
    RefusedUpload,
    quarantine_storage,
)
from profiles.models import Profile
from tests import images
from tests.helpers import ban, post_photo, without_nonces

pytestmark = pytest.mark.django_db


@pytest.fixture
def taken_down(make_profile, django_capture_on_commit_callbacks):
    """Nina's photo, taken down by the sweep after a flag of the same picture in a list with a
    public description; returns (profile, flag, notice)."""

    def make(email: str = ""):
        scene = images.photo(1601)
        profile = make_profile("nina", scene)
        if email:
            profile.user.email = email
            profile.user.save(update_fields=["email"])
        default = HashList.objects.get_or_create(name="default")[0]
        default.public_description = "Sexual content"
        default.save(update_fields=["public_description"])
        with django_capture_on_commit_callbacks(execute=True):
            flagged = ban(images.recompressed(scene, 85), reason="staff-only reason 7f3a")
        profile.refresh_from_db()
        assert not profile.photo, "the sweep did not take the photo down"
        return profile, flagged, Notice.objects.get(user=profile.user)

    return make


def test_a_takedown_by_a_sweep_writes_a_notice_with_the_lists_public_description(taken_down):
    profile, flagged, notice = taken_down()
    assert notice.kind == Notice.Kind.TAKEDOWN
    assert notice.ground == "Sexual content"
    assert notice.fingerprint == flagged
    assert notice.takedown.action == AuditEvent.Action.TAKEDOWN
    assert notice.kept_file and quarantine_storage().exists(notice.kept_file)


def test_the_profile_page_shows_the_notice_and_nothing_about_the_match(client, taken_down):
    profile, flagged, notice = taken_down()
    client.force_login(profile.user)
    page = client.get(reverse("profile-edit")).content.decode()
    assert "Photo taken down" in page and "Sexual content" in page
    assert reverse("notice-detail", args=[notice.pk]) in page
    detail = client.get(reverse("notice-detail", args=[notice.pk])).content.decode()
    for secret in (flagged.hex, "staff-only reason 7f3a", notice.kept_file, "distance"):
        assert secret not in page and secret not in detail, secret
    assert "Sexual content" in detail and "Send appeal" in detail


def test_a_list_without_a_public_description_gives_the_generic_ground(
    make_profile, django_capture_on_commit_callbacks
):
    scene = images.photo(1602)
    make_profile("omar", scene)
    with django_capture_on_commit_callbacks(execute=True):
        ban(scene)
    assert Notice.objects.get().ground == notices.GENERIC_GROUND


def test_a_moderators_flag_of_the_photo_itself_writes_a_notice_too(make_profile, moderator):
    from moderation.flagging import flag_stored_image

    profile = make_profile("pia", images.photo(1603))
    result = flag_stored_image(instance=profile, reason="seen by a moderator", actor=moderator)
    notice = Notice.objects.get(user=profile.user)
    assert notice.fingerprint == result.fingerprint
    assert notice.kept_file == result.fingerprint.original.name


def test_the_notice_is_emailed_once_to_a_confirmed_address(taken_down, mailoutbox):
    profile, flagged, notice = taken_down(email="nina@example.com")
    assert [m.to for m in mailoutbox] == [["nina@example.com"]]
    body = mailoutbox[0].body
    assert "Sexual content" in body and reverse("notice-detail", args=[notice.pk]) in body
    assert flagged.hex not in body and "staff-only reason 7f3a" not in body
    delivery = EmailDelivery.objects.get(kind=EmailDelivery.Kind.NOTICE)
    assert delivery.sent_at is not None
    assert review.send_unsent_emails() == 0  # a second sender finds nothing owed
    assert len(mailoutbox) == 1


def test_no_email_is_owed_without_an_address(taken_down, mailoutbox):
    taken_down()
    assert mailoutbox == []
    assert not EmailDelivery.objects.exists()


# --- refusals -----------------------------------------------------------------------------


def test_a_refused_upload_links_to_a_notice_that_names_no_list(client, user, settings):
    scene = images.photo(1604)
    default = HashList.objects.get_or_create(name="default")[0]
    default.public_description = "List name a prober would like to know"
    default.save(update_fields=["public_description"])
    ban(scene)
    client.force_login(user)
    response = post_photo(client, scene)
    page = response.content.decode()
    assert "This image can&#x27;t be used as a profile photo." in page
    notice = Notice.objects.get(user=user)
    assert notice.kind == Notice.Kind.REFUSAL and notice.kept_file == ""
    assert notice.refused_upload == RefusedUpload.objects.get()
    assert reverse("notice-detail", args=[notice.pk]) in page
    detail = client.get(reverse("notice-detail", args=[notice.pk])).content.decode()
    assert notices.REFUSAL_GROUND in detail
    assert "prober" not in without_nonces(detail) and "prober" not in without_nonces(page)


def test_a_file_refused_as_damaged_gets_no_notice(client, user):
    client.force_login(user)
    post_photo(client, b"\xff\xd8\xff not really a jpeg")
    assert RefusedUpload.objects.get().code != "banned_image"
    assert not Notice.objects.exists()


# --- keeping and purging --------------------------------------------------------------------


def test_a_kept_copy_is_purged_after_the_keep_period_and_a_second_run_does_nothing(
    taken_down, settings
):
    settings.MODERATION_TAKEDOWN_KEEP_DAYS = 30
    profile, flagged, notice = taken_down()
    assert notices.purge_kept_takedowns(now=timezone.now() + timedelta(days=29)) == 0
    later = timezone.now() + timedelta(days=31)
    assert notices.purge_kept_takedowns(now=later) == 1
    assert not quarantine_storage().exists(notice.kept_file)
    notice.refresh_from_db()
    assert notice.purged_at == later
    assert AuditEvent.objects.filter(action=AuditEvent.Action.PURGE).count() == 1
    assert notices.purge_kept_takedowns(now=later) == 0
    assert AuditEvent.objects.filter(action=AuditEvent.Action.PURGE).count() == 1


def test_an_open_appeal_keeps_the_copy_past_the_keep_period(taken_down, settings):
    settings.MODERATION_TAKEDOWN_KEEP_DAYS = 30
    profile, flagged, notice = taken_down()
    appeals.file_appeal(notice=notice, user=profile.user, text="That is me at the lake.")
    assert notices.purge_kept_takedowns(now=timezone.now() + timedelta(days=60)) == 0
    assert quarantine_storage().exists(notice.kept_file)


def test_a_flags_own_original_is_never_purged(make_profile, moderator, settings):
    from moderation.flagging import flag_stored_image

    settings.MODERATION_TAKEDOWN_KEEP_DAYS = 1
    profile = make_profile("pia", images.photo(1605))
    flag_stored_image(instance=profile, reason="seen", actor=moderator)
    notice = Notice.objects.get()
    assert notices.purge_kept_takedowns(now=timezone.now() + timedelta(days=2)) == 1
    assert quarantine_storage().exists(notice.kept_file)  # the flag still needs it
    assert FlaggedFingerprint.objects.get().original.name == notice.kept_file


def test_the_purge_command_says_how_many_it_purged(taken_down, settings):
    from tests.helpers import run_command

    settings.MODERATION_TAKEDOWN_KEEP_DAYS = 1
    taken_down()
    Notice.objects.update(created_at=timezone.now() - timedelta(days=2))
    assert "1 kept copy is due" in run_command("purge_kept_takedowns", dry_run=True)
    assert "Purged 1 kept copy." in run_command("purge_kept_takedowns")
    assert "Purged 0 kept copies." in run_command("purge_kept_takedowns")


# --- the address notices go to ------------------------------------------------------------


def _signup(client, **extra):
    return client.post(
        reverse("signup"),
        {
            "username": "quinn",
            "password1": "a-long-pass-42",
            "password2": "a-long-pass-42",
            **extra,
        },
    )


def test_an_address_given_at_sign_up_is_used_only_once_its_link_is_followed(
    client, django_user_model
):
    assert _signup(client, email="quinn@example.com").status_code == 302
    user = django_user_model.objects.get(username="quinn")
    assert user.email == ""  # not confirmed yet: no notice would go there
    assert [m.to for m in mail.outbox] == [["quinn@example.com"]]
    link = re.search(r"http\S+/verify-email/\S+/", mail.outbox[0].body).group(0)
    path = link.split("://", 1)[1].split("/", 1)[1]
    client.get("/" + path)
    user.refresh_from_db()
    assert user.email == "quinn@example.com"


def test_an_altered_verification_link_changes_nothing(client, django_user_model):
    _signup(client, email="quinn@example.com")
    link = re.search(r"/verify-email/(\S+)/", mail.outbox[0].body).group(1)
    response = client.get(reverse("verify-email", args=[link[:-2] + "xx"]), follow=True)
    assert "not valid or has expired" in response.content.decode()
    assert django_user_model.objects.get(username="quinn").email == ""


def test_sign_up_without_an_address_sends_nothing(client, django_user_model):
    assert _signup(client).status_code == 302
    assert mail.outbox == []
    assert Profile.objects.filter(user__username="quinn").exists()


def test_with_a_worker_backend_one_purge_waits_in_the_queue_and_each_run_queues_the_next(
    make_profile, settings, moderator
):
    from django_tasks_db.models import DBTaskResult

    from moderation import sweeping
    from tests.helpers import flag_file

    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}
    }
    settings.MODERATION_TAKEDOWN_KEEP_DAYS = 10
    path = notices.purge_kept_takedowns_task.module_path
    flagged = flag_file(images.photo(1620), actor=moderator).fingerprint
    for i, name in enumerate(["ann", "ben", "cy"]):
        profile = make_profile(name, images.photo(1621 + i))
        assert sweeping.take_down_image(instance=profile, flagged=flagged, distance=0)
    queued = DBTaskResult.objects.filter(task_path=path, status="READY")
    assert queued.count() == 1  # not one per takedown
    first = Notice.objects.order_by("created_at").first()
    assert queued.get().run_after == first.created_at + timedelta(days=10)

    # The first copy is due (the others a day later): a run purges it and queues the next.
    Notice.objects.filter(pk=first.pk).update(created_at=first.created_at - timedelta(days=11))
    Notice.objects.exclude(pk=first.pk).update(created_at=timezone.now() - timedelta(days=9))
    queued.delete()  # as the worker does when it claims the run
    assert notices.purge_kept_takedowns_task.call() == 1
    [next_run] = DBTaskResult.objects.filter(task_path=path, status="READY")
    second = Notice.objects.filter(purged_at__isnull=True).order_by("created_at").first()
    assert next_run.run_after == second.created_at + timedelta(days=10)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_transactions_scheduling_a_purge_at_once_queue_one_run(settings):
    """Two refusals on two servers, each in its own transaction, both find the queue empty:
    the second waits for the first's commit (an advisory lock on the task) and then sees its
    run, so one purge waits in the queue, not two."""
    import threading

    from django.db import connection, transaction
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}
    }
    when = timezone.now() + timedelta(days=30)
    first_has_looked = threading.Event()
    second_is_waiting = threading.Event()
    queued: dict[str, bool] = {}

    def first():
        try:
            with transaction.atomic():
                queued["first"] = notices.background.enqueue_unless_queued_by(
                    notices.purge_kept_takedowns_task, when
                )
                first_has_looked.set()
                # Hold the transaction open until the second has started to look.
                second_is_waiting.wait(timeout=10)
                threading.Event().wait(0.3)
        finally:
            connection.close()

    def second():
        try:
            first_has_looked.wait(timeout=10)
            with transaction.atomic():
                second_is_waiting.set()
                queued["second"] = notices.background.enqueue_unless_queued_by(
                    notices.purge_kept_takedowns_task, when + timedelta(hours=1)
                )
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert queued == {"first": True, "second": False}
    path = notices.purge_kept_takedowns_task.module_path
    assert DBTaskResult.objects.filter(task_path=path, status="READY").count() == 1


@pytest.mark.django_db
def test_a_purge_scheduled_a_moment_earlier_than_the_waiting_run_shares_it(settings):
    """Two refusals a moment apart compute their purge times a moment apart, and the later
    may take the lock first: the earlier one still finds the waiting run, a moment late is
    nothing against a keep period of days."""
    from django.db import transaction
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}
    }
    when = timezone.now() + timedelta(days=30)
    with transaction.atomic():
        notices.schedule_purge(when)
    with transaction.atomic():
        notices.schedule_purge(when - timedelta(seconds=1))

    path = notices.purge_kept_takedowns_task.module_path
    assert DBTaskResult.objects.filter(task_path=path, status="READY").count() == 1
