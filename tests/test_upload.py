"""The user's side, end to end with the test client: upload, refuse, replace, remove."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from profiles.models import Profile
from tests import images
from tests.helpers import ban, post_photo, without_nonces

pytestmark = pytest.mark.django_db

GENERIC = "This image can&#x27;t be used as a profile photo."




@pytest.fixture
def alice_client(client, user):
    client.force_login(user)
    return client


def test_upload_stores_reencoded_photo_under_random_name(alice_client, user, media_files):
    response = post_photo(alice_client, images.photo(1), name="my holiday.jpg")
    assert response.status_code == 302
    profile = Profile.objects.get(user=user)
    assert profile.photo.name.startswith("photos/")
    assert "holiday" not in profile.photo.name
    assert profile.photo_dhash is not None
    assert media_files() == [profile.photo.name]


def test_the_upload_is_checked_as_stored_decoding_it_once_and_the_clean_file_once(
    alice_client, user, monkeypatch
):
    from moderation import decoding, hashing

    decodes = []
    real_decode = decoding._decode

    def counting(*args, **kwargs):
        decodes.append(kwargs.get("draft_mode"))
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(decoding, "_decode", counting)
    assert post_photo(alice_client, images.photo(5)).status_code == 302
    # The upload in colour for the re-encoding, the re-encoded file as luma for the check
    # (whose fingerprint is then stored): no third decode.
    assert decodes == [None, "L"]

    profile = Profile.objects.get(user=user)
    with profile.photo.open("rb") as stored:
        fp = hashing.fingerprint(stored)
    assert (profile.photo_dhash, profile.photo_phash) == (fp.signed, fp.phash_signed)


def test_evaluation_hashes_a_file_as_the_upload_form_does(alice_client, user):
    # evaluate_matching decides with upload_fingerprints: it must give the very fingerprint the
    # form checked and stored for the same file.
    from moderation.screening import upload_fingerprints

    data = images.encode(images.photo(8, (2400, 1600)), "JPEG", quality=80)
    photo = SimpleUploadedFile("p.jpg", data, "image/jpeg")
    response = alice_client.post(reverse("profile-edit"), {"display_name": "A", "photo": photo})
    assert response.status_code == 302
    stored = Profile.objects.get(user=user)
    (fp,) = upload_fingerprints(io.BytesIO(data)).frames
    assert (fp.signed, fp.phash_signed) == (stored.photo_dhash, stored.photo_phash)


def test_a_copy_whose_cuts_alone_match_is_refused_and_recorded_with_the_nearest_cuts_hash(
    alice_client, user, settings
):
    # A copy turned 3 degrees (black corners): its whole dHash moves further than its cuts'
    # (the centre and the caption band, each compared with the flag's own).
    from moderation.models import RefusedUpload
    from moderation.screening import upload_fingerprints

    original = images.photo(9, (800, 600)).convert("RGB")
    flagged = ban(original)
    turned = original.rotate(3, resample=Image.Resampling.BICUBIC)
    data = images.encode(turned, "JPEG", quality=90)
    checked = upload_fingerprints(io.BytesIO(data))
    variants = {v.variant: v.fingerprint for v in flagged.variants.all()}
    whole = min(checked.frames[0].distance(fp) for fp in variants.values())
    nearest, cut = min((fp.distance(variants[n]), n) for n, fp in checked.cuts.items())
    assert nearest < whole  # the premise: a cut is the closer comparison
    settings.MODERATION_MAX_DISTANCE = nearest  # within reach of the cuts only

    response = post_photo(alice_client, data, "turned.jpg")

    assert response.status_code == 200 and GENERIC in response.content.decode()
    refused = RefusedUpload.objects.get()
    assert (refused.dhash, refused.nearest_id, refused.distance) == (
        checked.cuts[cut].signed,
        flagged.pk,
        nearest,
    )


def test_a_banned_picture_in_a_later_frame_is_refused_though_only_the_first_is_stored(
    alice_client, user, media_files
):
    ban(images.photo(6))
    frames = [images.photo(7).convert("RGB"), images.photo(6).convert("RGB")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100)
    gif = SimpleUploadedFile("a.gif", out.getvalue(), "image/gif")
    response = alice_client.post(
        reverse("profile-edit"), {"display_name": "Alice", "photo": gif}
    )
    assert response.status_code == 200
    assert GENERIC in response.content.decode()
    assert media_files() == []


def test_banned_image_is_refused_with_generic_message_and_writes_nothing(
    alice_client, user, media_files
):
    ban(images.photo(2))
    response = post_photo(alice_client, images.photo(2))
    assert response.status_code == 200
    assert GENERIC in response.content.decode()
    assert "distance" not in without_nonces(response.content.decode()).lower()
    assert media_files() == []
    assert not Profile.objects.get(user=user).photo


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda img: images.resized(img, 0.5), id="resized-half"),
        pytest.param(lambda img: images.recompressed(img, 40), id="jpeg-q40"),
        pytest.param(lambda img: images.brightened(img, 1.15), id="brighter"),
    ],
)
def test_edited_copy_of_banned_image_is_refused(alice_client, edit):
    ban(images.photo(3))
    response = post_photo(alice_client, edit(images.photo(3)))
    assert GENERIC in response.content.decode()


def test_unrelated_photo_is_accepted_while_others_are_banned(alice_client, user):
    for seed in range(10, 15):
        ban(images.photo(seed))
    response = post_photo(alice_client, images.photo(99))
    assert response.status_code == 302
    assert Profile.objects.get(user=user).photo


def test_refused_upload_keeps_previous_photo(alice_client, user, media_files):
    post_photo(alice_client, images.photo(4))
    before = Profile.objects.get(user=user).photo.name
    ban(images.photo(5))
    response = post_photo(alice_client, images.photo(5))
    assert GENERIC in response.content.decode()
    assert Profile.objects.get(user=user).photo.name == before
    assert media_files() == [before]


def test_copy_just_inside_the_distance_is_refused_and_just_outside_is_accepted(
    alice_client, settings
):
    original = images.photo(6)
    ban(original)
    inside = images.at_distance(original, settings.MODERATION_MAX_DISTANCE, seed=1)
    outside = images.at_distance(original, settings.MODERATION_MAX_DISTANCE + 1, seed=2)
    assert GENERIC in post_photo(alice_client, inside, "in.png", "PNG").content.decode()
    assert post_photo(alice_client, outside, "out.png", "PNG").status_code == 302


def test_replacing_photo_deletes_old_file_after_commit(
    alice_client, user, media_files, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post_photo(alice_client, images.photo(7))
    first = Profile.objects.get(user=user).photo.name
    with django_capture_on_commit_callbacks(execute=True):
        post_photo(alice_client, images.photo(8))
    second = Profile.objects.get(user=user).photo.name
    assert first != second
    assert media_files() == [second]


def test_remove_photo_clears_profile_and_file(
    alice_client, user, media_files, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post_photo(alice_client, images.photo(9))
        response = alice_client.post(reverse("profile-remove-photo"))
    assert response.status_code == 302
    profile = Profile.objects.get(user=user)
    assert not profile.photo and profile.photo_dhash is None
    assert media_files() == []


def test_remove_photo_requires_post(alice_client):
    assert alice_client.get(reverse("profile-remove-photo")).status_code == 405


def test_public_profile_shows_photo(client, alice_client, user):
    post_photo(alice_client, images.photo(11))
    profile = Profile.objects.get(user=user)
    page = client.get(reverse("profile-detail", args=["alice"]))
    assert profile.photo.url in page.content.decode()


def test_signup_creates_profile_and_logs_in(client, django_user_model):
    response = client.post(
        reverse("signup"),
        {"username": "bob", "password1": "a-long-pass-phrase", "password2": "a-long-pass-phrase"},
    )
    assert response.status_code == 302
    bob = django_user_model.objects.get(username="bob")
    assert Profile.objects.filter(user=bob).exists()
    assert client.get(reverse("profile-edit")).status_code == 200


def test_profile_edit_requires_login(client):
    response = client.get(reverse("profile-edit"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]
