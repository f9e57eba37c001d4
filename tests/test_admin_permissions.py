"""Who may flag, unflag and see quarantined originals in the admin: each permission gates its own
action and page, non-staff are sent to the login, and the quarantine view serves an original
only to staff who hold the permission."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from moderation import flagging
from moderation.models import AuditEvent, FlaggedFingerprint, quarantine_storage
from tests import images
from tests.admin_pages import (
    FINGERPRINTS,
    FLAG_IMAGE,
    PROFILES,
    action_choices,
    forge_flag,
    forge_unflag,
    run_action,
)
from tests.helpers import ban

pytestmark = pytest.mark.django_db


# --- permissions --------------------------------------------------------------------------------


def test_staff_without_flag_permission_does_not_see_the_flag_action(staff_with, make_profile):
    make_profile("alice", images.photo(1))
    client = staff_with("profiles.view_profile", "profiles.change_profile")

    response = client.get(reverse(PROFILES))

    assert response.status_code == 200
    assert "flag_selected_photos" not in action_choices(response)
    assert "flag_selected_photos" not in response.content.decode()


def test_staff_without_flag_permission_cannot_run_the_flag_action(staff_with, make_profile):
    profile = make_profile("alice", images.photo(1))
    client = staff_with("profiles.view_profile", "profiles.change_profile")

    run_action(client, PROFILES, "flag_selected_photos", [profile])
    forge_flag(client, [profile])

    assert not FlaggedFingerprint.objects.exists()
    profile.refresh_from_db()
    assert profile.photo


def test_staff_without_flag_permission_gets_403_on_the_flag_image_page(staff_with):
    client = staff_with("moderation.view_flaggedfingerprint")
    upload = images.upload(images.photo(2), "evil.png", "PNG")

    assert client.get(reverse(FLAG_IMAGE)).status_code == 403
    assert client.post(reverse(FLAG_IMAGE), {"image": upload, "reason": "x"}).status_code == 403
    assert not FlaggedFingerprint.objects.exists()


def test_staff_without_flag_permission_does_not_see_the_flag_image_link(staff_with):
    client = staff_with("moderation.view_flaggedfingerprint")

    response = client.get(reverse(FINGERPRINTS))

    assert reverse(FLAG_IMAGE) not in response.content.decode()


@pytest.mark.parametrize("url_name", [PROFILES, FINGERPRINTS, FLAG_IMAGE])
def test_non_staff_are_sent_to_the_admin_login(client, user, url_name):
    client.force_login(user)

    response = client.get(reverse(url_name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_non_staff_cannot_flag_by_posting(client, user, make_profile):
    profile = make_profile("bob", images.photo(1))
    client.force_login(user)

    forge_flag(client, [profile])
    client.post(
        reverse(FLAG_IMAGE),
        {"image": images.upload(images.photo(2), "x.png", "PNG"), "reason": "x"},
    )

    assert not FlaggedFingerprint.objects.exists()


# --- quarantine view ----------------------------------------------------------------------------


@pytest.fixture
def quarantined(moderator):
    """A flagged original in quarantine: (stored name, the bytes that were uploaded)."""
    upload = images.upload(images.photo(2), "evil.png", "PNG")
    content = upload.read()
    upload.seek(0)
    flagged = flagging.flag_image(
        file=upload, reason="x", source=FlaggedFingerprint.Source.ADMIN_UPLOAD, actor=moderator
    ).fingerprint
    return flagged.original.name, content


def quarantine_url(name: str) -> str:
    return reverse("moderation:quarantined-file", args=[name])


def test_quarantined_file_is_served_to_staff_with_permission(moderator_client, quarantined):
    name, content = quarantined

    response = moderator_client.get(quarantine_url(name))

    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "image/png"
    assert "no-store" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == content


def test_quarantined_takedown_evidence_is_served_to_staff_with_permission(
    moderator_client, make_profile
):
    profile = make_profile("alice", images.photo(1))
    flagging.flag_stored_image(instance=profile, reason="x")
    evidence = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN).evidence.name

    assert moderator_client.get(quarantine_url(evidence)).status_code == 200


def test_quarantined_file_is_403_for_staff_without_permission(staff_with, quarantined):
    client = staff_with("moderation.view_flaggedfingerprint", "moderation.flag_image")

    assert client.get(quarantine_url(quarantined[0])).status_code == 403


@pytest.mark.parametrize("who", ["anonymous", "non-staff"])
def test_quarantined_file_sends_others_to_the_admin_login(client, user, quarantined, who):
    if who == "non-staff":
        client.force_login(user)

    response = client.get(quarantine_url(quarantined[0]))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_quarantine_view_is_404_for_a_name_the_database_does_not_reference(
    moderator_client, quarantined
):
    stray = quarantine_storage().save("originals/stray.png", ContentFile(quarantined[1]))

    assert moderator_client.get(quarantine_url(stray)).status_code == 404
    assert moderator_client.get(quarantine_url("originals/nothing.png")).status_code == 404
    assert moderator_client.get(quarantine_url("../media/x.jpg")).status_code == 404


def test_quarantine_view_is_404_when_a_referenced_file_is_missing(moderator_client, quarantined):
    quarantine_storage().delete(quarantined[0])

    assert moderator_client.get(quarantine_url(quarantined[0])).status_code == 404


def test_public_media_never_links_to_quarantine(client, make_profile, moderator):
    profile = make_profile("alice", images.photo(1))
    flagging.flag_stored_image(instance=profile, reason="x", actor=moderator)
    flagged = FlaggedFingerprint.objects.get()

    page = client.get(reverse("profile-detail", args=["alice"])).content.decode()

    assert flagged.original.name not in page


def test_staff_who_may_flag_but_not_unflag_cannot_unflag(staff_with):
    flagged = ban(images.photo(2))
    client = staff_with("moderation.view_flaggedfingerprint", "moderation.flag_image")

    changelist = client.get(reverse(FINGERPRINTS))
    run_action(client, FINGERPRINTS, "unflag_selected", [flagged])
    forge_unflag(client, [flagged])

    assert "unflag_selected" not in action_choices(changelist)
    flagged.refresh_from_db()
    assert flagged.active
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.UNFLAG).exists()
