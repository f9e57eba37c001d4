"""Appeals: one short text per notice, from its owner only, rate-limited; a moderator upholds or
overturns it with a reason. An overturn allows the picture for the flag, puts a kept photo back
and counts against the flag; every step is audited and the person is told. Bad input gets a
clear answer and writes nothing."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse

from moderation import appeals
from moderation.models import (
    AllowedMatch,
    Appeal,
    AuditEvent,
    EmailDelivery,
    Notice,
    quarantine_storage,
)
from profiles.models import Profile
from tests import images
from tests.helpers import ban, post_photo

pytestmark = pytest.mark.django_db

SCENE = 1651


@pytest.fixture
def takedown(make_profile, django_capture_on_commit_callbacks):
    """Rosa's photo, taken down by the sweep after a flag of a re-compressed copy."""
    scene = images.photo(SCENE)
    profile = make_profile("rosa", scene)
    profile.user.email = "rosa@example.com"
    profile.user.save(update_fields=["email"])
    with django_capture_on_commit_callbacks(execute=True):
        flagged = ban(images.recompressed(scene, 85))
    profile.refresh_from_db()
    assert not profile.photo
    return profile, flagged, Notice.objects.get(user=profile.user)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def appeal_over_http(client, notice, text):
    return client.post(reverse("notice-detail", args=[notice.pk]), {"text": text})


def audited(action) -> int:
    return AuditEvent.objects.filter(action=action).count()


# --- deciding -------------------------------------------------------------------------------


def test_an_overturn_restores_the_photo_allows_it_for_the_flag_and_audits_every_step(
    takedown, moderator, mailoutbox, django_capture_on_commit_callbacks
):
    profile, flagged, notice = takedown
    with django_capture_on_commit_callbacks(execute=True):
        appeal = appeals.file_appeal(notice=notice, user=profile.user, text="It is my garden.")
        result = appeals.decide_appeal(
            appeal=appeal, actor=moderator, overturn=True, reason="A garden, not the flag."
        )
    assert result.decided and result.overturned and result.restored
    profile.refresh_from_db()
    assert profile.photo and profile.photo_dhash == notice.dhash  # back, and checked again
    assert profile.photo.storage.exists(profile.photo.name)
    allowed = AllowedMatch.objects.get()
    assert (allowed.fingerprint, allowed.dhash, allowed.created_by) == (
        flagged,
        notice.dhash,
        moderator,
    )
    assert [audited(a) for a in ("appeal", "overturn", "restore")] == [1, 1, 1]
    appeal.refresh_from_db()
    assert (appeal.status, appeal.decided_by, appeal.restored) == ("overturned", moderator, True)
    outcome = [m for m in mailoutbox if m.subject == "Your appeal was decided"]
    assert len(outcome) == 1 and "A garden, not the flag." in outcome[0].body
    assert Appeal.objects.outcomes_by_flag() == {flagged.pk: {"upheld": 0, "overturned": 1}}


def test_an_upheld_appeal_leaves_the_photo_down_and_tells_the_reason(
    takedown, moderator, mailoutbox
):
    profile, flagged, notice = takedown
    appeal = appeals.file_appeal(notice=notice, user=profile.user, text="Please look again.")
    result = appeals.decide_appeal(
        appeal=appeal, actor=moderator, overturn=False, reason="It is the banned picture."
    )
    assert result.decided and not result.overturned
    profile.refresh_from_db()
    assert not profile.photo
    assert not AllowedMatch.objects.exists()
    assert audited("uphold") == 1
    page = client_for(profile.user).get(reverse("notice-detail", args=[notice.pk]))
    assert "It is the banned picture." in page.content.decode()
    assert Appeal.objects.outcomes_by_flag() == {flagged.pk: {"upheld": 1, "overturned": 0}}


def test_a_decision_needs_a_reason_and_is_taken_once(takedown, moderator):
    profile, flagged, notice = takedown
    appeal = appeals.file_appeal(notice=notice, user=profile.user, text="Mine.")
    with pytest.raises(ValidationError):
        appeals.decide_appeal(appeal=appeal, actor=moderator, overturn=True, reason="  ")
    appeal.refresh_from_db()
    assert appeal.status == Appeal.Status.OPEN
    assert appeals.decide_appeal(
        appeal=appeal, actor=moderator, overturn=False, reason="No"
    ).decided
    again = appeals.decide_appeal(appeal=appeal, actor=moderator, overturn=True, reason="Yes")
    assert not again.decided
    appeal.refresh_from_db()
    assert appeal.status == Appeal.Status.UPHELD and not AllowedMatch.objects.exists()


def test_an_overturn_does_not_replace_a_photo_uploaded_since(takedown, moderator):
    profile, flagged, notice = takedown
    newer = images.photo(1652)
    response = post_photo(client_for(profile.user), newer)
    assert response.status_code == 302
    profile.refresh_from_db()
    newer_name = profile.photo.name
    appeal = appeals.file_appeal(notice=notice, user=profile.user, text="Mine.")
    result = appeals.decide_appeal(appeal=appeal, actor=moderator, overturn=True, reason="Ok")
    assert result.overturned and not result.restored
    profile.refresh_from_db()
    assert profile.photo.name == newer_name
    assert AllowedMatch.objects.count() == 1


def test_an_overturn_after_the_purge_allows_the_picture_to_be_uploaded_again(
    takedown, moderator, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from moderation import notices

    profile, flagged, notice = takedown
    settings.MODERATION_TAKEDOWN_KEEP_DAYS = 1
    assert notices.purge_kept_takedowns(now=timezone.now() + timedelta(days=2)) == 1
    notice.refresh_from_db()
    appeal = appeals.file_appeal(notice=notice, user=profile.user, text="Mine.")
    result = appeals.decide_appeal(appeal=appeal, actor=moderator, overturn=True, reason="Ok")
    assert result.overturned and not result.restored
    response = post_photo(client_for(profile.user), images.photo(SCENE), fmt="PNG")
    assert response.status_code == 302  # the same picture is accepted now
    assert Profile.objects.get(pk=profile.pk).photo


def test_an_overturned_refusal_lets_the_same_file_through(client, user, moderator):
    scene = images.photo(1653)
    flagged = ban(scene)
    client.force_login(user)
    assert post_photo(client, scene).status_code == 200  # refused
    notice = Notice.objects.get(kind=Notice.Kind.REFUSAL)
    appeal = appeals.file_appeal(notice=notice, user=user, text="My own photo.")
    result = appeals.decide_appeal(appeal=appeal, actor=moderator, overturn=True, reason="Ok")
    assert result.overturned and not result.restored
    assert AllowedMatch.objects.get().fingerprint == flagged
    assert post_photo(client, scene).status_code == 302
    assert Profile.objects.get(user=user).photo


# --- bad input over HTTP --------------------------------------------------------------------


def test_an_appeal_on_someone_elses_notice_is_not_found_and_writes_nothing(
    takedown, django_user_model
):
    profile, flagged, notice = takedown
    stranger = django_user_model.objects.create_user(username="sam", password="pw-sam")
    client = client_for(stranger)
    assert client.get(reverse("notice-detail", args=[notice.pk])).status_code == 404
    assert appeal_over_http(client, notice, "Let me appeal for her.").status_code == 404
    assert not Appeal.objects.exists() and audited("appeal") == 0
    with pytest.raises(PermissionDenied):
        appeals.file_appeal(notice=notice, user=stranger, text="Via the service.")
    assert not Appeal.objects.exists()


def test_a_second_appeal_is_refused_with_a_clear_answer(takedown):
    profile, flagged, notice = takedown
    client = client_for(profile.user)
    first = appeal_over_http(client, notice, "It is my garden.")
    assert first.status_code == 302
    second = appeal_over_http(client, notice, "Really, my garden!")
    assert second.status_code == 409
    assert "You have already appealed this decision." in second.content.decode()
    assert Appeal.objects.get().text == "It is my garden."
    assert audited("appeal") == 1
    with pytest.raises(ValidationError) as info:
        appeals.file_appeal(notice=notice, user=profile.user, text="Through the service.")
    assert info.value.code == "already_appealed"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "Say in a few words why the decision is wrong."),
        ("   \n  ", "Say in a few words why the decision is wrong."),
        ("x" * 50_000, "An appeal is at most 2000 characters (this one has 50000)."),
    ],
    ids=["empty", "blank", "50 kB"],
)
def test_an_empty_or_huge_text_is_refused_and_writes_nothing(takedown, text, says):
    profile, flagged, notice = takedown
    response = appeal_over_http(client_for(profile.user), notice, text)
    assert response.status_code == 400
    assert says in response.content.decode()
    assert not Appeal.objects.exists() and audited("appeal") == 0
    with pytest.raises(ValidationError):
        appeals.file_appeal(notice=notice, user=profile.user, text=text)
    assert not Appeal.objects.exists()


def test_appeals_are_rate_limited_per_person(client, user, settings):
    settings.MODERATION_APPEAL_RATE_PER_USER = 2
    client.force_login(user)
    for seed in (1661, 1662, 1663):
        scene = images.photo(seed)
        ban(scene)
        assert post_photo(client, scene).status_code == 200  # refused: a notice each
    refusals = list(Notice.objects.filter(user=user).order_by("pk"))
    assert len(refusals) == 3
    assert appeal_over_http(client, refusals[0], "One.").status_code == 302
    assert appeal_over_http(client, refusals[1], "Two.").status_code == 302
    third = appeal_over_http(client, refusals[2], "Three.")
    assert third.status_code == 429
    assert "Too many appeals" in third.content.decode()
    assert Appeal.objects.count() == 2 and audited("appeal") == 2


def test_an_appeal_needs_a_signed_in_person(takedown):
    profile, flagged, notice = takedown
    response = Client().post(reverse("notice-detail", args=[notice.pk]), {"text": "Mine."})
    assert response.status_code == 302 and reverse("login") in response["Location"]
    assert not Appeal.objects.exists()


# --- the moderator's page -------------------------------------------------------------------


def test_the_appeal_page_shows_the_kept_photo_beside_the_flags_original(takedown, moderator):
    profile, flagged, notice = takedown
    appeal = appeals.file_appeal(notice=notice, user=profile.user, text="It is my garden.")
    client = client_for(moderator)
    page = client.get(reverse("admin:moderation_appeal_change", args=[appeal.pk]))
    html = page.content.decode()
    photo = reverse("moderation:quarantined-file", args=[notice.kept_file])
    original = reverse("moderation:quarantined-file", args=[flagged.original.name])
    assert photo in html and original in html and "It is my garden." in html
    assert client.get(photo).status_code == 200  # the kept copy is served to moderators
    listed = client.get(reverse("admin:moderation_appeal_changelist")).content.decode()
    assert "rosa" in listed


def test_overturning_without_a_reason_in_the_admin_changes_nothing(takedown, moderator):
    profile, flagged, notice = takedown
    appeal = appeals.file_appeal(notice=notice, user=profile.user, text="Mine.")
    client = client_for(moderator)
    url = reverse("admin:moderation_appeal_change", args=[appeal.pk])
    response = client.post(url, {"decision": "overturn", "reason": ""}, follow=True)
    assert "Give a reason" in response.content.decode()
    appeal.refresh_from_db()
    assert appeal.status == Appeal.Status.OPEN and not AllowedMatch.objects.exists()
    client.post(url, {"decision": "overturn", "reason": "A garden."})
    appeal.refresh_from_db()
    assert appeal.status == Appeal.Status.OVERTURNED
    assert quarantine_storage().exists(notice.kept_file)  # kept for the record until the purge
    assert EmailDelivery.objects.filter(kind=EmailDelivery.Kind.APPEAL_OUTCOME).count() == 1


def test_a_moderator_without_the_review_permission_cannot_decide(takedown, django_user_model):
    from django.contrib.auth.models import Permission

    profile, flagged, notice = takedown
    appeal = appeals.file_appeal(notice=notice, user=profile.user, text="Mine.")
    viewer = django_user_model.objects.create_user(username="vic", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_appeal"))
    url = reverse("admin:moderation_appeal_change", args=[appeal.pk])
    client = client_for(viewer)
    assert client.get(url).status_code == 200
    assert client.post(url, {"decision": "overturn", "reason": "x"}).status_code == 403
    appeal.refresh_from_db()
    assert appeal.status == Appeal.Status.OPEN


def test_deleting_a_person_who_appealed_deletes_their_notices_and_appeals(takedown):
    profile, flagged, notice = takedown
    appeals.file_appeal(notice=notice, user=profile.user, text="Mine.")
    profile.user.delete()
    assert not Notice.objects.exists() and not Appeal.objects.exists()
    assert audited("appeal") == 1  # the audit trail keeps the record
