"""Sweeping: a flag takes down the stored photos that match it, and only those.

The sweep after a flag, the full sweep over the whole banned set, the takedown that gives up on a
photo changed since the match, and the recheck of a photo that slipped in before a flag."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from moderation import flagging, sweeping
from moderation.hashing import Fingerprint, hamming
from moderation.models import AuditEvent, FlaggedFingerprint
from profiles.models import Profile
from profiles.photos import profile_set_photo
from tests import images
from tests.helpers import flag_file

pytestmark = pytest.mark.django_db


def stored_fingerprint(profile: Profile) -> Fingerprint:
    return Fingerprint.from_signed(profile.photo_dhash)


def test_flag_sweeps_near_duplicate_photo_on_another_profile(
    make_profile, moderator, settings, media_files, django_capture_on_commit_callbacks
):
    original = images.photo(3)
    flagged_profile = make_profile("alice", original)
    copy_profile = make_profile("bob", images.recompressed(images.resized(original, 0.7), 60))
    distance = hamming(
        stored_fingerprint(flagged_profile).dhash, stored_fingerprint(copy_profile).dhash
    )
    assert distance <= settings.MODERATION_MAX_DISTANCE  # the copy really is near
    copy_name = copy_profile.photo.name

    with django_capture_on_commit_callbacks(execute=True):
        flagging.flag_stored_image(instance=flagged_profile, reason="spam", actor=moderator)

    copy_profile.refresh_from_db()
    assert not copy_profile.photo
    assert copy_profile.photo_dhash is None
    assert copy_name not in media_files()


def test_sweep_leaves_unrelated_photo_alone(
    make_profile, moderator, settings, media_files, django_capture_on_commit_callbacks
):
    flagged_profile = make_profile("alice", images.photo(3))
    other = make_profile("carol", images.photo(40))
    assert (
        hamming(stored_fingerprint(flagged_profile).dhash, stored_fingerprint(other).dhash)
        > settings.MODERATION_MAX_DISTANCE
    )

    with django_capture_on_commit_callbacks(execute=True):
        flagging.flag_stored_image(instance=flagged_profile, reason="spam", actor=moderator)

    other.refresh_from_db()
    assert other.photo
    assert media_files() == [other.photo.name]
    assert not AuditEvent.objects.filter(target__contains="carol").exists()


def test_sweep_takedown_is_audited_with_distance_and_evidence(
    make_profile, moderator, quarantine_files, django_capture_on_commit_callbacks
):
    original = images.photo(3)
    flagged_profile = make_profile("alice", original)
    copy_profile = make_profile("bob", images.resized(original, 0.5))
    distance = hamming(
        stored_fingerprint(flagged_profile).dhash, stored_fingerprint(copy_profile).dhash
    )

    with django_capture_on_commit_callbacks(execute=True):
        flagging.flag_stored_image(instance=flagged_profile, reason="spam", actor=moderator)

    flagged = FlaggedFingerprint.objects.get()
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN, target__contains="bob")
    assert takedown.fingerprint == flagged
    assert takedown.distance == distance
    assert takedown.actor is None  # the sweep acts, not the moderator
    assert takedown.reason == "spam"
    assert takedown.evidence.name.startswith("takedowns/")
    assert takedown.evidence.name in quarantine_files()


def test_flag_image_sweeps_photos_uploaded_before_the_flag(
    make_profile, moderator, django_capture_on_commit_callbacks
):
    original = images.photo(5)
    profile = make_profile("bob", images.resized(original, 0.8))

    with django_capture_on_commit_callbacks(execute=True):
        flag_file(original, actor=moderator)

    profile.refresh_from_db()
    assert not profile.photo


def test_sweep_only_compares_the_given_fingerprints(make_profile, moderator):
    profile = make_profile("bob", images.photo(6))
    unrelated = flag_file(images.photo(60), actor=moderator).fingerprint
    # Ban bob's photo without going through the services' sweep (as if its sweep had not run).
    same = flag_file(images.photo(6), actor=moderator).fingerprint

    result = sweeping.sweep_banned_matches(fingerprint_ids=[unrelated.pk])

    assert result.taken_down == []
    profile.refresh_from_db()
    assert profile.photo
    result = sweeping.sweep_banned_matches(fingerprint_ids=[same.pk])
    assert len(result.taken_down) == 1


def test_full_sweep_checks_every_photo_against_the_whole_banned_set(make_profile, moderator):
    doomed = make_profile("bob", images.photo(6))
    kept = make_profile("carol", images.photo(61))
    flag_file(images.photo(6), actor=moderator)  # its on-commit sweep is not run here

    result = sweeping.sweep_banned_matches()

    assert result.checked == 2
    assert len(result.taken_down) == 1
    doomed.refresh_from_db()
    kept.refresh_from_db()
    assert not doomed.photo
    assert kept.photo
    assert kept.photo_checked_at is not None


def test_sweep_ignores_inactive_fingerprints(make_profile, moderator):
    profile = make_profile("bob", images.photo(6))
    flagged = flag_file(images.photo(6), actor=moderator).fingerprint
    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")

    assert sweeping.sweep_banned_matches(fingerprint_ids=[flagged.pk]).taken_down == []
    assert sweeping.sweep_banned_matches().taken_down == []
    profile.refresh_from_db()
    assert profile.photo


def test_takedown_gives_up_when_the_photo_changed_since_the_match(make_profile, moderator):
    profile = make_profile("bob", images.photo(6))
    flagged = flag_file(images.photo(6), actor=moderator).fingerprint
    stale = Profile.objects.get(pk=profile.pk)
    profile_set_photo(profile=profile, upload=images.upload(images.photo(62)))

    taken = sweeping.take_down_image(instance=stale, flagged=flagged, distance=0)

    assert taken is False
    profile.refresh_from_db()
    assert profile.photo
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).exists()


def test_recheck_takes_down_a_photo_that_slipped_in_before_a_flag(make_profile, moderator):
    profile = make_profile("bob", images.photo(7))
    flag_file(images.photo(7), actor=moderator)  # as if it committed while bob was uploading

    assert sweeping.recheck_stored_image(instance=profile) is True

    profile.refresh_from_db()
    assert not profile.photo


def test_a_takedown_queues_deleting_the_public_file_with_it_so_a_death_after_commit_leaves_none(
    settings, make_profile, moderator, django_capture_on_commit_callbacks
):
    from django.core.files.storage import storages
    from django.db import transaction
    from django_tasks_db.models import DBTaskResult

    from moderation.files import delete_public_file_task

    profile = make_profile("bob", images.photo(8))
    public_name = profile.photo.name
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}
    }
    flagged = flag_file(images.photo(70), actor=moderator).fingerprint  # another picture
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        assert sweeping.take_down_image(instance=profile, flagged=flagged, distance=0)
        # Queued inside the takedown's transaction: they commit together.
        [queued] = DBTaskResult.objects.filter(task_path=delete_public_file_task.module_path)
        assert queued.args_kwargs == {"args": ["default", public_name], "kwargs": {}}
    assert not storages["default"].exists(public_name)  # deleted at once after the commit

    # As if this process had died between the commit and its own delete: the file is back,
    # and the queued task (what a worker runs) removes it; running it again does nothing.
    storages["default"].save(public_name, ContentFile(b"still public"))
    assert delete_public_file_task.call("default", public_name) is True
    assert not storages["default"].exists(public_name)
    assert delete_public_file_task.call("default", public_name) is False
