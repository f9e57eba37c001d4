"""The "Flag selected photos" admin action: a confirmation page, then the photo banned, taken
down, kept in quarantine and audited, with the sweep that follows; the banned set sees it."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from moderation import banned_set
from moderation.hashing import Fingerprint
from moderation.models import AuditEvent, FlaggedFingerprint, quarantine_storage
from profiles.models import Profile
from profiles.photos import profile_set_photo
from tests import images
from tests.admin_pages import (
    FINGERPRINTS,
    GENERIC,
    PROFILES,
    confirm_flag,
    confirm_unflag,
    messages_of,
    post_photo,
    run_action,
    submit_confirmation,
    user_client,
)

pytestmark = pytest.mark.django_db



# --- Profile admin: thumbnails and "Flag selected photos" -------------------------------------


def test_profile_changelist_shows_photo_thumbnails(admin_client, make_profile):
    profile = make_profile("alice", images.photo(1))

    response = admin_client.get(reverse(PROFILES))

    assert response.status_code == 200
    # Blurred until clicked, as every image the admin shows (reviewer wellness).
    assert f'src="{profile.photo.url}"' in response.content.decode()
    assert re.search(
        rf'<img class="mod-img[^"]*" src="{re.escape(profile.photo.url)}"',
        response.content.decode(),
    )


def test_flag_action_asks_for_confirmation_and_flags_nothing_yet(moderator_client, make_profile):
    profile = make_profile("alice", images.photo(1))

    response = run_action(moderator_client, PROFILES, "flag_selected_photos", [profile])

    assert response.status_code == 200
    assert "admin/profiles/profile/flag_confirmation.html" in [t.name for t in response.templates]
    page = response.content.decode()
    assert profile.photo.url in page
    assert 'name="reason"' in page
    assert not FlaggedFingerprint.objects.exists()
    profile.refresh_from_db()
    assert profile.photo


def test_flag_action_confirmation_lists_profiles_without_photo_as_skipped(
    moderator_client, make_profile
):
    with_photo = make_profile("alice", images.photo(1))
    without = make_profile("bob")

    response = run_action(moderator_client, PROFILES, "flag_selected_photos", [with_photo, without])

    assert response.context["without_photo"] == 1
    assert list(response.context["profiles"]) == [with_photo]


def test_flag_action_with_reason_bans_the_photo_as_the_moderator(
    moderator_client, moderator, make_profile
):
    profile = make_profile("alice", images.photo(1))
    stored_hex = Fingerprint.from_signed(profile.photo_dhash).hex

    response = confirm_flag(moderator_client, [profile], reason="spam")

    assert response.status_code == 302
    assert response["Location"] == reverse(PROFILES)
    flagged = FlaggedFingerprint.objects.get()
    assert flagged.hex == stored_hex
    assert flagged.source == FlaggedFingerprint.Source.PROFILE_PHOTO
    assert flagged.flagged_by == moderator
    assert flagged.reason == "spam"
    assert flagged.active


def test_flag_action_takes_the_photo_off_the_profile(moderator_client, make_profile):
    profile = make_profile("alice", images.photo(1))

    confirm_flag(moderator_client, [profile])

    profile.refresh_from_db()
    assert not profile.photo
    assert profile.photo_dhash is None


def test_flag_action_deletes_the_public_file_after_commit(
    moderator_client, make_profile, media_files, django_capture_on_commit_callbacks
):
    profile = make_profile("alice", images.photo(1))
    assert media_files() == [profile.photo.name]

    with django_capture_on_commit_callbacks(execute=True):
        confirm_flag(moderator_client, [profile])

    assert media_files() == []


def test_flag_action_keeps_the_original_in_quarantine_linked_from_the_fingerprint(
    moderator_client, make_profile, quarantine_files
):
    profile = make_profile("alice", images.photo(1))
    public_bytes = profile.photo.read()
    profile.photo.close()

    confirm_flag(moderator_client, [profile])

    flagged = FlaggedFingerprint.objects.get()
    assert flagged.original.name in quarantine_files()
    with quarantine_storage().open(flagged.original.name, "rb") as fh:
        assert fh.read() == public_bytes
    changelist = moderator_client.get(reverse(FINGERPRINTS)).content.decode()
    assert reverse("moderation:quarantined-file", args=[flagged.original.name]) in changelist


def test_flag_action_writes_flag_and_takedown_audit_rows(moderator_client, moderator, make_profile):
    profile = make_profile("alice", images.photo(1))

    confirm_flag(moderator_client, [profile], reason="spam")

    flagged = FlaggedFingerprint.objects.get()
    rows = AuditEvent.objects.filter(fingerprint=flagged).values_list("action", "actor", "reason")
    assert sorted(rows) == [
        (AuditEvent.Action.FLAG, moderator.pk, "spam"),
        (AuditEvent.Action.TAKEDOWN, moderator.pk, "spam"),
    ]


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda img: images.resized(img, 0.6), id="resized"),
        pytest.param(lambda img: images.recompressed(img, 45), id="recompressed"),
        pytest.param(lambda img: images.recompressed(images.resized(img, 0.75), 60), id="both"),
    ],
)
def test_user_cannot_upload_an_edited_copy_of_a_flagged_photo_again(
    moderator_client, user, edit, django_capture_on_commit_callbacks
):
    original = images.photo(1)
    alice = user_client(user)
    with django_capture_on_commit_callbacks(execute=True):
        post_photo(alice, original)
    profile = Profile.objects.get(user=user)
    with django_capture_on_commit_callbacks(execute=True):
        confirm_flag(moderator_client, [profile])

    response = post_photo(alice, edit(original))

    assert response.status_code == 200
    assert GENERIC in response.content.decode()
    profile.refresh_from_db()
    assert not profile.photo


def test_flag_action_without_reason_shows_form_error_and_flags_nothing(
    moderator_client, make_profile, media_files
):
    profile = make_profile("alice", images.photo(1))

    response = confirm_flag(moderator_client, [profile], reason="")

    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert not FlaggedFingerprint.objects.exists()
    assert not AuditEvent.objects.exists()
    profile.refresh_from_db()
    assert profile.photo
    assert media_files() == [profile.photo.name]


def test_flag_action_can_be_confirmed_from_the_page_reshown_after_a_missing_reason(
    moderator_client, make_profile
):
    profile = make_profile("alice", images.photo(1))
    reshown = confirm_flag(moderator_client, [profile], reason="")

    response = submit_confirmation(moderator_client, PROFILES, reshown, "spam")

    assert response.status_code == 302
    assert FlaggedFingerprint.objects.get().reason == "spam"


def test_flag_action_does_not_flag_a_photo_replaced_after_the_confirmation_page(
    moderator_client, make_profile, quarantine_files
):
    profile = make_profile("alice", images.photo(1))
    page = run_action(moderator_client, PROFILES, "flag_selected_photos", [profile])
    profile_set_photo(profile=profile, upload=images.upload(images.photo(31)))  # alice, meanwhile
    replacement = profile.photo.name

    response = submit_confirmation(moderator_client, PROFILES, page, "spam")

    assert not FlaggedFingerprint.objects.exists()
    assert quarantine_files() == []
    profile.refresh_from_db()
    assert profile.photo.name == replacement
    assert "1 photo changed after you confirmed and was not flagged." in messages_of(response)


def test_flag_action_does_not_flag_a_photo_added_after_the_confirmation_page(
    moderator_client, make_profile
):
    shown = make_profile("alice", images.photo(1))
    empty = make_profile("bob")
    page = run_action(moderator_client, PROFILES, "flag_selected_photos", [shown, empty])
    profile_set_photo(profile=empty, upload=images.upload(images.photo(31)))  # bob, meanwhile

    response = submit_confirmation(moderator_client, PROFILES, page, "spam")

    flagged = FlaggedFingerprint.objects.get()
    assert "alice" in flagged.audit_events.get(action=AuditEvent.Action.FLAG).target
    empty.refresh_from_db()
    assert empty.photo
    assert "1 photo changed after you confirmed and was not flagged." in messages_of(response)


def test_flag_action_reports_how_many_photos_it_flagged(moderator_client, make_profile):
    profiles = [make_profile("alice", images.photo(1)), make_profile("bob", images.photo(30))]

    response = confirm_flag(moderator_client, profiles)

    messages = messages_of(response)
    assert messages == ["Flagged 2 photos; sweeps of stored photos: 2 queued."]
    assert FlaggedFingerprint.objects.count() == 2


def test_flag_action_reports_a_photo_missing_from_storage_and_flags_the_rest(
    moderator_client, make_profile, quarantine_files
):
    broken = make_profile("alice", images.photo(1))
    fine = make_profile("bob", images.photo(30))
    broken.photo.storage.delete(broken.photo.name)

    response = confirm_flag(moderator_client, [broken, fine])

    messages = messages_of(response)
    assert "1 photo could not be read and was not flagged." in messages
    flagged = FlaggedFingerprint.objects.get()
    assert flagged.hex == Fingerprint.from_signed(fine.photo_dhash).hex
    assert quarantine_files() == [flagged.original.name]
    broken.refresh_from_db()
    assert broken.photo  # nothing was changed for the unreadable one


def test_flag_action_sweeps_a_near_duplicate_on_another_profile(
    moderator_client, make_profile, settings, django_capture_on_commit_callbacks
):
    original = images.photo(3)
    flagged_profile = make_profile("alice", original)
    copy_profile = make_profile("bob", images.recompressed(images.resized(original, 0.7), 60))
    unrelated = make_profile("carol", images.photo(40))

    with django_capture_on_commit_callbacks(execute=True):
        confirm_flag(moderator_client, [flagged_profile])

    copy_profile.refresh_from_db()
    unrelated.refresh_from_db()
    assert not copy_profile.photo
    assert unrelated.photo
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN, target__contains="bob")
    assert takedown.fingerprint == FlaggedFingerprint.objects.get()
    assert takedown.distance is not None
    assert 0 <= takedown.distance <= settings.MODERATION_MAX_DISTANCE
    assert not AuditEvent.objects.filter(target__contains="carol").exists()


# --- banned set seen by the upload check ---------------------------------------------------------


def test_find_sees_an_admin_flag_and_forgets_it_after_unflag(moderator_client, make_profile):
    profile = make_profile("alice", images.photo(1))
    fp = Fingerprint.from_signed(profile.photo_dhash)
    assert banned_set.find(fp) == []  # the index is loaded before the flag

    confirm_flag(moderator_client, [profile])
    flagged = FlaggedFingerprint.objects.get()
    assert [m.fingerprint_id for m in banned_set.find(fp)] == [flagged.pk]

    confirm_unflag(moderator_client, [flagged])
    assert banned_set.find(fp) == []


@pytest.mark.django_db(transaction=True)
def test_admin_flag_with_real_commits_bans_sweeps_and_cleans_up(
    moderator_client, make_profile, media_files, user
):
    """No captured callbacks: each flag commits and the immediate backend sweeps right then."""
    original = images.photo(3)
    flagged_profile = make_profile("carol", original)
    copy_profile = make_profile("bob", images.resized(original, 0.6))
    fp = Fingerprint.from_signed(flagged_profile.photo_dhash)
    assert banned_set.find(fp) == []

    confirm_flag(moderator_client, [flagged_profile])

    copy_profile.refresh_from_db()
    assert not copy_profile.photo
    assert media_files() == []
    assert banned_set.find(fp)
    assert (
        GENERIC in post_photo(user_client(user), images.brightened(original, 1.1)).content.decode()
    )


@pytest.mark.django_db(transaction=True)
def test_flagging_a_photo_and_its_copy_together_takes_both_down_without_warnings(
    moderator_client, make_profile
):
    """The first flag's sweep removes the copy before the loop reaches it: that is no news."""
    original = images.photo(3)
    profiles = [make_profile("carol", original), make_profile("bob", images.resized(original, 0.6))]

    response = confirm_flag(moderator_client, profiles)

    assert all(not Profile.objects.get(pk=p.pk).photo for p in profiles)
    assert messages_of(response) == [
        "Flagged 1 photo; sweep of stored photos: 1 done (1 taken down)."
    ]
