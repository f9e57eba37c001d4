"""Probers: an account (or an IP) whose uploads keep landing near banned images within the
window is escalated; its attempts are shown side by side, its accepted uploads are held for
review and kept off public pages, and the user sees nothing new."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from moderation import desk, probing
from moderation.models import (
    AllowedMatch,
    AuditEvent,
    ProberEscalation,
    RefusedUpload,
    ReviewItem,
)
from profiles.models import Profile
from tests import images
from tests.helpers import ban, moderator_client, post_photo, without_nonces

pytestmark = pytest.mark.django_db

GENERIC = "This image can&#x27;t be used as a profile photo."
ATTEMPTS = 3


@pytest.fixture(autouse=True)
def prober_settings(settings):
    settings.MODERATION_PROBER_ATTEMPTS = ATTEMPTS
    settings.MODERATION_PROBER_WINDOW_MINUTES = 60


@pytest.fixture
def banned():
    original = images.photo(990)
    return ban(original), original


def probe(upload, original, n: int) -> list:
    """``n`` edited copies of the banned picture, uploaded one after the other."""
    return [upload(images.brightened(original, 1.0 + 0.03 * i)) for i in range(n)]


def test_an_account_refused_n_times_is_escalated_and_sees_only_the_generic_message(
    upload, user, banned
):
    flagged, original = banned
    responses = probe(upload, original, ATTEMPTS)

    assert [r.status_code for r in responses] == [200] * ATTEMPTS
    first, last = (without_nonces(r.content.decode()) for r in (responses[0], responses[-1]))
    assert GENERIC in first and GENERIC in last
    # Nothing on the page tells the prober they were noticed or how near they came.
    for word in ("escalat", "held", "review", flagged.hex):
        assert word not in last.lower()
    escalation = ProberEscalation.objects.get()
    assert (escalation.user, escalation.fingerprint, escalation.attempts) == (
        user,
        flagged,
        ATTEMPTS,
    )
    assert escalation.status == ProberEscalation.Status.OPEN
    assert AuditEvent.objects.filter(action=AuditEvent.Action.ESCALATE).count() == 1


def test_fewer_attempts_than_the_setting_escalate_nobody(upload, banned):
    probe(upload, banned[1], ATTEMPTS - 1)
    assert not ProberEscalation.objects.exists()


def test_attempts_older_than_the_window_do_not_count(upload, banned):
    probe(upload, banned[1], ATTEMPTS - 1)
    RefusedUpload.objects.update(created_at=timezone.now() - timedelta(minutes=61))
    probe(upload, banned[1], 1)
    assert not ProberEscalation.objects.exists()


def test_a_setting_of_zero_escalates_nobody(settings, upload, banned):
    settings.MODERATION_PROBER_ATTEMPTS = 0
    probe(upload, banned[1], ATTEMPTS + 1)
    assert not ProberEscalation.objects.exists()


@pytest.mark.usefixtures("narrow_distances")
def test_near_misses_accepted_and_queued_count_as_attempts(upload, user):
    original = images.photo(991)
    ban(original)
    for i in range(ATTEMPTS):
        response = upload(images.near_miss(original, seed=10 + i))
        assert response.status_code == 302  # accepted, queued for review
    assert ReviewItem.objects.filter(found_by=ReviewItem.FoundBy.UPLOAD).count() == ATTEMPTS
    assert ProberEscalation.objects.get().user == user


def test_an_escalated_accounts_next_upload_is_held_and_not_shown_until_released(
    upload, user, banned, client, moderator
):
    probe(upload, banned[1], ATTEMPTS)
    innocent = images.photo(992)

    assert upload(innocent).status_code == 302  # saved, as for anyone
    profile = Profile.objects.get(user=user)
    item = ReviewItem.objects.get(found_by=ReviewItem.FoundBy.HELD)
    assert (item.object_id, item.file_name, item.status) == (
        profile.pk,
        profile.photo.name,
        "pending",
    )
    assert probing.is_held(profile)
    page = client.get(reverse("profile-detail", args=[user.username])).content.decode()
    assert profile.photo.url not in page
    assert profile.photo.url not in client.get(reverse("home")).content.decode()

    # Released by a moderator: shown, and nothing is allowlisted for the flag it was filed under.
    assert desk.review_dismiss(item=item, actor=moderator)
    assert not AllowedMatch.objects.exists()
    assert profile.photo.url in client.get(reverse("home")).content.decode()
    page = client.get(reverse("profile-detail", args=[user.username])).content.decode()
    assert profile.photo.url in page


def test_an_ip_with_n_refusals_from_different_accounts_is_escalated_and_holds_them(
    client, django_user_model, banned, django_capture_on_commit_callbacks
):
    _, original = banned
    accounts = []
    for i in range(ATTEMPTS):
        account = django_user_model.objects.create_user(username=f"sock{i}", password="pw-sock-1")
        accounts.append(account)
        client.force_login(account)
        assert post_photo(client, images.brightened(original, 1.1 + i / 50)).status_code == 200
    escalation = ProberEscalation.objects.get(ip="127.0.0.1")
    assert escalation.user is None and escalation.attempts == ATTEMPTS

    client.force_login(accounts[0])
    with django_capture_on_commit_callbacks(execute=True):
        assert post_photo(client, images.photo(993)).status_code == 302
    assert ReviewItem.objects.get(found_by=ReviewItem.FoundBy.HELD).uploader == accounts[0]


def test_the_escalation_page_shows_the_attempts_side_by_side_and_closes(
    upload, user, banned, moderator
):
    flagged, original = banned
    probe(upload, original, ATTEMPTS)
    escalation = ProberEscalation.objects.get()
    mod = moderator_client(moderator)
    url = reverse("admin:moderation_proberescalation_change", args=[escalation.pk])

    page = mod.get(url).content.decode()
    assert page.count('class="attempt"') == ATTEMPTS
    # Each refusal as its kept thumbnail, blurred (nothing was stored).
    kept = RefusedUpload.objects.filter(thumbnail__isnull=False)
    assert kept.count() == ATTEMPTS
    for refusal in kept:
        url_of = reverse("moderation:refusal-thumbnail", args=[refusal.pk])
        assert f'<img class="mod-img mod-size-160" src="{url_of}"' in page
    assert flagged.hex in page
    assert 'class="mod-img' in page  # the banned original, blurred until clicked
    dashboard = mod.get(reverse("admin:moderation_dashboard")).content.decode()
    assert url in dashboard

    response = mod.post(url)
    assert response.status_code == 302
    escalation.refresh_from_db()
    assert escalation.status == ProberEscalation.Status.CLOSED
    assert escalation.closed_by == moderator
    assert probing.escalation_for(user.pk) is None
