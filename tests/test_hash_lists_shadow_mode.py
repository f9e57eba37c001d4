"""Hash lists in shadow mode: a list in shadow mode blocks nothing and records what it would have
blocked, for moderators to read before enforcing it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from moderation import flagging, hash_lists, matching, screening
from moderation.hashing import fingerprint_image
from moderation.models import FlaggedFingerprint, HashList, RefusedUpload, ShadowHit
from profiles.models import Profile
from tests import images

pytestmark = pytest.mark.django_db


@pytest.fixture
def trial():
    return HashList.objects.create(name="trial", mode=HashList.Mode.SHADOW)


def ban(img, hash_list):
    return flagging.flag_image(
        file=images.upload(img, "b.png", "PNG"),
        reason="would block",
        source=FlaggedFingerprint.Source.COMMAND,
        keep_original=False,
        hash_list=hash_list,
    ).fingerprint


def test_a_shadow_list_match_does_not_block_but_is_reported_apart(trial):
    flagged = ban(images.photo(990), trial)
    verdict = screening.check(fingerprint_image(images.photo(990)))
    assert verdict.decision == matching.PASS
    assert [m.fingerprint_id for m in verdict.shadow] == [flagged.pk]


def test_an_upload_a_shadow_list_would_block_is_accepted_and_recorded(trial, upload, user):
    flagged = ban(images.photo(991), trial)

    response = upload(images.photo(991))

    assert response.status_code == 302
    assert Profile.objects.get(user=user).photo
    assert not RefusedUpload.objects.exists()
    hit = ShadowHit.objects.get()
    assert (hit.hash_list, hit.fingerprint, hit.uploader) == (trial, flagged, user)
    assert hit.distance <= 2


def test_a_shadow_list_does_not_take_down_existing_photos(
    trial, upload, user, django_capture_on_commit_callbacks
):
    upload(images.photo(992))
    with django_capture_on_commit_callbacks(execute=True):
        ban(images.photo(992), trial)
    assert Profile.objects.get(user=user).photo


def test_switching_the_list_to_enforce_blocks_from_the_next_upload(trial, upload):
    ban(images.photo(993), trial)
    hash_lists.hash_list_update(hash_list=trial, max_distance=None, enabled=True, mode="enforce")

    response = upload(images.photo(993))

    assert response.status_code == 200  # refused
    assert RefusedUpload.objects.count() == 1 and not ShadowHit.objects.exists()


def test_moderators_see_the_shadow_hits(trial, upload, moderator):
    ban(images.photo(994), trial)
    upload(images.photo(994))
    client = Client()
    client.force_login(moderator)

    page = client.get(reverse("admin:moderation_shadowhit_changelist"))

    assert page.status_code == 200
    assert "trial" in page.content.decode() and "alice" in page.content.decode()


def test_check_image_lists_shadow_matches_with_their_list(trial, tmp_path):
    import json
    from io import StringIO

    from django.core.management import call_command

    ban(images.photo(995), trial)
    path = tmp_path / "q.png"
    path.write_bytes(images.encode(images.photo(995), "PNG"))
    out = StringIO()
    call_command("check_image", str(path), "--json", stdout=out)

    result = json.loads(out.getvalue())
    assert result["decision"] == "pass"
    assert [m["list"] for m in result["shadow"]] == ["trial"]
