"""Hash lists: named lists with their own distance and on/off switch, as matching, ``check_image``
and the admin see them. (Shadow mode and distance trials: ``test_hash_lists_*.py``; export and
import: ``test_exchange.py``.)"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from moderation import banned_set, hash_lists, matching, screening
from moderation.hashing import fingerprint_image
from moderation.models import (
    DEFAULT_HASH_LIST,
    BannedSetChange,
    FlaggedFingerprint,
    HashList,
)
from tests import images
from tests.helpers import ban_into_list as ban
from tests.helpers import run_command as run

pytestmark = pytest.mark.django_db





def copy_at(img, bits: int, seed: int = 0):
    """A copy ``bits`` dHash bits away, as the fingerprint an upload of it would have."""
    return fingerprint_image(images.at_distance(img, bits, seed=seed))


# --- lists and matching ---------------------------------------------------------------------


def test_a_flag_without_a_list_joins_the_default_list():
    flagged = ban(images.photo(701))
    assert flagged.hash_list.name == DEFAULT_HASH_LIST


def test_a_lists_own_distance_replaces_the_setting_for_its_flags(settings):
    original = images.photo(702)
    strict = HashList.objects.create(name="strict", max_distance=2)
    ban(original, hash_list=strict)
    near = copy_at(original, 4, seed=1)

    assert settings.MODERATION_MAX_DISTANCE >= 4
    assert not screening.check(near).blocked
    hash_lists.hash_list_update(hash_list=strict, max_distance=None, enabled=True, mode="enforce")
    assert screening.check(near).blocked


def test_a_switched_off_list_matches_nothing_until_switched_on_again():
    original = images.photo(703)
    spam = HashList.objects.create(name="spam")
    ban(original, hash_list=spam)
    fp = fingerprint_image(original)
    assert screening.check(fp).blocked

    hash_lists.hash_list_update(hash_list=spam, max_distance=None, enabled=False, mode="enforce")
    assert screening.check(fp).decision == matching.PASS
    assert FlaggedFingerprint.objects.active().filter(hash_list=spam).count() == 1

    hash_lists.hash_list_update(hash_list=spam, max_distance=None, enabled=True, mode="enforce")
    assert screening.check(fp).blocked


def test_a_list_change_reaches_a_process_that_already_loaded_the_set():
    original = images.photo(704)
    spam = HashList.objects.create(name="spam")
    ban(original, hash_list=spam)
    fp = fingerprint_image(original)
    banned = banned_set.current()
    assert banned.check(fp).blocked  # loaded now
    index = banned._index

    hash_lists.hash_list_update(hash_list=spam, max_distance=None, enabled=False, mode="enforce")

    assert not banned.check(fp).blocked
    assert banned._index is index  # replayed from the change log, not reloaded


def test_a_list_distance_above_the_review_distance_is_refused(settings):
    hash_list = HashList.objects.create(name="wide")
    with pytest.raises(ValidationError):
        hash_lists.hash_list_update(
            hash_list=hash_list,
            max_distance=settings.MODERATION_REVIEW_DISTANCE + 1,
            enabled=True,
            mode="enforce",
        )


# --- check_image ----------------------------------------------------------------------------


def test_check_image_json_names_the_list_of_each_match(tmp_path):
    spam = HashList.objects.create(name="spam")
    ban(images.photo(730), hash_list=spam)
    path = tmp_path / "q.png"
    path.write_bytes(images.encode(images.photo(730), "PNG"))

    result = json.loads(run("check_image", str(path), "--json"))

    assert result["decision"] == "block"
    assert [m["list"] for m in result["matches"]] == ["spam"]


def test_check_image_json_says_review_for_a_near_miss_and_names_its_list(tmp_path, settings):
    original = images.photo(731)
    ban(original)
    settings.MODERATION_MAX_DISTANCE = 4
    settings.MODERATION_REVIEW_DISTANCE = 10
    path = tmp_path / "near.png"
    path.write_bytes(images.encode(images.near_miss(original, seed=3), "PNG"))

    result = json.loads(run("check_image", str(path), "--json"))

    assert result["decision"] == "review"
    assert result["matches"] == []
    assert [(m["list"], m["distance"]) for m in result["near"]] == [("default", 7)]


def test_switching_a_list_off_in_the_admin_goes_through_the_service(moderator):
    spam = HashList.objects.create(name="spam")
    flagged = ban(images.photo(740), hash_list=spam)
    fp = fingerprint_image(images.photo(740))
    assert screening.check(fp).blocked
    client = Client()
    client.force_login(moderator)

    response = client.post(
        reverse("admin:moderation_hashlist_change", args=[spam.pk]),
        {"name": "spam", "description": "", "max_distance": "", "mode": "enforce"},
    )  # "enabled" unticked

    assert response.status_code == 302
    spam.refresh_from_db()
    assert not spam.enabled
    assert BannedSetChange.objects.filter(fingerprint=flagged, active=False).exists()
    assert screening.check(fp).decision == matching.PASS


def test_the_admin_refuses_a_list_distance_beyond_the_review_distance(moderator, settings):
    spam = HashList.objects.create(name="spam")
    client = Client()
    client.force_login(moderator)

    response = client.post(
        reverse("admin:moderation_hashlist_change", args=[spam.pk]),
        {
            "name": "spam",
            "description": "",
            "max_distance": settings.MODERATION_REVIEW_DISTANCE + 1,
            "enabled": "on",
            "mode": "enforce",
        },
    )

    assert response.status_code == 200  # the form again, with the error
    spam.refresh_from_db()
    assert spam.max_distance is None
