"""The review queue: near misses are accepted but queued, once per fingerprint, and shown to a
moderator side by side with the flagged original. (Deciding them is in ``test_desk.py``.)"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from moderation import banned_set, hash_lists, screening, sweeping
from moderation.matching import Match, MatchRule
from moderation.models import (
    RefusedUpload,
    ReviewItem,
)
from profiles.models import Profile
from tests import images
from tests.helpers import moderator_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("narrow_distances")]

QUEUE = "admin:moderation_reviewitem_changelist"


@pytest.fixture
def alice_client(client, user):
    client.force_login(user)
    return client


# --- queueing -------------------------------------------------------------------------------


def test_a_near_miss_upload_is_accepted_and_queued_with_its_hashes_and_uploader(
    queued, scene, user
):
    flagged, _ = scene
    profile = Profile.objects.get(user=user)
    assert profile.photo  # accepted and stored
    assert queued.status == ReviewItem.Status.PENDING
    assert queued.fingerprint == flagged
    assert (queued.object_id, queued.file_name) == (profile.pk, profile.photo.name)
    assert queued.uploader == user
    assert queued.dhash == profile.photo_dhash
    assert 4 < queued.distance <= 10


def test_an_uploads_own_check_looks_only_as_far_as_a_refusal_and_the_recheck_queues_it(
    scene, settings
):
    flagged, near = scene
    own = screening.screen_upload(images.upload(near, "me.png", "PNG"))
    assert own.decision == "pass"  # the near miss is not even a candidate of the upload's check
    assert all(m.distance <= settings.MODERATION_MAX_DISTANCE for m in own.verdict.candidates)
    full = screening.screen(own.checked)  # the whole rule, as the re-check applies it
    assert full.decision == "review" and full.verdict.for_review.fingerprint_id == flagged.pk


def test_an_enforced_list_with_a_larger_distance_widens_the_uploads_own_check(
    scene, upload, settings
):
    flagged, near = scene
    banned_set.current().sync()  # loaded before the change: it arrives through the change log
    hash_lists.hash_list_update(
        hash_list=flagged.hash_list,
        max_distance=settings.MODERATION_REVIEW_DISTANCE,
        enabled=True,
        mode="enforce",
    )
    response = upload(near)
    assert response.status_code == 200  # refused by the list's own distance
    assert RefusedUpload.objects.get().nearest == flagged
    assert not ReviewItem.objects.exists()


def test_an_upload_far_from_every_ban_is_not_queued(scene, upload):
    upload(images.photo(802))
    assert not ReviewItem.objects.exists()


def test_a_blocked_upload_is_refused_not_queued(scene, upload):
    response = upload(images.photo(801))
    assert response.status_code == 200  # the form again, with the generic error
    assert not ReviewItem.objects.exists()
    assert RefusedUpload.objects.count() == 1


def test_the_same_image_is_queued_once_per_fingerprint(queued, user):
    profile = Profile.objects.get(user=user)
    assert sweeping.recheck_stored_image(instance=profile) is False
    assert ReviewItem.objects.count() == 1


# --- the queue page -------------------------------------------------------------------------


def test_the_queue_lists_pending_items_for_a_moderator(queued, moderator):
    response = moderator_client(moderator).get(reverse(QUEUE))
    assert response.status_code == 200
    assert queued.target in response.content.decode()


def test_the_review_page_shows_upload_and_original_side_by_side_with_the_evidence(
    queued, scene, moderator, user
):
    flagged, _ = scene
    screening.record_refused_upload(user=user, ip="192.0.2.9", code="banned_image")
    profile = Profile.objects.get(user=user)

    page = moderator_client(moderator).get(
        reverse("admin:moderation_reviewitem_change", args=[queued.pk])
    )

    html = page.content.decode()
    assert page.status_code == 200
    assert profile.photo.url in html
    assert reverse("moderation:quarantined-file", args=[flagged.original.name]) in html
    assert queued.hex in html and flagged.hex in html
    assert f"<td>{queued.distance}</td>" in html
    assert "alice" in html
    assert 'id="review-refused"' in html and "banned_image" in html
    assert 'value="ban"' in html and 'value="dismiss"' in html


def test_the_original_is_not_shown_without_the_quarantine_permission(
    queued, scene, django_user_model
):
    flagged, _ = scene
    viewer = django_user_model.objects.create_user(username="v", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_reviewitem"))
    client = Client()
    client.force_login(viewer)

    html = client.get(reverse("admin:moderation_reviewitem_change", args=[queued.pk])).content
    assert reverse("moderation:quarantined-file", args=[flagged.original.name]) not in html.decode()
    assert b"You may not view quarantined originals" in html
    assert b'value="ban"' not in html


def test_the_rule_for_blocking_reaches_the_match_distances_and_enforced_lists_only():
    rule = MatchRule(
        max_distance=12, max_confirm_distance=16, max_unconfirmed_distance=6, review_distance=16
    )
    assert rule.radius == 16
    assert rule.for_blocking().radius == 12
    assert rule.for_blocking(list_reach=14).radius == 14  # a list's own distance still blocks
    assert rule.for_blocking(list_reach=30).radius == 16  # never past the review distance
    near_miss = Match(1, 14, confirm_distance=3)
    assert rule.reviews(near_miss) and not rule.for_blocking().reviews(near_miss)
    assert rule.for_blocking().matches(Match(1, 12, confirm_distance=16))


# --- the queue's default -------------------------------------------------------------------


@pytest.fixture
def one_of_each_status(scene):
    """A review item in each status, told apart by their targets."""
    flagged, _ = scene
    return {
        status: ReviewItem.objects.create(
            target_key="profiles.profile.photo",
            object_id=n,
            target=f"target-{status}",
            file_name=f"photos/{status}.jpg",
            dhash=n,
            fingerprint=flagged,
            distance=7,
            status=status,
        )
        for n, status in enumerate(ReviewItem.Status.values, 1)
    }


def listed(client, **params) -> set[str]:
    html = client.get(reverse(QUEUE), params).content.decode()
    return {status for status in ReviewItem.Status.values if f"target-{status}" in html}


def test_the_queue_lists_only_pending_items_by_default(one_of_each_status, moderator):
    assert listed(moderator_client(moderator)) == {"pending"}


def test_each_other_status_and_all_of_them_are_one_click_away(one_of_each_status, moderator):
    client = moderator_client(moderator)
    html = client.get(reverse(QUEUE)).content.decode()

    for status in ReviewItem.Status.values:
        assert f'href="?status__exact={status}"' in html
        assert listed(client, status__exact=status) == {status}
    assert 'href="?status__exact=all"' in html
    assert listed(client, status__exact="all") == set(ReviewItem.Status.values)


def test_an_unknown_status_in_the_address_lists_nothing_it_was_not_asked_for(
    one_of_each_status, moderator
):
    response = moderator_client(moderator).get(reverse(QUEUE), {"status__exact": "bogus"})
    assert response.status_code == 302 and response["Location"].endswith("?e=1")
