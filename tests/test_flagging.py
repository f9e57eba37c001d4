"""Flagging: flag a stored photo or an image, unflag a fingerprint — rows, files, audit, and the
banned set that sees each flag and unflag at its next lookup."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from moderation import banned_set, flagging
from moderation.hashing import Fingerprint, fingerprint
from moderation.models import AuditEvent, FlaggedFingerprint, quarantine_storage
from profiles.models import Profile
from profiles.photos import profile_set_photo
from tests import images
from tests.helpers import flag_file

pytestmark = pytest.mark.django_db


def stored_fingerprint(profile: Profile) -> Fingerprint:
    return Fingerprint.from_signed(profile.photo_dhash)


# --- flag_stored_image --------------------------------------------------------------------


def test_flagging_a_stored_photo_bans_its_fingerprint(make_profile, moderator):
    profile = make_profile("alice", images.photo(1))
    expected = stored_fingerprint(profile)

    result = flagging.flag_stored_image(instance=profile, reason="spam", actor=moderator)

    assert result.created
    flagged = FlaggedFingerprint.objects.get()
    assert flagged == result.fingerprint
    assert flagged.hex == expected.hex
    assert flagged.source == FlaggedFingerprint.Source.PROFILE_PHOTO
    assert flagged.flagged_by == moderator
    assert flagged.reason == "spam"
    assert flagged.active


def test_flagging_a_stored_photo_clears_it_from_the_profile(make_profile, moderator):
    profile = make_profile("alice", images.photo(1))

    flagging.flag_stored_image(instance=profile, reason="spam", actor=moderator)

    profile.refresh_from_db()
    assert not profile.photo
    assert profile.photo_dhash is None
    assert profile.photo_pipeline_version is None


def test_flagging_a_stored_photo_moves_the_original_to_quarantine(
    make_profile, moderator, quarantine_files
):
    profile = make_profile("alice", images.photo(1))
    public_bytes = profile.photo.read()
    profile.photo.close()

    flagging.flag_stored_image(instance=profile, reason="spam", actor=moderator)

    flagged = FlaggedFingerprint.objects.get()
    assert flagged.original.name.startswith("originals/")
    assert quarantine_files() == [flagged.original.name]
    with quarantine_storage().open(flagged.original.name, "rb") as fh:
        assert fh.read() == public_bytes


def test_public_file_of_flagged_photo_is_deleted_only_after_commit(
    make_profile, moderator, media_files, django_capture_on_commit_callbacks
):
    profile = make_profile("alice", images.photo(1))
    public_name = profile.photo.name

    with django_capture_on_commit_callbacks(execute=True):
        flagging.flag_stored_image(instance=profile, reason="spam", actor=moderator)
        assert media_files() == [public_name]

    assert media_files() == []


def test_flagging_a_stored_photo_audits_the_flag_and_the_takedown(make_profile, moderator):
    profile = make_profile("alice", images.photo(1))

    flagging.flag_stored_image(instance=profile, reason="spam", actor=moderator)

    flagged = FlaggedFingerprint.objects.get()
    events = {e.action: e for e in AuditEvent.objects.filter(fingerprint=flagged)}
    assert set(events) == {AuditEvent.Action.FLAG, AuditEvent.Action.TAKEDOWN}
    for event in events.values():
        assert event.actor == moderator
        assert event.reason == "spam"
        assert "alice" in event.target
    assert events[AuditEvent.Action.TAKEDOWN].distance == 0
    assert events[AuditEvent.Action.TAKEDOWN].evidence.name == flagged.original.name


def test_flagging_a_profile_without_photo_does_nothing(make_profile, moderator):
    profile = make_profile("alice")

    assert flagging.flag_stored_image(instance=profile, reason="spam", actor=moderator) is None

    assert not FlaggedFingerprint.objects.exists()
    assert not AuditEvent.objects.exists()


def test_flagging_a_stored_photo_flags_nothing_if_it_is_not_the_expected_file(
    make_profile, moderator, quarantine_files
):
    profile = make_profile("alice", images.photo(1))
    seen = profile.photo.name
    profile_set_photo(profile=profile, upload=images.upload(images.photo(31)))

    result = flagging.flag_stored_image(
        instance=profile, reason="spam", actor=moderator, expected_name=seen
    )

    assert result is None
    assert not FlaggedFingerprint.objects.exists()
    assert not AuditEvent.objects.exists()
    assert quarantine_files() == []
    profile.refresh_from_db()
    assert profile.photo


def test_flagging_a_stored_photo_flags_it_when_it_is_the_expected_file(make_profile, moderator):
    profile = make_profile("alice", images.photo(1))

    result = flagging.flag_stored_image(
        instance=profile, reason="spam", actor=moderator, expected_name=profile.photo.name
    )

    assert result is not None and result.created


# --- flag_image ---------------------------------------------------------------------------


def test_flag_image_keeps_the_original_privately(moderator, quarantine_files, media_files):
    result = flag_file(images.photo(2), actor=moderator)

    assert result.created
    assert result.fingerprint.source == FlaggedFingerprint.Source.ADMIN_UPLOAD
    assert result.fingerprint.hex == fingerprint(images.upload(images.photo(2), fmt="PNG")).hex
    assert quarantine_files() == [result.fingerprint.original.name]
    assert media_files() == []


def test_flag_image_refuses_a_non_image_and_writes_nothing(moderator, quarantine_files):
    junk = SimpleUploadedFile("banned.jpg", b"this is not an image", "image/jpeg")

    with pytest.raises(ValidationError) as excinfo:
        flagging.flag_image(
            file=junk, reason="x", source=FlaggedFingerprint.Source.ADMIN_UPLOAD, actor=moderator
        )

    assert excinfo.value.code == "unsupported_format"
    assert not FlaggedFingerprint.objects.exists()
    assert not AuditEvent.objects.exists()
    assert quarantine_files() == []


def test_flagging_the_same_image_twice_keeps_one_fingerprint_and_audits_both(moderator):
    first = flag_file(images.photo(2), reason="first", actor=moderator)
    second = flag_file(images.photo(2), reason="second", actor=moderator)

    assert first.created and not second.created
    assert second.fingerprint == first.fingerprint
    assert FlaggedFingerprint.objects.count() == 1
    reasons = AuditEvent.objects.filter(action=AuditEvent.Action.FLAG).values_list(
        "reason", flat=True
    )
    assert sorted(reasons) == ["first", "second"]


# --- unflag -------------------------------------------------------------------------------


def test_unflag_deactivates_and_never_deletes(moderator):
    flagged = flag_file(images.photo(8), actor=moderator).fingerprint

    assert flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")

    flagged.refresh_from_db()
    assert not flagged.active
    assert flagged.unflagged_by == moderator
    assert flagged.unflagged_at is not None
    assert FlaggedFingerprint.objects.filter(pk=flagged.pk).exists()
    assert quarantine_storage().exists(flagged.original.name)


def test_unflag_is_audited_with_reason(moderator):
    flagged = flag_file(images.photo(8), actor=moderator).fingerprint

    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")

    event = AuditEvent.objects.get(action=AuditEvent.Action.UNFLAG)
    assert event.fingerprint == flagged
    assert event.actor == moderator
    assert event.reason == "mistake"


def test_unflagging_an_inactive_fingerprint_does_nothing(moderator):
    flagged = flag_file(images.photo(8), actor=moderator).fingerprint
    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")

    assert flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="again") is False

    assert AuditEvent.objects.filter(action=AuditEvent.Action.UNFLAG).count() == 1


def test_unflag_leaves_photos_already_taken_down_down(
    make_profile, moderator, django_capture_on_commit_callbacks
):
    profile = make_profile("bob", images.photo(9))
    with django_capture_on_commit_callbacks(execute=True):
        flagged = flag_file(images.photo(9), actor=moderator).fingerprint

    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")

    profile.refresh_from_db()
    assert not profile.photo
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    assert quarantine_storage().exists(takedown.evidence.name)


def test_flagging_again_after_unflag_creates_a_new_active_fingerprint(moderator):
    first = flag_file(images.photo(8), actor=moderator).fingerprint
    flagging.unflag_fingerprint(flagged=first, actor=moderator, reason="mistake")

    second = flag_file(images.photo(8), actor=moderator)

    assert second.created
    assert second.fingerprint.pk != first.pk
    assert list(FlaggedFingerprint.objects.active()) == [second.fingerprint]


# --- the banned set seen by banned_set.find ---------------------------------------------------


def test_find_sees_a_flag_made_after_the_index_was_loaded(moderator):
    fp = fingerprint(images.upload(images.photo(10), fmt="PNG"))
    assert banned_set.find(fp) == []  # loads this process's index

    flagged = flag_file(images.photo(10), actor=moderator).fingerprint

    assert [m.fingerprint_id for m in banned_set.find(fp)] == [flagged.pk]


def test_find_stops_seeing_an_unflagged_fingerprint(moderator):
    fp = fingerprint(images.upload(images.photo(10), fmt="PNG"))
    flagged = flag_file(images.photo(10), actor=moderator).fingerprint
    assert banned_set.find(fp)

    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")

    assert banned_set.find(fp) == []


def test_another_processs_index_notices_flag_and_unflag(moderator):
    """A second ``BannedSet`` stands for a web worker that never saw these calls happen."""
    other = banned_set.BannedSet()
    fp = fingerprint(images.upload(images.photo(10), fmt="PNG"))
    assert other.find(fp) == []

    flagged = flag_file(images.photo(10), actor=moderator).fingerprint
    assert [m.fingerprint_id for m in other.find(fp)] == [flagged.pk]

    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")
    assert other.find(fp) == []

    again = flag_file(images.photo(10), actor=moderator).fingerprint
    assert [m.fingerprint_id for m in other.find(fp)] == [again.pk]


@pytest.mark.django_db(transaction=True)
def test_find_sees_committed_flag_and_unflag_at_once(moderator):
    """With real commits (and the on-commit sweep really running), the cache is never stale."""
    fp = fingerprint(images.upload(images.photo(10), fmt="PNG"))
    assert banned_set.find(fp) == []

    flagged = flag_file(images.photo(10), actor=moderator).fingerprint
    assert [m.distance for m in banned_set.find(fp)] == [0]

    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")
    assert banned_set.find(fp) == []
