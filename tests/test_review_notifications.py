"""Review-queue emails (issue 7): moderators opt in; each upload queued mails them."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from moderation import services
from moderation.models import FlaggedFingerprint, ReviewSubscription
from profiles.services import profile_for, profile_set_photo
from tests import images

pytestmark = pytest.mark.django_db

SUBSCRIBE = "admin:moderation_review_subscription"


@pytest.fixture(autouse=True)
def narrow_distances(settings):
    settings.MODERATION_MAX_DISTANCE = 4
    settings.MODERATION_MAX_UNCONFIRMED_DISTANCE = 4
    settings.MODERATION_REVIEW_DISTANCE = 10


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
        services.flag_image(
            file=images.upload(original, "b.png", "PNG"),
            reason="bad",
            source=FlaggedFingerprint.Source.COMMAND,
            keep_original=False,
        )
        near = images.at_distance(original, 7, seed=5)
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
