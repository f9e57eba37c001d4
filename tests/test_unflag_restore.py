"""Unflagging and putting back what the flag took down: an explicit choice on the unflag page.
Only photos still kept, on a profile with no newer photo, and that no other active flag or
hash list matches go back; each is audited and its owner told. Without the choice, or for a
flag still active, nothing comes back."""

from __future__ import annotations

import hashlib

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from moderation import flagging, signal_lists
from moderation.models import AuditEvent, HashList, Notice, quarantine_storage
from tests import images
from tests.admin_pages import FINGERPRINTS
from tests.helpers import ban, post_photo

pytestmark = pytest.mark.django_db

SCENE = 2301


@pytest.fixture
def taken_down(make_profile, django_capture_on_commit_callbacks):
    """Rosa's photo, taken down by the sweep after a flag of a re-compressed copy; she has a
    confirmed address. Returns (profile, flag, notice)."""
    profile = make_profile("rosa", images.photo(SCENE))
    profile.user.email = "rosa@example.com"
    profile.user.save(update_fields=["email"])
    with django_capture_on_commit_callbacks(execute=True):
        flagged = ban(images.recompressed(images.photo(SCENE), 85))
    profile.refresh_from_db()
    assert not profile.photo
    mail.outbox.clear()
    return profile, flagged, Notice.objects.get(user=profile.user)


def unflag_over_http(client, flagged, *, restore: bool, reason: str = "not the bad image"):
    data = {
        "action": "unflag_selected",
        ACTION_CHECKBOX_NAME: [flagged.pk],
        "confirm": "yes",
        "reason": reason,
    }
    if restore:
        data["restore_photos"] = "on"
    return client.post(reverse(FINGERPRINTS), data, follow=True)


def test_unflagging_with_the_restore_choice_puts_the_photo_back_audits_it_and_tells_the_owner(
    taken_down, moderator_client, moderator, django_capture_on_commit_callbacks
):
    profile, flagged, notice = taken_down
    with django_capture_on_commit_callbacks(execute=True):
        response = unflag_over_http(moderator_client, flagged, restore=True)
    assert "Put back 1 photo" in response.content.decode()
    profile.refresh_from_db()
    assert profile.photo and profile.photo.storage.exists(profile.photo.name)
    assert profile.photo_dhash == notice.dhash  # fingerprinted again
    notice.refresh_from_db()
    assert notice.restored_at is not None
    restore = AuditEvent.objects.get(action=AuditEvent.Action.RESTORE)
    assert (restore.actor, restore.fingerprint) == (moderator, flagged)
    assert flagged.hex in restore.reason
    assert AuditEvent.objects.filter(action=AuditEvent.Action.UNFLAG).count() == 1
    told = [m for m in mail.outbox if m.subject == "Your profile photo is back"]
    assert [m.to for m in told] == [["rosa@example.com"]]


def test_unflagging_without_the_choice_leaves_the_photo_down(
    taken_down, moderator_client, django_capture_on_commit_callbacks
):
    profile, flagged, notice = taken_down
    with django_capture_on_commit_callbacks(execute=True):
        unflag_over_http(moderator_client, flagged, restore=False)
    flagged.refresh_from_db()
    profile.refresh_from_db()
    assert not flagged.active and not profile.photo
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.RESTORE).exists()
    assert mail.outbox == []


def test_the_confirmation_page_offers_the_choice_with_the_count_of_kept_photos(
    taken_down, moderator_client
):
    profile, flagged, notice = taken_down
    page = moderator_client.post(
        reverse(FINGERPRINTS), {"action": "unflag_selected", ACTION_CHECKBOX_NAME: [flagged.pk]}
    ).content.decode()
    assert "1 photo these flags took down is still kept privately." in page
    assert 'name="restore_photos"' in page
    assert 'checked' not in page.split('name="restore_photos"')[0].rsplit("<input", 1)[1]


def test_a_flag_still_active_restores_nothing(taken_down, moderator):
    profile, flagged, notice = taken_down
    assert flagging.restore_takedowns(flagged=flagged, actor=moderator).restored == 0
    profile.refresh_from_db()
    assert not profile.photo


def test_a_photo_another_active_flag_matches_stays_down(
    taken_down, moderator, django_capture_on_commit_callbacks
):
    profile, flagged, notice = taken_down
    with django_capture_on_commit_callbacks(execute=True):
        other = ban(images.resized(images.photo(SCENE), 0.5), reason="the same picture again")
    assert other.pk != flagged.pk
    # The first flag's own dHash row would be reused by a re-flag, so the second must differ.
    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="duplicate")
    result = flagging.restore_takedowns(flagged=flagged, actor=moderator)
    assert (result.restored, result.still_matched) == (0, 1)
    profile.refresh_from_db()
    notice.refresh_from_db()
    assert not profile.photo and notice.restored_at is None


def test_a_photo_a_hash_list_entry_matches_stays_down(taken_down, moderator):
    profile, flagged, notice = taken_down
    with quarantine_storage().open(notice.kept_file, "rb") as fh:
        sha256 = hashlib.sha256(fh.read()).hexdigest()
    partner, _ = HashList.objects.get_or_create(
        name="partner", defaults={"mode": HashList.Mode.ENFORCE}
    )
    signal_lists.entry_add(hash_list=partner, signal_type="sha256", value=sha256)
    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="wrong")
    result = flagging.restore_takedowns(flagged=flagged, actor=moderator)
    assert (result.restored, result.still_matched) == (0, 1)
    profile.refresh_from_db()
    assert not profile.photo


def test_a_newer_photo_on_the_profile_is_kept(taken_down, moderator, client):
    profile, flagged, notice = taken_down
    client.force_login(profile.user)
    assert post_photo(client, images.photo(SCENE + 1)).status_code == 302
    profile.refresh_from_db()
    newer = profile.photo.name
    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="wrong")
    result = flagging.restore_takedowns(flagged=flagged, actor=moderator)
    assert (result.restored, result.skipped) == (0, 1)
    profile.refresh_from_db()
    assert profile.photo.name == newer


def test_a_purged_copy_cannot_be_put_back(taken_down, moderator):
    profile, flagged, notice = taken_down
    Notice.objects.filter(pk=notice.pk).update(purged_at=timezone.now())
    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="wrong")
    result = flagging.restore_takedowns(flagged=flagged, actor=moderator)
    assert result == flagging.RestoredTakedowns()  # not even counted: nothing is kept
    profile.refresh_from_db()
    assert not profile.photo


def test_a_photo_is_put_back_once_even_when_asked_twice(taken_down, moderator):
    profile, flagged, notice = taken_down
    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="wrong")
    assert flagging.restore_takedowns(flagged=flagged, actor=moderator).restored == 1
    assert flagging.restore_takedowns(flagged=flagged, actor=moderator).restored == 0
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RESTORE).count() == 1


def test_the_owner_sees_on_the_notice_that_the_photo_is_back(taken_down, moderator, client):
    profile, flagged, notice = taken_down
    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="wrong")
    flagging.restore_takedowns(flagged=flagged, actor=moderator)
    client.force_login(profile.user)
    page = client.get(reverse("notice-detail", args=[notice.pk])).content.decode()
    assert "Your photo was put back on your profile" in page


def test_an_unflag_without_a_reason_restores_nothing(taken_down, moderator_client):
    profile, flagged, notice = taken_down
    response = unflag_over_http(moderator_client, flagged, restore=True, reason="")
    assert response.status_code == 200
    flagged.refresh_from_db()
    profile.refresh_from_db()
    assert flagged.active and not profile.photo
