"""Access rules beside the permission matrix: users change only their own profile, every state
change needs POST and CSRF, quarantined files have no public URL, users never learn hashes,
distances or which ban matched, and the audit trail (and the refused-upload record) cannot be
changed in the admin."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from moderation import flagging
from moderation.hashing import fingerprint
from moderation.models import AuditEvent, FlaggedFingerprint, RefusedUpload
from profiles.models import Profile
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from tests import hostile, images
from tests.helpers import without_nonces

pytestmark = pytest.mark.django_db


# --- users edit only their own profile ---------------------------------------------------------


def test_a_user_changes_only_their_own_profile_whatever_they_post(as_role, world):
    owner_profile = world["profile"]
    client = as_role("user")
    response = client.post(
        reverse("profile-edit"),
        {
            "display_name": "Mallory",
            "user": owner_profile.user_id,
            "id": owner_profile.pk,
            "pk": owner_profile.pk,
            "profile": owner_profile.pk,
            "photo_dhash": "0",
        },
    )
    assert response.status_code == 302
    after = Profile.objects.get(pk=owner_profile.pk)
    assert after.display_name == owner_profile.display_name
    assert after.photo_dhash == owner_profile.photo_dhash
    mine = Profile.objects.get(user=client.user)
    assert mine.display_name == "Mallory" and mine.photo_dhash is None


def test_a_user_removes_only_their_own_photo(as_role, world):
    client = as_role("user")
    client.post(reverse("profile-remove-photo"), {"user": world["profile"].user_id})
    assert Profile.objects.get(pk=world["profile"].pk).photo


# --- every state change: POST, with CSRF --------------------------------------------------------


def state_changes(world) -> dict:
    """name -> (url, data) for every request that changes something."""
    profile, flagged = world["profile"], world["flagged"]
    return {
        "upload a photo": (
            reverse("profile-edit"),
            {"display_name": "x", "photo": images.upload(images.photo(84))},
        ),
        "remove photo": (reverse("profile-remove-photo"), {}),
        "log out": (reverse("logout"), {}),
        "flag an image": (
            reverse("admin:moderation_flaggedfingerprint_flag_image"),
            {"image": images.upload(images.photo(85), "x.png", "PNG"), "reason": "x"},
        ),
        "flag selected photos": (
            reverse("admin:profiles_profile_changelist"),
            {
                "action": "flag_selected_photos",
                ACTION_CHECKBOX_NAME: [profile.pk],
                "confirm": "1",
                "reason": "x",
                f"photo-{profile.pk}": profile.photo.name,
            },
        ),
        "unflag selected": (
            reverse("admin:moderation_flaggedfingerprint_changelist"),
            {
                "action": "unflag_selected",
                ACTION_CHECKBOX_NAME: [flagged.pk],
                "confirm": "1",
                "reason": "x",
            },
        ),
        "ban from the review queue": (
            reverse("admin:moderation_reviewitem_change", args=[world["review"].pk]),
            {"decision": "ban", "reason": "x"},
        ),
        "dismiss from the review queue": (
            reverse("admin:moderation_reviewitem_change", args=[world["review"].pk]),
            {"decision": "dismiss"},
        ),
        "review-queue emails": (
            reverse("admin:moderation_review_subscription"),
            {"subscribe": "1"},
        ),
        "revoke an allowlist exception": (
            reverse("admin:moderation_allowedmatch_changelist"),
            {
                "action": "revoke_selected",
                ACTION_CHECKBOX_NAME: [world["allowed"].pk],
                "confirm": "1",
                "reason": "x",
            },
        ),
        "try a hash-list distance": (
            reverse("admin:moderation_hashlist_trial", args=[flagged.hash_list_id]),
            {"do": "propose", "distance": "14"},
        ),
        "change a hash list": (
            reverse("admin:moderation_hashlist_change", args=[flagged.hash_list_id]),
            {"name": "x", "description": "", "max_distance": "", "mode": "shadow"},
        ),
    }


@pytest.mark.parametrize(
    "change",
    [
        "upload a photo",
        "remove photo",
        "log out",
        "flag an image",
        "flag selected photos",
        "unflag selected",
        "ban from the review queue",
        "dismiss from the review queue",
        "review-queue emails",
        "revoke an allowlist exception",
        "try a hash-list distance",
        "change a hash list",
    ],
)
def test_every_state_change_is_refused_without_a_csrf_token(change, as_role, world, user):
    client = as_role("superuser", csrf=True)
    profile_set_photo(profile=profile_for(user=client.user), upload=images.upload(images.photo(86)))
    before = (
        list(Profile.objects.order_by("pk").values()),
        list(FlaggedFingerprint.objects.order_by("pk").values()),
        AuditEvent.objects.count(),
    )
    url, data = state_changes(world)[change]
    response = client.post(url, data)
    assert response.status_code == 403
    after = (
        list(Profile.objects.order_by("pk").values()),
        list(FlaggedFingerprint.objects.order_by("pk").values()),
        AuditEvent.objects.count(),
    )
    assert after == before
    assert client.get(reverse("profile-edit")).status_code == 200  # still logged in


def test_a_state_change_with_the_token_from_the_page_goes_through(as_role):
    client = as_role("user", csrf=True)
    page = client.get(reverse("profile-edit")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(
        reverse("profile-edit"),
        {
            "csrfmiddlewaretoken": token,
            "display_name": "x",
            "photo": images.upload(images.photo(87)),
        },
    )
    assert response.status_code == 302
    assert Profile.objects.get(user=client.user).photo


@pytest.mark.parametrize("name", ["profile-remove-photo", "logout"])
def test_state_changes_refuse_get(name, as_role, world):
    client = as_role("user")
    profile_set_photo(profile=profile_for(user=client.user), upload=images.upload(images.photo(88)))
    assert client.get(reverse(name)).status_code == 405
    assert Profile.objects.get(user=client.user).photo


def test_admin_actions_do_not_run_from_a_get(as_role, world):
    client = as_role("superuser")
    url = reverse("admin:moderation_flaggedfingerprint_changelist")
    client.get(url, {"action": "unflag_selected", ACTION_CHECKBOX_NAME: world["flagged"].pk})
    assert FlaggedFingerprint.objects.get(pk=world["flagged"].pk).active


# --- quarantine has no public URL ---------------------------------------------------------------


def test_quarantined_files_are_not_reachable_by_any_public_url(dev_media_urls, as_role, world):
    flagging.flag_stored_image(instance=world["profile"], reason="x")
    names = [world["original"]]
    names += [e.evidence.name for e in AuditEvent.objects.exclude(evidence="") if e.evidence.name]
    assert len(names) >= 2
    client = as_role("superuser")  # not even staff get them any other way
    for name in names:
        for url in (
            f"/media/{name}",
            f"/media/../quarantine/{name}",
            f"/media/%2e%2e/quarantine/{name}",
            f"/static/{name}",
            f"/{name}",
        ):
            assert client.get(url).status_code in (400, 404), url
        with pytest.raises(NotImplementedError):
            FlaggedFingerprint._meta.get_field("original").storage.url(name)
    for page in ("home", "profile-edit"):
        body = client.get(reverse(page)).content.decode()
        assert not any(name in body for name in names)


# --- users never learn hashes, distances or which ban matched ------------------------------------


def test_a_refused_user_learns_nothing_about_the_match(as_role, world):
    flagged = world["flagged"]
    client = as_role("user")
    data = hostile.encoded(images.resized(images.photo(82), 0.9), "JPEG", quality=80)
    own = fingerprint(hostile_upload(data))
    response = client.post(
        reverse("profile-edit"), {"display_name": "x", "photo": hostile_upload(data)}
    )
    page = response.content.decode()
    assert "can&#x27;t be used" in page
    refusal = RefusedUpload.objects.filter(user=client.user).get()
    assert refusal.nearest == flagged and refusal.distance is not None  # staff do know
    for secret in (
        flagged.hex,
        own.hex,
        str(flagged.dhash),
        str(own.signed),
        flagged.reason,
        "distance",
        "fingerprint",
        "hash",
    ):
        assert secret.lower() not in without_nonces(page).lower(), secret
    for header, value in response.items():
        assert flagged.hex not in value and own.hex not in value, header


def test_an_accepted_user_sees_no_hash_of_their_photo(as_role):
    client = as_role("user")
    client.post(
        reverse("profile-edit"), {"display_name": "x", "photo": images.upload(images.photo(89))}
    )
    profile = Profile.objects.get(user=client.user)
    for url in (reverse("profile-edit"), reverse("profile-detail", args=[client.user.username])):
        page = client.get(url).content.decode()
        assert profile.photo_hex not in page and str(profile.photo_dhash) not in page


def hostile_upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("me.jpg", data, "image/jpeg")


# --- the audit trail and the refusal record are append-only in the admin ------------------------


@pytest.mark.parametrize(("model", "key"), [("auditevent", "event"), ("refusedupload", "refused")])
def test_records_are_append_only_even_for_a_superuser(model, key, as_role, world):
    client = as_role("superuser")
    obj = world[key]
    change_url = reverse(f"admin:moderation_{model}_change", args=[obj.pk])
    changelist = client.get(reverse(f"admin:moderation_{model}_changelist"))
    form = changelist.context["action_form"]  # None: no action at all
    actions = [c[0] for c in form.fields["action"].choices] if form else []
    assert "delete_selected" not in actions
    assert 'name="_save"' not in client.get(change_url).content.decode()
    assert client.post(change_url, {"reason": "rewritten", "code": "x"}).status_code == 403
    delete_url = reverse(f"admin:moderation_{model}_delete", args=[obj.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    bulk = client.post(
        reverse(f"admin:moderation_{model}_changelist"),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [obj.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert type(obj).objects.filter(pk=obj.pk).exists()
