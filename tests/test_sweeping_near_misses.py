"""A flag's sweep over existing photos: photos near the new flag but not blockable
(what an upload would get as "review") are queued for a moderator, once."""

from __future__ import annotations

import pytest

from moderation import desk, flagging, sweeping
from moderation.hashing import fingerprint_image
from moderation.models import AllowedMatch, FlaggedFingerprint, ReviewItem
from profiles.models import Profile
from tests import images

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("narrow_distances")]


def flag(img, django_capture_on_commit_callbacks) -> FlaggedFingerprint:
    """Flag through the service; the sweep task runs after commit, as in production."""
    with django_capture_on_commit_callbacks(execute=True):
        return flagging.flag_image(
            file=images.upload(img, "b.png", "PNG"),
            reason="bad",
            source=FlaggedFingerprint.Source.COMMAND,
            keep_original=False,
        ).fingerprint


def test_a_stored_near_miss_is_queued_by_the_sweep_after_a_flag(
    make_profile, django_capture_on_commit_callbacks
):
    scene = images.photo(820)
    near = make_profile("near", images.near_miss(scene))
    make_profile("stranger", images.photo(821))

    flagged = flag(scene, django_capture_on_commit_callbacks)

    item = ReviewItem.objects.get()
    assert (item.object_id, item.fingerprint, item.status) == (near.pk, flagged, "pending")
    assert item.found_by == ReviewItem.FoundBy.SWEEP
    assert item.uploader == near.user and item.file_name == near.photo.name
    assert 4 < item.distance <= 10
    assert Profile.objects.get(pk=near.pk).photo  # queued, not taken down


def test_a_blockable_copy_is_taken_down_not_queued(
    make_profile, django_capture_on_commit_callbacks
):
    scene = images.photo(822)
    copy = make_profile("copy", images.resized(scene, 0.5))

    flag(scene, django_capture_on_commit_callbacks)

    assert not Profile.objects.get(pk=copy.pk).photo
    assert not ReviewItem.objects.exists()


def test_sweeping_again_does_not_queue_the_same_photo_twice(
    make_profile, django_capture_on_commit_callbacks
):
    scene = images.photo(823)
    make_profile("near", images.near_miss(scene))
    flagged = flag(scene, django_capture_on_commit_callbacks)

    again = sweeping.sweep_banned_matches(fingerprint_ids=[flagged.pk])
    full = sweeping.sweep_banned_matches()

    assert again.queued == [] and full.queued == []
    assert ReviewItem.objects.count() == 1


def test_the_sweep_reports_what_it_queued(make_profile, django_capture_on_commit_callbacks):
    scene = images.photo(824)
    make_profile("near", images.near_miss(scene))
    flagged = flag(scene, django_capture_on_commit_callbacks)
    ReviewItem.objects.all().delete()

    result = sweeping.sweep_banned_matches(fingerprint_ids=[flagged.pk])

    assert len(result.queued) == 1 and "near" in result.queued[0]


def test_a_photo_allowed_for_the_flag_is_not_queued_by_a_sweep(
    make_profile, django_capture_on_commit_callbacks
):
    scene = images.photo(825)
    near_img = images.near_miss(scene)
    make_profile("near", near_img)
    flagged = flag(scene, django_capture_on_commit_callbacks)
    ReviewItem.objects.all().delete()
    AllowedMatch.objects.create(fingerprint=flagged, dhash=fingerprint_image(near_img).signed)

    result = sweeping.sweep_banned_matches()

    assert result.queued == [] and not ReviewItem.objects.exists()


def test_a_dismissed_sweep_item_is_not_queued_again(
    make_profile, moderator, django_capture_on_commit_callbacks
):
    scene = images.photo(826)
    make_profile("near", images.near_miss(scene))
    flagged = flag(scene, django_capture_on_commit_callbacks)
    desk.review_dismiss(item=ReviewItem.objects.get(), actor=moderator)

    sweeping.sweep_banned_matches(fingerprint_ids=[flagged.pk])

    assert ReviewItem.objects.count() == 1
    assert not ReviewItem.objects.pending().exists()


def test_the_queue_says_the_item_was_found_by_a_sweep(
    make_profile, moderator, django_capture_on_commit_callbacks
):
    from django.test import Client
    from django.urls import reverse

    scene = images.photo(827)
    make_profile("near", images.near_miss(scene))
    flag(scene, django_capture_on_commit_callbacks)
    client = Client()
    client.force_login(moderator)

    queue = client.get(reverse("admin:moderation_reviewitem_changelist"), {"found_by": "sweep"})
    page = client.get(
        reverse("admin:moderation_reviewitem_change", args=[ReviewItem.objects.get().pk])
    )

    assert queue.context["cl"].result_count == 1
    assert "a sweep after a flag" in page.content.decode()
